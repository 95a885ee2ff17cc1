"""`gpuctl demo` end to end: simulated pods reached over real SSH, training in real tmux.

Two halves:

* `gpuctl demo --headless --json` as a subprocess, the way a person runs it: every pod
  comes online, steps advance, the spot pod is preempted (offline) and comes back, and
  Ctrl-C leaves no temp dir, no process and no file in the user's dirs behind.
* One `Demo` for the module, run on its own thread as the CLI runs it, and gpuctl's
  own code on this side: a checkpoint downloaded over SFTP matches the pod's bytes,
  kill + resume continues from the checkpoint's step, the RunPod stand-in stops, starts
  and terminates a pod, and the whole thing shuts down clean.

Every wait is a condition polled against a deadline; pacing is 20x the demo's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backends.demo import trainer
from backends.demo.demo import Demo, DemoError, pod_specs
from backends.demo.sandbox import leftover_pids
from backends.demo.thread import DemoThread
from backends.ssh import FailureKind, SshFailure, connect
from sessions.link import pods as pod_settings
from sessions.providers import ops as provider_ops
from sessions.tmux import control as session_control
from sessions.checkpoints import teardown_guard
from sessions.config.loader import load_config
from sessions.checkpoints.download import download_checkpoint
from sessions.config.paths import gpuctl_known_hosts_path
from sessions.link.pod_link import open_transport
from sessions.checkpoints.resume import resume
from tui.commands.demo_cmd import launch_sessions, running_fleet

pytestmark = pytest.mark.requires_tools("tmux")

REPO = Path(__file__).resolve().parent.parent
FAST = 0.05  # the trainers' pace: 20x the demo's


async def until(check, timeout: float, what: str, interval: float = 0.1):
    """Poll `check()` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the CLI, headless


def _read_documents(proc: subprocess.Popen, deadline: float, want) -> list[dict]:
    """JSON lines from the demo's stdout until `want(documents)` holds."""
    docs: list[dict] = []
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            docs += [json.loads(line) for line in lines if line.strip()]
            if want(docs):
                return docs
        elif proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the demo never showed what was expected; last document: {docs[-1:] or None}")


def _states(doc: dict) -> dict[str, str]:
    return {p["name"]: p["state"] for p in doc["pods"]}


def _steps(doc: dict) -> dict[str, int | None]:
    return {f"{p['name']}/{s['name']}": s["step"] for p in doc["pods"] for s in p["sessions"]}


