"""`gpuctl watch` against a real sshd, real tmux and real files.

Each test runs the Watcher over a real Fleet and collects its events; waits poll for
an event against a deadline (no timed assertions). The training "jobs" are small
shell/python programs in tmux whose behaviour the test controls through files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import WatchEvent
from sessions.fleet.facade import Fleet
from sessions.watch.watcher import Watcher, last_lines
from sessions.watch.state import open_state
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]

OLD = time.time() - 3600


@pytest.fixture
def tmux_cleanup(sshd):
    yield
    env = {**os.environ, "TMUX_TMPDIR": str(sshd.tmux_tmpdir)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, timeout=10)


def checkpoint(work: Path, name: str, size: int = 200_000) -> Path:
    path = work / name
    path.write_bytes(os.urandom(size))
    os.utime(path, (OLD, OLD))
    return path


def config_for(server, tmp_path: Path, session: dict[str, Any], policies: dict[str, Any],
               pod_extra: dict[str, Any] | None = None):
    trust(server)
    entry = server.pod_entry("p")
    entry.update(pod_extra or {})
    entry["sessions"] = [{"name": "train", "workdir": str(tmp_path / "work"), **session}]
    text = yaml.safe_dump({"policies": policies, "pods": [entry]})
    return parse_config(text, tmp_path / "c.yaml")


class Run:
    """A Fleet + Watcher running in the background, with the events it emitted."""

    def __init__(self, config, tmp_path: Path, state_file: Path | None = None):
        self.config = config
        self.tmp_path = tmp_path
        self.state_file = state_file or tmp_path / "state.json"
        self.events: list[WatchEvent] = []
        self._changed = asyncio.Event()

    def emit(self, event: WatchEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def __aenter__(self) -> "Run":
        self.state, _ = open_state(self.state_file)
        self.fleet = Fleet(self.config)
        self.fleet.set_interval(0.2)
        self.fleet.start()
        self.watcher = Watcher(self.fleet, self.state, self.emit, start_dir=self.tmp_path)
        self.task = asyncio.create_task(self.watcher.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.watcher.aclose()
        await self.fleet.stop()
        self.state.close()

    def kinds(self, kind: str, **match: Any) -> list[WatchEvent]:
        return [e for e in self.events if e.kind == kind
                and all(e.to_json().get(k) == v for k, v in match.items())]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 30.0, **match: Any) -> list[WatchEvent]:
        deadline = time.monotonic() + timeout
        while len(self.kinds(kind, **match)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = "\n".join(e.readable() for e in self.events)
                raise AssertionError(f"no {count}x {kind} {match} within {timeout:g}s; events:\n{seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
        return self.kinds(kind, **match)


def test_last_lines_keeps_the_end_and_collapses_progress_redraws():
    text = "a\n\nb\r 10%\r 20%\nc\n"
    assert last_lines(text, 2) == [" 20%", "c"]


# A job that prints steps and exits with the status in ./crash once that file appears.
JOB = ("i=${START:-1}; while [ ! -f crash ]; do echo \"step $i/1000 | loss 2.0\"; i=$((i+1)); sleep 0.1; done; "
       "code=$(cat crash); rm -f crash; exit $code")


async def test_a_session_that_exits_nonzero_is_resumed_from_the_newest_checkpoint(sshd, tmp_path, tmux_cleanup):
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_100.pt")
    newest = checkpoint(work, "step_200.pt")
    config = config_for(sshd, tmp_path, {
        "command": f"sh -c {shlex.quote(JOB)}",
        "resume": "sh -c 'echo \"$0\" > resumed_from; i=201; while :; do echo \"step $i/1000 | loss 1.5\"; "
                  "i=$((i+1)); sleep 0.1; done' {checkpoint}",
    }, {"auto_resume": {"max_restarts": 3, "backoff_s": 0.1}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await run.wait_for("connected")
        await wait_state(run, "running")
        await poll(lambda: any(s.progress and s.progress.step for s in run.fleet.snapshot().pod("p").sessions))
        (work / "crash").write_text("3")
        exited = (await run.wait_for("session_exited"))[0]
        assert exited.extra["exit_status"] == 3
        assert any("step" in line for line in exited.extra["last_lines"])
        resumed = (await run.wait_for("resumed"))[0]
        assert resumed.extra["checkpoint"] == str(newest)
        assert (resumed.extra["attempt"], resumed.extra["max_restarts"]) == (1, 3)
        await poll(lambda: (work / "resumed_from").exists())
        assert (work / "resumed_from").read_text().strip() == str(newest)
        # The resumed run makes progress: that is recorded, so a later failure may restart again.
        await poll(lambda: run.state.restarts["p/train"].progressed)
    assert json.loads((tmp_path / "state.json").read_text())["restarts"]["p/train"]["count"] == 1


async def wait_state(run: Run, state: str, timeout: float = 20.0) -> None:
    async def check():
        snap = run.fleet.snapshot().pod("p")
        return any(s.name == "train" and s.state == state for s in snap.sessions)
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"session never {state}"
        await asyncio.sleep(0.05)


async def poll(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def test_a_run_that_fails_right_after_resume_is_not_restarted_again(sshd, tmp_path, tmux_cleanup):
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_100.pt")
    config = config_for(sshd, tmp_path, {
        "command": f"sh -c {shlex.quote(JOB)}",
        "resume": "sh -c 'echo resumed >> attempts; sleep 1; echo \"bad checkpoint $0\"; exit 4' {checkpoint}",
    }, {"auto_resume": {"max_restarts": 5, "backoff_s": 0.1}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await wait_state(run, "running")
        (work / "crash").write_text("2")
        await run.wait_for("resumed")
        alert = (await run.wait_for("alert", alert="resume_failed"))[0]
        assert "before making progress" in alert.message
        assert len(run.kinds("session_exited")) == 2
        # Give it every chance to loop: one more exit would have been restarted by now.
        await asyncio.sleep(1.5)
        assert len(run.kinds("resumed")) == 1
        assert (work / "attempts").read_text().count("resumed") == 1
    restarts = json.loads((tmp_path / "state.json").read_text())["restarts"]["p/train"]
    assert restarts["count"] == 1 and restarts["gave_up"] == "resume_failed"


async def test_a_new_checkpoint_is_downloaded_once_verified_and_old_copies_pruned(sshd, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = checkpoint(work, "step_100.pt")
    config = config_for(sshd, tmp_path, {}, {
        "auto_download": "newest", "keep_local": 1, "checkpoint_interval_s": 0.3,
        "download_dir": "dl/{pod}/{session}"})
    async with Run(config, tmp_path) as run:
        done = (await run.wait_for("checkpoint_downloaded"))[0]
        local = Path(done.extra["local_path"])
        assert local == tmp_path / "dl" / "p" / "train" / "step_100.pt"
        assert local.read_bytes() == first.read_bytes()
        assert done.extra["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
        assert run.kinds("checkpoint_found")[0].extra["name"] == "step_100.pt"

        second = checkpoint(work, "step_200.pt")
        await run.wait_for("checkpoint_downloaded", count=2)
        assert (tmp_path / "dl/p/train/step_200.pt").read_bytes() == second.read_bytes()
        assert not local.exists(), "keep_local: 1 keeps only the newest copy"
        pruned = (await run.wait_for("checkpoint_pruned"))[0]
        assert (pruned.session, pruned.extra["local_path"], pruned.extra["checkpoint"]) == (
            "train", str(local), str(first))
        assert run.events.index(pruned) > run.events.index(run.kinds("checkpoint_downloaded")[1])
        # Several more listing rounds: nothing is fetched again.
        await asyncio.sleep(1.5)
        assert [e.extra["name"] for e in run.kinds("checkpoint_downloaded")] == ["step_100.pt", "step_200.pt"]
        assert [e.extra["name"] for e in run.kinds("checkpoint_found")] == ["step_100.pt", "step_200.pt"]


async def test_the_agent_reporting_a_new_checkpoint_starts_the_download_not_the_interval(sshd, tmp_path):
    """checkpoint_interval_s is an hour here: after the first round, only the agent's
    checkpoint watch (a listing within seconds of a checkpoint settling) can start one."""
    work = tmp_path / "work"
    work.mkdir()
    config = config_for(sshd, tmp_path, {"checkpoints": ["ckpt/*.pt"]}, {
        "auto_download": "newest", "checkpoint_interval_s": 3600, "download_dir": "dl"})
    async with Run(config, tmp_path) as run:
        await run.wait_for("connected")
        (work / "ckpt").mkdir()
        first = work / "ckpt" / "step_100.pt"
        first.write_bytes(os.urandom(100_000))  # written now: "writing" until it settles
        done = (await run.wait_for("checkpoint_downloaded"))[0]
        assert Path(done.extra["local_path"]).read_bytes() == first.read_bytes()
        second = work / "ckpt" / "step_200.pt"
        second.write_bytes(os.urandom(100_000))
        done = (await run.wait_for("checkpoint_downloaded", count=2, timeout=20))[1]
        assert done.extra["name"] == "ckpt/step_200.pt"
        assert Path(done.extra["local_path"]).read_bytes() == second.read_bytes()
        assert [e.extra["name"] for e in run.kinds("checkpoint_found")] == ["ckpt/step_100.pt", "ckpt/step_200.pt"]


async def test_a_hot_gpu_raises_an_alert_and_cooling_clears_it(sshd, tmp_path):
    (tmp_path / "work").mkdir()
    config = config_for(sshd, tmp_path, {}, {"alerts": {"gpu_temp_c": 80}})
    gpus = sshd.gpu_state()["gpus"]
    try:
        async with Run(config, tmp_path) as run:
            await run.wait_for("connected")
            sshd.set_gpus([{**gpus[0], "temperature.gpu": 91}, gpus[1]])
            alert = (await run.wait_for("alert", alert="gpu_temp_c"))[0]
            assert alert.extra["value"] == 91 and alert.extra["threshold"] == 80
            sshd.set_gpus(gpus)
            await run.wait_for("alert_cleared", alert="gpu_temp_c")
            assert len(run.kinds("alert", alert="gpu_temp_c")) == 1
    finally:
        sshd.set_gpus(gpus)


class Receiver:
    """A loopback webhook receiver recording JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_webhook_on_loopback_receives_the_events(sshd, tmp_path):
    from sessions.watch.notify_routing import NotifyRouter

    (tmp_path / "work").mkdir()
    receiver = Receiver()
    gpus = sshd.gpu_state()["gpus"]
    try:
        config = config_for(sshd, tmp_path, {}, {"alerts": {"gpu_temp_c": 80},
                                                  "notify": [{"webhook": receiver.url}]})
        router = NotifyRouter(config)
        async with Run(config, tmp_path) as run:
            run.fleet.events.subscribe(router.submit)  # a second subscriber of the one stream
            await run.wait_for("connected")
            sshd.set_gpus([{**gpus[0], "temperature.gpu": 95}, gpus[1]])
            await run.wait_for("alert", alert="gpu_temp_c")
            await poll(lambda: any(b.get("kind") == "alert" for b in receiver.bodies))
        await router.aclose()
        alert = next(b for b in receiver.bodies if b["kind"] == "alert")
        assert alert["pod"] == "p" and alert["alert"] == "gpu_temp_c" and alert["value"] == 95
        assert {"ts", "pod", "session", "kind", "message"} <= set(alert)
    finally:
        sshd.set_gpus(gpus)
        receiver.close()


