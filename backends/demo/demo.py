"""`gpuctl demo`'s machinery: simulated pods on this machine, set up and torn down.

`Demo.start()` builds, in one private temp dir (mode 0700):

* keys: one ed25519 client key, one host key per pod (generated, never reused);
* per pod (`backends.demo.pod`): a sandbox, simulated GPUs, an SSH server on a random
  loopback port, and a copy of the simulated trainer as ``~/workspace/train.py``;
* a local RunPod API stand-in (`runpod_standin`) and the spot pod's preemption timer;
* gpuctl's side, kept apart from the user's own: a config file whose pods reach the
  servers with the demo key and ``host_key: strict``, the pods' host keys for a
  known_hosts file, and `client_env`: HOME, the XDG dirs and ``GPUCTL_CONFIG`` pointing
  into the temp dir. The front end applies `client_env` to its process before gpuctl
  resolves any path (``sessions.config.paths`` reads the XDG dirs at call time), then writes
  the host keys with `install_known_hosts` into the known_hosts gpuctl will read. So
  the demo never reads or writes the user's config, ``~/.ssh`` or known_hosts.

This module does not launch the training sessions: that is gpuctl's own
``session_control.launch`` over SSH (``sessions`` may not be imported from ``backends``),
which the front end runs once the pods answer.

`Demo.stop()` undoes everything, each step even when an earlier one failed: timers,
the stand-in, every pod's tmux server (``kill-server`` on its private socket) and SSH
server with the commands it started, then any process still carrying the demo's
marker in its environment (Linux), then the temp dir. Should this process die without
stopping (SIGKILL, a test runner's timeout), `backends.demo.watchdog`, started first
and watching a pipe only this process holds, does the same. `backends.demo.thread.DemoThread`
runs a `Demo` on an event loop of its own, for front ends whose loop is not asyncio's
(the TUI).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Coroutine

import asyncssh
import yaml

from backends.demo.gpu_sim import GpuSimulator, PodGpus
from backends.demo.pod import DemoPod, PodSpec, SessionSpec
from backends.demo.preemption import SpotPreemption
from backends.demo.runpod_standin import RunPodStandIn, StandInPod
from backends.demo.sandbox import Sandbox, end_leftovers, socket_path_fits
from backends.demo.ssh_server import LOOPBACK, PodSshServer

TRAINER = Path(__file__).with_name("trainer.py")
WATCHDOG = Path(__file__).with_name("watchdog.py")
API_KEY_ENV = "GPUCTL_DEMO_RUNPOD_API_KEY"
"""The variable the demo config names as the stand-in's API key (never the user's own
RUNPOD_API_KEY: a demo must not send a real key anywhere, even to loopback)."""

TMUX_INSTALL = "install it with `sudo apt-get install tmux` (Debian/Ubuntu) or `brew install tmux` (macOS)"
MAX_PODS = 12

TEMPLATES: tuple[PodSpec, ...] = (
    PodSpec("a100x4", "a100-80gb", 4, "NVIDIA A100-SXM4-80GB", 7.56, False, SessionSpec(
        "sft", "hf", 6000, 200, "checkpoints", "checkpoints/checkpoint-*", seed=1)),
    PodSpec("h100x8", "h100-80gb", 8, "NVIDIA H100 80GB HBM3", 23.92, False, SessionSpec(
        "pretrain", "torchrun", 5000, 250, "checkpoints", "checkpoints/step_*.pt", ("--nproc", "8"), seed=2)),
    PodSpec("rtx4090-spot", "rtx4090", 1, "NVIDIA GeForce RTX 4090", 0.34, True, SessionSpec(
        "vit", "lightning", 10000, 250, "lightning_logs/version_0/checkpoints",
        "lightning_logs/version_0/checkpoints/*.ckpt", ("--steps-per-epoch", "250"), seed=3)),
)
"""The default pods, in order: 4xA100 (HF Trainer), 8xH100 (torchrun), 1x4090 spot (Lightning)."""


HANG_AT_STEP = 260
"""`--fault hang`: the first pod's run hangs on reaching this step, after its first
checkpoint (step 200), so the restart resumes from that checkpoint and goes on."""


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def tmux_path() -> str | None:
    return shutil.which("tmux") or shutil.which("tmux", path="/usr/local/bin:/usr/bin:/bin:/opt/homebrew/bin")


def require_tmux() -> None:
    """Raises DemoError with install instructions when tmux is missing."""
    if tmux_path() is None:
        raise DemoError(f"the demo runs its training sessions in tmux, which is not installed: {TMUX_INSTALL}")


def pod_specs(count: int) -> list[PodSpec]:
    """`count` pods: the three templates, then copies of them with their own names and seeds."""
    if not 1 <= count <= MAX_PODS:
        raise DemoError(f"--pods must be between 1 and {MAX_PODS}, got {count}")
    specs = []
    for i in range(count):
        base = TEMPLATES[i % len(TEMPLATES)]
        copy = i // len(TEMPLATES)
        if copy == 0:
            specs.append(base)
            continue
        session = SessionSpec(**{**base.session.__dict__, "seed": base.session.seed + 10 * copy})
        specs.append(PodSpec(**{**base.__dict__, "name": f"{base.name}-{copy + 1}", "session": session}))
    return specs


def _runpod_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(14))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


class Demo:
    """Simulated pods, their servers and gpuctl's config for them (module docstring).

    Args:
        pods: how many pods (1-12; the first three are the 4xA100, 8xH100 and 4090 spot).
        preempt_after: seconds before the spot pod is preempted (and between
            preemptions); None: never.
        outage: seconds a preempted pod stays away.
        pace: multiplies the simulated trainers' step time (0.05 is 20x faster).
        checkpoint_mb: size of each checkpoint (default: the trainer's, a few MiB).
        interval: gpuctl's telemetry interval for the demo pods, in seconds.
        tmp_parent: where the temp dir goes (default: the system temp dir).
        notify: called with a sentence for a person when something happens to a pod.
        fault: a GPU fault (`gpu_sim.FAULTS`) shown on the first pod's GPU 1, so a
            newcomer sees what `gpuctl doctor`, the TUI and `watch` say about it.
    """

    def __init__(self, *, pods: int = 3, preempt_after: float | None = 180.0, outage: float = 90.0,
                 pace: float = 1.0, checkpoint_mb: float | None = None, interval: float = 1.0,
                 tmp_parent: str | os.PathLike[str] | None = None, notify: Callable[[str], None] | None = None,
                 fault: str | None = None):
        self.specs = pod_specs(pods)
        self.fault = fault
        self.stable_wrapper, self.stable_wrapper_shown = stable_wrapper_path()
        """`~/.cache/gpuctl/gpuctl-demo`: the same path for every demo, so the README and
        the TUI's help can name it (the real wrapper lives in the demo's temp dir).
        Resolved here, before the CLI points HOME and XDG_* at the demo's client dir."""
        self.preempt_after = preempt_after
        self.outage = outage
        self.pace = pace
        self.checkpoint_mb = checkpoint_mb
        self.interval = interval
        self.tmp_parent = tmp_parent
        self.notify = notify or (lambda _: None)
        self.user = getpass.getuser()
        self.root: Path | None = None
        self.sockets_root: Path | None = None  # tmux sockets, when root is too deep for them
        self.pods: dict[str, DemoPod] = {}
        self.standin: RunPodStandIn | None = None
        self.preemptions: dict[str, SpotPreemption] = {}
        self.client_env: dict[str, str] = {}
        self.config_path: Path | None = None
        self.known_hosts_lines: list[str] = []
        self._simulator = GpuSimulator()
        self._watchdog: subprocess.Popen | None = None
        self._started = False

    # ---------------------------------------------------------------- paths

    @property
    def client_dir(self) -> Path:
        assert self.root is not None
        return self.root / "client"

    @property
    def client_key_path(self) -> Path:
        return self.client_dir / "id_ed25519"

    @property
    def gpuctl_wrapper(self) -> Path:
        """A script that runs gpuctl against the demo from another terminal."""
        assert self.root is not None
        return self.root / "gpuctl"

    def _write_stable_wrapper(self) -> None:
        """Point the stable path at this demo's wrapper. It is left in place when the demo
        ends (or is killed): it then says that no demo is running, which beats a
        `No such file` for a path the user was told to use."""
        path = self.stable_wrapper
        path.parent.mkdir(parents=True, exist_ok=True)
        wrapper = shlex.quote(str(self.gpuctl_wrapper))
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(
            "#!/bin/sh\n# gpuctl against the running `gpuctl demo` (rewritten by each demo that starts).\n"
            f"if [ ! -x {wrapper} ]; then\n"
            "    echo 'gpuctl-demo: no demo is running (start one with ./scripts/demo)' >&2\n"
            "    exit 1\nfi\n"
            f'exec {wrapper} "$@"\n')
        tmp.chmod(0o700)
        os.replace(tmp, path)

    def pod(self, name: str) -> DemoPod:
        return self.pods[name]

    # ---------------------------------------------------------------- start

    async def start(self) -> None:
        """Build and start everything (see the module docstring).

        Raises:
            DemoError: tmux is missing, or a bad option.
        """
        require_tmux()
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        root = Path(os.path.realpath(tempfile.mkdtemp(prefix="gpuctl-demo-", dir=self.tmp_parent)))
        self.root = root
        root.chmod(0o700)
        if not all(socket_path_fits(root / spec.name / "t") for spec in self.specs):
            # A deep $TMPDIR: tmux's sockets go to a short dir of their own.
            self.sockets_root = Path(os.path.realpath(tempfile.mkdtemp(prefix="gpuctl-demo-", dir="/tmp")))
        self._watchdog = subprocess.Popen(
            [sys.executable, "-S", str(WATCHDOG), *map(str, self.temp_dirs)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="gpuctl-demo-client")
        self.client_dir.mkdir(mode=0o700)
        client_key.write_private_key(str(self.client_key_path))
        self.client_key_path.chmod(0o600)
        client_key.write_public_key(str(self.client_key_path) + ".pub")
        public = asyncssh.import_public_key(client_key.export_public_key())

        self.standin = RunPodStandIn(api_key=secrets.token_urlsafe(24))
        await self.standin.start()
        for spec in self.specs:
            pod = await self._start_pod(spec, root / spec.name, public)
            self.pods[spec.name] = pod
            line = f"[{LOOPBACK}]:{pod.port} {pod.server.host_key.export_public_key().decode().strip()}"
            self.known_hosts_lines.append(line)
            standin_pod = StandInPod(
                id=_runpod_id(), name=spec.name, gpu_id=spec.runpod_gpu, gpu_count=spec.gpu_count,
                cost=spec.price_per_hour, spot=spec.spot, ssh_port=pod.port, user=self.user,
                on_stop=pod.power_off, on_start=pod.power_on, on_terminate=pod.terminate,
            )
            self.standin.add(standin_pod)
            if spec.spot:  # on a timer only with preempt_after; `preempt()` works either way
                self.preemptions[spec.name] = SpotPreemption(
                    pod, self.standin, standin_pod, after=self.preempt_after or 0.0, outage=self.outage,
                    notify=self.notify)
        self._simulator.start()
        self._write_client_side()
        if self.preempt_after:
            for timer in self.preemptions.values():
                timer.start()

    async def _start_pod(self, spec: PodSpec, where: Path, client_public: asyncssh.SSHKey) -> DemoPod:
        assert self.root is not None
        socket_dir = self.sockets_root / str(len(self.pods)) if self.sockets_root is not None else None
        sandbox = Sandbox(spec.name, where, self.root, socket_dir)
        sandbox.create()
        shutil.copyfile(TRAINER, sandbox.workspace / "train.py")
        fault = self.fault if spec is self.specs[0] else None
        gpus = PodGpus(spec.name, spec.gpu_model, spec.gpu_count, sandbox.gpu_state, sandbox.heartbeat, fault)
        self._simulator.add(gpus)
        host_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"gpuctl-demo-{spec.name}")
        server = PodSshServer(sandbox, host_key, client_public, self.user)
        await server.start()
        return DemoPod(spec, sandbox, gpus, server, self._simulator)

    def _write_client_side(self) -> None:
        client = self.client_dir
        env = {
            "HOME": str(client / "home"),
            "XDG_CONFIG_HOME": str(client / "config"),
            "XDG_DATA_HOME": str(client / "data"),
            "XDG_STATE_HOME": str(client / "state"),
            "XDG_CACHE_HOME": str(client / "cache"),
        }
        for path in env.values():
            Path(path).mkdir(parents=True, exist_ok=True)
        (client / "home" / ".ssh").mkdir(mode=0o700)
        self.config_path = client / "config" / "gpuctl" / "config.yaml"
        self.config_path.parent.mkdir(parents=True)
        self.config_path.write_text(self.config_text())
        assert self.standin is not None
        env["GPUCTL_CONFIG"] = str(self.config_path)
        env[API_KEY_ENV] = self.standin.api_key
        self.client_env = env
        gpuctl = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "gpuctl" else None
        command = shlex.quote(str(gpuctl)) if gpuctl else f"{shlex.quote(sys.executable)} -m tui.cli"
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.gpuctl_wrapper.write_text(
            "#!/bin/sh\n# gpuctl against this demo's pods (its config and host keys); gone when the demo ends.\n"
            f'exec env {assignments} {command} "$@"\n')
        self.gpuctl_wrapper.chmod(0o700)
        try:
            self._write_stable_wrapper()
        except OSError:  # a read-only cache dir costs the shortcut, not the demo
            pass

    def session_command(self, spec: SessionSpec, *, resume: bool = False) -> str:
        """The shell command a session runs (with ``{checkpoint}`` for the resume template)."""
        hang = ["--hang-at", str(HANG_AT_STEP)] if self.fault == "hang" and spec is self.specs[0].session else []
        parts = ["python3", "train.py", "--format", spec.format, *spec.extra, *hang,
                 "--total-steps", str(spec.total_steps), "--checkpoint-every", str(spec.checkpoint_every),
                 "--checkpoint-dir", spec.checkpoint_dir, "--seed", str(spec.seed)]
        if self.pace != 1.0:
            from backends.demo.trainer import DEFAULTS

            parts += ["--step-time", f"{DEFAULTS[spec.format][0] * self.pace:.4g}"]
        if self.checkpoint_mb is not None:
            parts += ["--checkpoint-mb", f"{self.checkpoint_mb:g}"]
        command = shlex.join(parts)
        return command + " --resume {checkpoint}" if resume else command

    def config_dict(self) -> dict[str, Any]:
        """gpuctl's config for the demo pods (what `config_text` writes)."""
        assert self.standin is not None and self.root is not None  # both set by start()
        pods = []
        for name, pod in self.pods.items():
            spec, session = pod.spec, pod.spec.session
            entry: dict[str, Any] = {
                "name": name, "host": LOOPBACK, "port": pod.port, "price_per_hour": spec.price_per_hour,
                "workdir": "~/workspace",
                "provider": {"type": "runpod", "id": self.standin.by_name(name).id,
                             "api_url": self.standin.api_url, "api_key_env": API_KEY_ENV},
                "sessions": [{
                    "name": session.name, "command": self.session_command(session), "workdir": "~/workspace",
                    "resume": self.session_command(session, resume=True), "checkpoints": [session.checkpoint_glob],
                }],
            }
            if session.format == "lightning":  # Lightning's bar counts batches per epoch, never the total
                entry["sessions"][0]["total_steps"] = session.total_steps
            pods.append(entry)
        return {
            "defaults": {"user": self.user, "identity": str(self.client_key_path), "host_key": "strict",
                         "connect_timeout": 5, "interval": self.interval},
            # The spot pod comes back from each preemption without its training: the
            # TUI and `gpuctl watch` relaunch it from the newest checkpoint, as a real
            # unattended run would be configured.
            # New checkpoints are fetched into the demo's own temp dir (removed at exit).
            # `--fault hang`: a hung run is restarted a minute after its step froze.
            "policies": {"auto_resume": {"max_restarts": 5, "backoff_s": 5,
                                         **({"on_hang_minutes": 1} if self.fault == "hang" else {})},
                         "auto_download": "newest", "keep_local": 2, "checkpoint_interval_s": 20,
                         "download_dir": str(self.root / "downloads" / "{pod}" / "{session}")},
            "pods": pods,
        }

    def config_text(self) -> str:
        head = ("# gpuctl demo: simulated pods on this machine, generated for this run and\n"
                "# removed when the demo exits. The pods are SSH servers on 127.0.0.1; their host\n"
                "# keys are pinned in the demo's own known_hosts (host_key: strict).\n")
        return head + yaml.safe_dump(self.config_dict(), sort_keys=False, width=1 << 16)

    def install_known_hosts(self, path: str | os.PathLike[str]) -> Path:
        """Write the pods' host keys into `path`, the known_hosts gpuctl reads
        (``sessions.config.paths.gpuctl_known_hosts_path()`` with `client_env` applied).

        Raises:
            DemoError: `path` is outside the demo's temp dir: `client_env` was not
                applied, and this would write into the user's own gpuctl data.
        """
        assert self.root is not None
        target = Path(path)
        if not _inside(target, self.root):
            raise DemoError(f"refusing to write the demo's host keys to {target}: it is outside {self.root} "
                            "(apply the demo's client environment first)")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(line + "\n" for line in self.known_hosts_lines))
        return target

    # ---------------------------------------------------------------- actions

    async def preempt(self, name: str) -> bool:
        """Preempt a spot pod now (tests and the curious); False when it is not running."""
        return await self.preemptions[name].preempt_now()

    async def restore(self, name: str) -> bool:
        """Bring a preempted spot pod back now."""
        return await self.preemptions[name].restore_now()

    # ---------------------------------------------------------------- stop

    async def stop(self) -> list[str]:
        """Stop and remove everything; returns what could not be cleaned (normally nothing).

        Every step runs even when an earlier one failed.
        """
        problems: list[str] = []

        async def step(what: str, coro: Coroutine[Any, Any, Any]) -> None:
            try:
                await asyncio.wait_for(coro, 20)
            except Exception as exc:  # noqa: BLE001 - one failure must not skip the rest
                problems.append(f"{what}: {type(exc).__name__}: {exc}")

        for timer in self.preemptions.values():
            await step("spot timer", timer.stop())
        await step("GPU simulator", self._simulator.stop())
        if self.standin is not None:
            await step("RunPod stand-in", self.standin.close())
        for pod in self.pods.values():
            await step(f"{pod.name} tmux", asyncio.to_thread(pod.sandbox.kill_tmux))
            await step(f"{pod.name} ssh", pod.server.stop())
        if self.root is not None:
            await step("leftover processes", end_leftovers(self.root))
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                problems.append(f"could not remove {path}")
        if self._watchdog is not None:  # nothing left for it to do: let it go
            await step("watchdog", asyncio.to_thread(_release, self._watchdog))
        return problems

    @property
    def temp_dirs(self) -> list[Path]:
        """Every folder the demo made (removed by `stop`)."""
        return [p for p in (self.root, self.sockets_root) if p is not None]


def stable_wrapper_path() -> tuple[Path, str]:
    """Where each demo puts its `gpuctl-demo` shortcut (the user's cache dir), and that
    path as shown to the user (`~` for their home)."""
    import platformdirs

    path = Path(platformdirs.user_cache_dir("gpuctl", appauthor=False)) / "gpuctl-demo"
    home = os.path.expanduser("~")
    text = str(path)
    if home != "/" and text.startswith(home + os.sep):
        text = "~" + text[len(home):]
    return path, text


def _release(watchdog: subprocess.Popen) -> None:
    """Close the watchdog's pipe (it wakes, finds nothing to clean) and reap it."""
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(10)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()