def _interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C the demo as a person would, wait for its cleanup; its stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def test_headless_json_demo_runs_preempts_and_leaves_nothing_behind(tmp_path):
    tmp = tmp_path / "tmp"
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    for path in (tmp, home / ".ssh", xdg):
        path.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(home), "XDG_CONFIG_HOME": str(xdg / "config"),
           "XDG_DATA_HOME": str(xdg / "data"), "XDG_STATE_HOME": str(xdg / "state"), "PYTHONUNBUFFERED": "1",
           "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("GPUCTL_CONFIG", None)
    # atexit reports whether textual was ever imported: headless must never load it.
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('TEXTUAL', any(m.split('.')[0] == 'textual' for m in sys.modules),"
              " file=sys.stderr))\n"
              "from tui.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    argv = [sys.executable, "-c", script, "demo", "--headless", "--json", "--interval", "0.3",
            "--pace", str(FAST), "--preempt-after", "6", "--outage", "2", "--checkpoint-mb", "0.1"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure = None
    try:
        started = time.monotonic()
        docs = _read_documents(proc, started + 30, lambda d: d and all(
            s == "online" for s in _states(d[-1]).values()) and all(v for v in _steps(d[-1]).values()))
        first = docs[-1]
        assert set(_states(first)) == {"a100x4", "h100x8", "rtx4090-spot"}
        gpus = {p["name"]: [g["name"] for g in p["gpus"]] for p in first["pods"]}
        assert gpus["a100x4"] == ["NVIDIA A100-SXM4-80GB"] * 4
        assert gpus["h100x8"] == ["NVIDIA H100 80GB HBM3"] * 8
        assert gpus["rtx4090-spot"] == ["NVIDIA GeForce RTX 4090"]
        # The stable shortcut the README and the TUI's help name reaches this demo.
        shortcut = home / ".cache" / "gpuctl" / "gpuctl-demo"
        named = subprocess.run([str(shortcut), "config", "path"], capture_output=True, text=True, timeout=30)
        assert named.returncode == 0 and named.stdout.strip().startswith(str(tmp.resolve())), named

        docs = _read_documents(proc, time.monotonic() + 20, lambda d: all(
            (d[-1] and _steps(d[-1])[k] or 0) > v for k, v in _steps(first).items() if v))
        later = docs[-1]
        formats = {s["name"]: s["format"] for p in later["pods"] for s in p["sessions"]}
        assert formats == {"sft": "hf_trainer", "pretrain": "torchrun", "vit": "lightning"}

        # The spot pod: preempted (offline; `preempted` once providers report it), then back.
        spot_down = lambda d: _states(d[-1])["rtx4090-spot"] in ("offline", "preempted")  # noqa: E731
        _read_documents(proc, time.monotonic() + 30, spot_down)
        _read_documents(proc, time.monotonic() + 30, lambda d: _states(d[-1])["rtx4090-spot"] == "online")
    except AssertionError as exc:
        failure = exc
    finally:
        stderr = _interrupt(proc)
    assert failure is None, f"{failure}\n--- the demo's stderr ---\n{stderr}"
    assert proc.returncode == 0, stderr
    assert "TEXTUAL False" in stderr
    assert "from another terminal: ~/.cache/gpuctl/gpuctl-demo sessions a100x4" in stderr
    gone = subprocess.run([str(home / ".cache" / "gpuctl" / "gpuctl-demo"), "status"], capture_output=True,
                          text=True, timeout=30)
    assert gone.returncode == 1 and "no demo is running" in gone.stderr
    assert "spot pod preempted" in stderr and "spot pod is back" in stderr
    removed = re.search(r"stopped the pods and removed (.+)", stderr)
    assert removed, stderr
    dirs = [Path(p) for p in removed[1].split(" and ")]
    assert str(dirs[0]).startswith(str(tmp.resolve()))
    assert not any(d.exists() for d in dirs) and list(tmp.iterdir()) == []
    assert leftover_pids(dirs[0]) == []
    # The user's own dirs: nothing read into them, nothing written.
    assert list((home / ".ssh").iterdir()) == [] and list(xdg.iterdir()) == []


def test_demo_watch_downloads_checkpoints_and_resumes_the_preempted_spot_pod(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("GPUCTL_CONFIG", None)
    argv = [sys.executable, "-m", "tui.cli", "demo", "--watch", "--json", "--pace", str(FAST),
            "--preempt-after", "6", "--outage", "2", "--checkpoint-mb", "0.1"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure = None
    try:
        kinds = lambda d: [(e["kind"], e["pod"]) for e in d]  # noqa: E731
        docs = _read_documents(proc, time.monotonic() + 120, lambda d: (
            ("resumed", "rtx4090-spot") in kinds(d) and any(k == "checkpoint_downloaded" for k, _ in kinds(d))))
        resumed = next(e for e in docs if e["kind"] == "resumed")
        assert resumed["session"] == "vit" and resumed["attempt"] == 1
        # The newest download: checkpoints arrive within seconds of each save (the agent
        # reports them), so keep_local: 2 may already have pruned the first ones.
        downloaded = [e for e in docs if e["kind"] == "checkpoint_downloaded"][-1]
        copy = Path(downloaded["local_path"])  # a file, or a folder checkpoint (a100x4's sft saves those)
        assert (copy.is_file() or any(p.is_file() for p in copy.rglob("*"))) and len(downloaded["sha256"]) == 64
        assert {p for k, p in kinds(docs) if k == "connected"} >= {"a100x4", "h100x8", "rtx4090-spot"}
    except AssertionError as exc:
        failure = exc
    finally:
        stderr = _interrupt(proc)
    assert failure is None, f"{failure}\n--- the demo's stderr ---\n{stderr}"
    assert proc.returncode == 0, stderr
    assert list(tmp.iterdir()) == []


def test_a_killed_demo_is_cleaned_up_by_its_watchdog(tmp_path):
    """SIGKILL leaves no chance to clean up; the watchdog process does it instead."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "tui.cli", "demo", "--headless", "--json", "--interval", "0.3",
            "--pace", str(FAST), "--preempt-after", "0", "--checkpoint-mb", "0.1"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _read_documents(proc, time.monotonic() + 30, lambda d: d and all(v for v in _steps(d[-1]).values()))
        (root,) = tmp.iterdir()
        assert leftover_pids(root), "the pods' processes carry the demo's marker"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while list(tmp.iterdir()) or leftover_pids(root):
        assert time.monotonic() < deadline, f"left behind: {list(tmp.iterdir())} {leftover_pids(root)}"
        time.sleep(0.1)


def test_missing_tmux_says_how_to_install_it(monkeypatch, capsys):
    from tui.cli import main

    monkeypatch.setattr("backends.demo.demo.tmux_path", lambda: None)
    assert main(["demo", "--headless"]) == 1
    err = capsys.readouterr().err
    assert "tmux" in err and "apt-get install tmux" in err and "brew install tmux" in err


def test_more_pods_are_copies_with_their_own_names_and_seeds():
    specs = pod_specs(7)
    assert [s.name for s in specs] == ["a100x4", "h100x8", "rtx4090-spot", "a100x4-2", "h100x8-2",
                                       "rtx4090-spot-2", "a100x4-3"]
    assert len({s.session.seed for s in specs}) == 7 and [s.spot for s in specs].count(True) == 2
    with pytest.raises(DemoError):
        pod_specs(0)


def test_a_pod_count_out_of_range_is_a_usage_error(capsys):
    from tui.cli import main

    assert main(["demo", "--headless", "--pods", "13"]) == 2
    assert "--pods must be between 1 and 12" in capsys.readouterr().err


# ------------------------------------------------------------- one demo for the module


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Three pods at 20x pace, no automatic preemption; torn down and checked at the end."""
    with pytest.MonkeyPatch.context() as mp:
        # A module fixture runs before the autouse per-test XDG dirs: without its own cache
        # dir the demo rewrote the real ~/.cache/gpuctl/gpuctl-demo, and a demo the person
        # running the tests had open answered "no demo is running" once this one ended.
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("demo-cache")))
        d = Demo(pods=3, preempt_after=None, outage=1.0, pace=FAST, checkpoint_mb=0.2, interval=0.5,
                 tmp_parent=tmp_path_factory.mktemp("demo"))
    assert not str(d.stable_wrapper).startswith(os.path.expanduser("~/.cache"))
    runner = DemoThread(d)
    runner.start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in d.client_env.items():
            mp.setenv(key, value)
        d.install_known_hosts(gpuctl_known_hosts_path())
        notes: list[str] = []
        asyncio.run(launch_sessions(load_config(d.config_path), notes.append))
        assert notes == []
    yield runner
    problems = runner.stop()
    assert problems == []
    assert d.temp_dirs and not any(p.exists() for p in d.temp_dirs)
    assert leftover_pids(d.root) == []


@pytest.fixture
def config(demo, monkeypatch):
    """gpuctl pointed at the demo, as `gpuctl demo` points itself (HOME, XDG, GPUCTL_CONFIG)."""
    for key, value in demo.demo.client_env.items():
        monkeypatch.setenv(key, value)
    return load_config(demo.demo.config_path)


def checkpoints(demo_pod, pattern: str) -> list[tuple[int, Path]]:
    """Finished checkpoints on the pod, oldest first (read from the sandbox directly)."""
    found = []
    for path in demo_pod.sandbox.workspace.glob(pattern):
        digits = re.findall(r"\d+", path.name)
        if digits and not path.name.startswith((".", "tmp-")):
            found.append((int(digits[-1]), path))
    return sorted(found)


def test_gpuctl_is_pointed_inside_the_demos_temp_dir_only(demo, config, tmp_path):
    d = demo.demo
    assert all(Path(v).is_relative_to(d.root) for k, v in d.client_env.items() if k != "GPUCTL_DEMO_RUNPOD_API_KEY")
    known_hosts = gpuctl_known_hosts_path()
    assert known_hosts.is_relative_to(d.root)
    assert sorted(known_hosts.read_text().splitlines()) == sorted(d.known_hosts_lines)
    assert {p.host_key for p in config.pods} <= {None} and config.defaults.host_key == "strict"
    assert {p.host for p in config.pods} == {"127.0.0.1"} and (d.client_key_path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(DemoError):  # never into a known_hosts outside the demo's dir
        d.install_known_hosts(tmp_path / "known_hosts")


async def test_every_pod_comes_online_with_its_gpus_and_progress_advances(config):
    async with running_fleet(config) as fleet:
        def steps():
            snap = fleet.snapshot()
            if any(p.state != "online" for p in snap.pods):
                return None
            found = {p.name: p.sessions[0].progress.step for p in snap.pods if p.sessions and p.sessions[0].progress}
            return found if len(found) == 3 and all(found.values()) else None

        first = await until(steps, 20, "every pod online with a step")
        await until(lambda: (s := steps()) and all(s[k] > v for k, v in first.items()), 20, "steps to advance")
        # The simulated GPUs follow the load: every pod's cards get busy and fill their memory.
        def busy():
            pods = fleet.snapshot().pods
            return all(g.util_pct > 50 and g.mem_used_mib > 10000 for p in pods for g in p.gpus)

        await until(busy, 20, "busy GPUs on every pod")
        snap = fleet.snapshot()
        assert {p.name: len(p.gpus) for p in snap.pods} == {"a100x4": 4, "h100x8": 8, "rtx4090-spot": 1}


def expected_bytes(demo, pod: str, step: int) -> bytes:
    """What the simulated trainer writes for `step`: its bytes depend on seed and step only."""
    spec = demo.demo.pod(pod).spec.session
    header = {"format": spec.format, "global_step": step, "seed": spec.seed,
              "loss": round(trainer.Curve(spec.format, spec.seed, spec.total_steps).loss(step), 6)}
    size = int(1024 * 1024 * demo.demo.checkpoint_mb)
    return trainer.single_file_checkpoint(header, trainer._payload(spec.seed, step, size))


async def test_a_checkpoint_downloads_and_verifies(demo, config, tmp_path):
    """gpuctl's own download (newest complete checkpoint, sha256 on both ends) from a demo pod."""
    demo_pod = demo.demo.pod("h100x8")
    await until(lambda: len(checkpoints(demo_pod, "checkpoints/step_*.pt")) >= 2, 20, "two checkpoints")
    result = await download_checkpoint(config, "h100x8", "pretrain", dest=tmp_path)
    assert not result.skipped and result.checkpoint.complete and result.checkpoint.step
    assert result.local_path == tmp_path / "checkpoints" / f"step_{result.checkpoint.step}.pt"
    # Independent of gpuctl's own verification: the bytes the trainer wrote for that step.
    assert result.local_path.read_bytes() == expected_bytes(demo, "h100x8", result.checkpoint.step)
    assert result.sha256 == sha256(result.local_path)


async def test_kill_and_resume_continues_from_the_checkpoint(demo, config):
    """Kill the run, then gpuctl's resume: the new run's first step is the checkpoint's + 1."""
    pod_cfg = config.pod("h100x8")
    demo_pod = demo.demo.pod("h100x8")
    await until(lambda: checkpoints(demo_pod, "checkpoints/step_*.pt"), 20, "a checkpoint")
    async with open_transport(pod_cfg, config.defaults) as runner:
        killed = await session_control.kill(runner, "pretrain", pod_name=pod_cfg.name)
        assert killed.existed and killed.was_running
        resumed = await resume(runner, pod_cfg, "pretrain")
    step = resumed.checkpoint.step
    assert resumed.command.startswith(f"export GPUCTL_CHECKPOINT={shlex.quote(resumed.checkpoint.path)}; ")
    assert resumed.command.endswith('--resume "$GPUCTL_CHECKPOINT"')
    log = demo_pod.sandbox.home / ".gpuctl" / "logs" / "pretrain.log"

    def first_step_after_resume():
        text = log.read_text(errors="replace")
        marker = text.rfind(f"resuming from {resumed.checkpoint.path} (step {step})")
        found = re.search(r"^step +(\d+)/", text[marker:], re.M) if marker >= 0 else None
        return int(found[1]) if found else None

    assert await until(first_step_after_resume, 20, "the resumed run's first step") == step + 1


async def test_the_spot_pod_is_preempted_and_comes_back(demo, config):
    standin = demo.demo.standin
    spot = config.pod("rtx4090-spot")
    headers = {"Authorization": f"Bearer {standin.api_key}"}
    query = {"query": f'query {{ pod(input: {{podId: "{spot.provider.id}"}}) {{ id desiredStatus podType }} }}'}
    async with running_fleet(config, ["rtx4090-spot"]) as fleet, httpx.AsyncClient(base_url=standin.api_url,
                                                                           headers=headers) as api:
        await until(lambda: fleet.snapshot().pod("rtx4090-spot").state == "online", 20, "the spot pod online")
        assert demo.call(demo.demo.preempt("rtx4090-spot"))
        doc = (await api.post("/graphql", json=query)).json()["data"]["pod"]
        assert (doc["desiredStatus"], doc["podType"]) == ("EXITED", "INTERRUPTABLE")
        await until(lambda: fleet.snapshot().pod("rtx4090-spot").state in ("offline", "preempted"), 20,
                    "the spot pod offline")
        assert demo.demo.pod("rtx4090-spot").sandbox.tmux_sockets() == [] or not _tmux_alive(demo, "rtx4090-spot")
        assert demo.call(demo.demo.restore("rtx4090-spot"))
        assert (await api.get(f"/v2/pods/{spot.provider.id}")).json()["status"] == "RUNNING"
        await until(lambda: fleet.snapshot().pod("rtx4090-spot").state == "online", 30, "the spot pod back")
        session = fleet.snapshot().pod("rtx4090-spot").sessions[0]
        assert session.state != "running", "a preempted pod comes back without its session"


def _tmux_alive(demo, name: str) -> bool:
    sandbox = demo.demo.pod(name).sandbox
    return any(subprocess.run(["tmux", "-S", str(s), "list-sessions"], capture_output=True).returncode == 0
               for s in sandbox.tmux_sockets())


async def test_the_runpod_standin_speaks_rest_v2(demo, config):
    """The request and response shapes gpuctl's RunPod backend relies on (PROVIDERS.md 2.2)."""
    standin = demo.demo.standin
    pod_cfg = config.pod("h100x8")
    path = f"/v2/pods/{pod_cfg.provider.id}"
    async with httpx.AsyncClient(base_url=standin.api_url) as anonymous:
        denied = await anonymous.get(path)
        assert denied.status_code == 401 and denied.json()["title"] == "Unauthorized"
    key = os.environ["GPUCTL_DEMO_RUNPOD_API_KEY"]
    async with httpx.AsyncClient(base_url=standin.api_url, headers={"Authorization": f"Bearer {key}"}) as api:
        pod = (await api.get(path)).json()
        assert pod["status"] == "RUNNING" and pod["gpu"] == {"id": "NVIDIA H100 80GB HBM3", "count": 8}
        assert pod["ssh"]["direct"]["port"] == pod_cfg.port and "stop" in pod["actions"]
        assert [p["id"] for p in (await api.get("/v2/pods")).json()["pods"]].count(pod_cfg.provider.id) == 1
        extra = await api.post(f"{path}/action", json={"action": "stop", "force": True})
        assert extra.status_code == 400 and extra.headers["content-type"] == "application/problem+json"
        assert (await api.post(f"{path}/action", json={"action": "start"})).status_code == 409  # it runs
        assert (await api.get("/v2/pods/nosuchpod0000")).status_code == 404


async def test_stop_and_teardown_through_gpuctls_provider_backend(demo, config):
    """`gpuctl stop` / `teardown` code against the stand-in; each really switches the pod off.

    The last test of the module: it terminates a100x4 for good.
    """
    pod_cfg = config.pod("a100x4")
    target = pod_settings.ssh_target(pod_cfg, config.defaults)
    async def unsafe(_pod):
        return False, "step_200.pt has no verified local copy"

    with pytest.raises(provider_ops.ActionRefused, match="step_200.pt"):  # RunPod's stop wipes the container disk
        await provider_ops.stop(config, pod_cfg, guard=unsafe, poll_every=0.1, timeout=20)
    stopped = await provider_ops.stop(config, pod_cfg, force=True, poll_every=0.1, timeout=20)
    assert stopped.outcome == "done"
    with pytest.raises(SshFailure) as refused:
        await connect(target)
    assert refused.value.kind == FailureKind.REFUSED
    assert not _tmux_alive(demo, "a100x4"), "stopping a pod ends its sessions"
    assert demo.demo.standin.by_name("a100x4").status == "EXITED"

    with pytest.raises(provider_ops.ActionRefused):  # its checkpoints were never downloaded
        await provider_ops.teardown(config, pod_cfg, guard=teardown_guard.guard, poll_every=0.1, timeout=20)
    gone = await provider_ops.teardown(config, pod_cfg, force=True, poll_every=0.1, timeout=20)
    assert gone.outcome == "done"
    assert demo.demo.standin.by_name("a100x4").status == "TERMINATED"
    assert demo.demo.pod("a100x4").terminated
    with pytest.raises(SshFailure):
        await connect(target)
    again = await provider_ops.teardown(config, pod_cfg, force=True, poll_every=0.1, timeout=20)
    assert again.outcome == "already"