async def test_restarting_watch_keeps_restart_counts_and_downloads(sshd, tmp_path, tmux_cleanup):
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_100.pt")
    config = config_for(sshd, tmp_path, {
        "command": f"sh -c {shlex.quote(JOB)}",
        "resume": "sh -c 'echo \"$0\" >> resumed_from; i=101; while [ ! -f crash ]; do echo \"step $i/1000 | loss 1.9\"; "
                  "i=$((i+1)); sleep 0.1; done; rm -f crash; exit 5' {checkpoint}",
    }, {"auto_resume": {"max_restarts": 1, "backoff_s": 0.1}, "auto_download": "newest",
        "checkpoint_interval_s": 0.3})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await run.wait_for("checkpoint_downloaded")
        await wait_state(run, "running")
        (work / "crash").write_text("3")
        await run.wait_for("resumed")
        await poll(lambda: run.state.restarts["p/train"].progressed)

    # A new watch over the same state file: no second download, and the one restart
    # allowed is already used, so the next failure is not restarted.
    async with Run(config, tmp_path) as run:
        await run.wait_for("connected")
        await wait_state(run, "running")
        (work / "crash").write_text("5")
        alert = (await run.wait_for("alert", alert="restarts_exhausted"))[0]
        assert "after 1 automatic restarts" in alert.message
        assert run.kinds("resumed") == [] and run.kinds("checkpoint_downloaded") == []
    assert (work / "resumed_from").read_text().count("\n") == 1


def test_a_second_watch_on_the_same_state_file_is_refused(tmp_path):
    from sessions.watch.state import StateLocked

    state, _ = open_state(tmp_path / "s.json")
    try:
        with pytest.raises(StateLocked, match="another gpuctl watch"):
            open_state(tmp_path / "s.json")
    finally:
        state.close()
    again, _ = open_state(tmp_path / "s.json")
    again.close()


def test_an_unreadable_state_file_is_moved_aside(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    state, note = open_state(tmp_path / "s.json")
    state.close()
    assert note and "s.json.bad" in note
    assert (tmp_path / "s.json.bad").read_text() == "{not json"


async def test_the_budget_stops_the_pod_only_after_the_newest_checkpoint_is_verified(sshd, tmp_path, monkeypatch):
    from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod

    work = tmp_path / "work"
    work.mkdir()
    newest = checkpoint(work, "step_300.pt", size=2_000_000)
    local = tmp_path / "checkpoints" / "p" / "train" / "step_300.pt"
    fake = FakeRunPod({"pod1": runpod_pod("pod1")})
    copy_present_at_stop: list[bool] = []

    def provider(rec):
        if rec.method == "POST" and rec.path.endswith("/action"):
            copy_present_at_stop.append(local.exists() and local.read_bytes() == newest.read_bytes())
        return fake(rec)

    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    with ProviderServer(provider) as server:
        # $50/h on a machine up for more than a few seconds is past a one-cent budget at once.
        config = config_for(sshd, tmp_path, {}, {"budget": {"max_usd": 0.01, "action": "stop"}}, {
            "price_per_hour": 50.0,
            "provider": {"type": "runpod", "id": "pod1", "api_url": server.url, "api_key_env": "TEST_PROVIDER_KEY"}})
        async with Run(config, tmp_path) as run:
            action = (await run.wait_for("budget_action", timeout=60))[0]
            downloaded = run.kinds("checkpoint_downloaded")
            assert downloaded and run.events.index(downloaded[0]) < run.events.index(action)
            assert action.extra["action"] == "stop" and action.extra["checkpoints_verified"] is True
            assert action.extra["spend_usd"] >= 0.01 and action.extra["max_usd"] == 0.01
        assert copy_present_at_stop == [True], "the stop was asked for once, with the verified copy in place"
        assert [r.json for r in server.calls("POST") if r.path.endswith("/action")] == [{"action": "stop"}]
        assert json.loads((tmp_path / "state.json").read_text())["budget_done"]["p"]["action"] == "stop"


def test_gpuctl_watch_prints_json_lines_and_ends_cleanly_on_sigterm(sshd, tmp_path):
    import signal
    import sys

    trust(sshd)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump({"pods": [sshd.pod_entry("p")]}))
    argv = [sys.executable, "-c", "from tui.cli import main; raise SystemExit(main())",
            "--config", str(config_file), "watch", "--json", "--state", str(tmp_path / "w.json")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        first = json.loads(proc.stdout.readline())
        assert (first["kind"], first["pod"], first["session"]) == ("connected", "p", None)
        assert {"ts", "message"} <= set(first)
        second = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                cwd=Path(__file__).resolve().parent.parent)
        assert second.returncode == 1 and "another gpuctl watch is using" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "state in" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


async def test_a_session_lost_when_the_pod_went_down_is_resumed_when_it_comes_back(sshd_fresh, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    newest = checkpoint(work, "step_500.pt")
    config = config_for(sshd_fresh, tmp_path, {
        "command": f"sh -c {shlex.quote(JOB)}",
        "resume": "sh -c 'echo \"$0\" > resumed_from; exec sleep 60' {checkpoint}",
    }, {"auto_resume": {"max_restarts": 2, "backoff_s": 0.1}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await wait_state(run, "running")
        # The pod "reboots": SSH goes away and its tmux server (the training) dies with it.
        sshd_fresh.stop()
        await run.wait_for("disconnected")
        sshd_fresh._kill_tmux_servers()
        sshd_fresh.start()
        await run.wait_for("connected", count=2)
        exited = (await run.wait_for("session_exited"))[0]
        assert "pod restarted" in exited.message
        resumed = (await run.wait_for("resumed"))[0]
        assert resumed.extra["checkpoint"] == str(newest)
        # Which it was, in one clause: the link dropped (no provider said "preempted").
        assert resumed.extra["reason"] == "the pod came back from an outage"
        assert resumed.message == "restarted from step_500.pt after the pod came back from an outage (attempt 1 of 2)"
        await poll(lambda: (work / "resumed_from").exists())


async def test_a_session_lost_before_its_first_checkpoint_starts_again_from_the_beginning(sshd, tmp_path, tmux_cleanup):
    work = tmp_path / "work"
    work.mkdir()
    job = "echo started >> starts; " + JOB
    config = config_for(sshd, tmp_path, {"command": f"sh -c {shlex.quote(job)}", "resume": "false {checkpoint}"},
                        {"auto_resume": {"max_restarts": 2, "backoff_s": 0.1}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await wait_state(run, "running")
        (work / "crash").write_text("1")
        resumed = (await run.wait_for("resumed"))[0]
        assert resumed.extra["checkpoint"] is None and "from the beginning" in resumed.message
        await poll(lambda: (work / "starts").read_text().count("started") == 2)


async def test_a_checkpoint_rotated_away_mid_download_is_no_failure_and_the_next_is_fetched(sshd, tmp_path,
                                                                                             monkeypatch):
    """A trainer keeping its newest k (Lightning's save_top_k) deletes a checkpoint while
    it is fetched: routine, so no download_failed alert; an unreadable checkpoint that
    is still there stays a failure."""
    from sessions.watch import downloads as watch_downloads

    work = tmp_path / "work"
    work.mkdir()
    doomed = checkpoint(work, "step_100.pt")
    real = watch_downloads.download_checkpoint

    async def rotating(config, pod, session, name, **kwargs):
        if name == "step_100.pt" and doomed.exists():  # the trainer rotates it away right now
            doomed.unlink()
            checkpoint(work, "step_200.pt")
        return await real(config, pod, session, name, **kwargs)

    monkeypatch.setattr(watch_downloads, "download_checkpoint", rotating)
    config = config_for(sshd, tmp_path, {}, {"auto_download": "newest", "checkpoint_interval_s": 0.3,
                                             "download_dir": "dl/{pod}/{session}"})
    async with Run(config, tmp_path) as run:
        done = await run.wait_for("checkpoint_downloaded")
        assert done[0].extra["name"] == "step_200.pt"
        assert not run.kinds("alert", alert="download_failed")


@pytest.mark.parametrize("told, was", [
    ([("disconnected", "online", "reconnecting")], "an outage"),
    ([("preempted", "online", "preempted")], "a preemption"),
    ([("disconnected", "online", "reconnecting"), ("preempted", "reconnecting", "preempted")], "a preemption"),
])
def test_the_auto_resume_reason_says_whether_the_pod_was_preempted_or_went_down(tmp_path, told, was):
    from sessions.events import EventKind, WatchEvent
    from sessions.snapshot import PodSnapshot, SessionSnapshot
    from sessions.watch.state import WatchState
    from sessions.watch.watcher import Watcher

    class Fleet:  # what the exit's event reads of a Fleet: the session's last lines
        def recent_log(self, pod, session):
            return ""

    watcher = Watcher(Fleet(), WatchState(tmp_path / "state.json"))
    reasons: list[str] = []
    watcher.resume.consider = lambda pod, session, reason: reasons.append(reason)
    watcher.ctx.state.sessions["p/train"] = "running"
    for kind, before, after in told:  # as sessions.fleet.connection_news tells them
        watcher._hear(WatchEvent(getattr(EventKind, kind.upper()), "p", "down", before=before, after=after))
    gone = SessionSnapshot("train", state="absent", configured=True)
    watcher._sessions(PodSnapshot(name="p", host="h", state="online", sessions=(gone,)))
    assert reasons == [f"the pod came back from {was}"]
