"""One demo pod's sandbox: its folders, the programs on its PATH, and the environment of
every command run on it.

Layout, under the demo's temp dir::

    <pod>/home        HOME on the pod; sessions run in home/workspace
    <pod>/bin         first on PATH: nvidia-smi (simulated), python3, python
    <pod>/lib         on PYTHONPATH: a pynvml that refuses to load, a stand-in torch (below)
    <pod>/t           TMUX_TMPDIR: the pod's own tmux server socket (see `socket_dir`)
    <pod>/gpus.json   the simulated GPUs' state (GPUCTL_SIM_GPU_STATE)
    <pod>/heartbeat   touched by the simulated trainer (GPUCTL_DEMO_HEARTBEAT)

* ``python3`` is the interpreter gpuctl runs on, so a pod works on any machine that
  runs gpuctl, whatever ``python3`` the system PATH holds.
* ``pynvml`` is shadowed by a module that raises ImportError: on a machine with real
  NVIDIA GPUs the agent would otherwise read *those* through NVML instead of the
  simulated ones. A demo pod has no NVML, like a container without the driver's
  libraries; the agent falls back to ``nvidia-smi``, which is the simulated one.
* ``torch`` is the demo's stand-in (`backends.demo.torch_standin`, copied as
  ``lib/torch/__init__.py``): ``gpuctl check`` probes ``import torch`` and failed on
  every demo pod; the stand-in reports CUDA available with the simulated GPU count.
* Every process started on a pod carries ``GPUCTL_DEMO_ROOT`` in its environment, so
  the demo can find (`leftover_pids`) and end (`end_leftovers`) anything of its own
  that outlived its parent.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from backends.demo.watchdog import MARKER, marked_pids
from backends.sim_dmesg import install_wrapper as install_dmesg
from backends.sim_nvidia_smi import STATE_ENV, install_wrapper

SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
HEARTBEAT_ENV = "GPUCTL_DEMO_HEARTBEAT"

ROOT_ENV = MARKER  # the watchdog finds stragglers by it too
WORKSPACE = "workspace"

_NO_NVML = '''"""gpuctl demo pod: no NVML here; the GPUs are simulated (nvidia-smi on PATH)."""
raise ImportError("gpuctl demo pod: no NVIDIA driver libraries; use nvidia-smi")
'''


def login_shell() -> str:
    """The shell commands run under, as sshd runs them under the user's login shell."""
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def tool_path() -> str:
    """PATH on a pod after its own bin: the system dirs, plus wherever tmux lives
    (Homebrew's /opt/homebrew/bin is not a system dir)."""
    dirs = list(SYSTEM_PATH)
    tmux = shutil.which("tmux")
    if tmux and os.path.dirname(tmux) not in dirs:
        dirs.append(os.path.dirname(tmux))
    return os.pathsep.join(dirs)


SOCKET_PATH_MAX = 100
"""tmux's socket is ``$TMUX_TMPDIR/tmux-UID/default``, and a Unix socket's path must fit
in 104 (macOS) or 108 (Linux) bytes. Longer, tmux cannot even start."""


def socket_path_fits(tmux_tmpdir: Path) -> bool:
    """Whether tmux's socket under `tmux_tmpdir` has a usable path length."""
    return len(os.fsencode(tmux_tmpdir)) + len(f"/tmux-{os.getuid()}/default") <= SOCKET_PATH_MAX


@dataclass(frozen=True)
class Sandbox:
    """The folders of one demo pod (see the module docstring).

    Attributes:
        socket_dir: TMUX_TMPDIR when ``<pod>/t`` would make tmux's socket path too long
            (a deep $TMPDIR): a short folder elsewhere that the demo also removes.
    """

    name: str
    root: Path
    demo_root: Path
    socket_dir: Path | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def workspace(self) -> Path:
        return self.home / WORKSPACE

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def tmux_dir(self) -> Path:
        return self.socket_dir or self.root / "t"

    @property
    def gpu_state(self) -> Path:
        return self.root / "gpus.json"

    @property
    def heartbeat(self) -> Path:
        return self.root / "heartbeat"

    def create(self, python: str | None = None) -> None:
        """Make the folders and the programs on the pod's PATH."""
        python = os.path.abspath(python or sys.executable)
        for path in (self.home, self.workspace, self.bin, self.lib):
            path.mkdir(parents=True, exist_ok=True)
        self.tmux_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        install_wrapper(str(self.bin), python)
        install_dmesg(str(self.bin), python)  # the pod's kernel log: Xid lines for `--fault xid`
        for name in ("python3", "python"):
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')
            wrapper.chmod(0o755)
        (self.lib / "pynvml.py").write_text(_NO_NVML)
        (self.lib / "torch").mkdir(exist_ok=True)
        shutil.copyfile(Path(__file__).with_name("torch_standin.py"), self.lib / "torch" / "__init__.py")

    def environment(self, user: str) -> dict[str, str]:
        """The environment of every command run on the pod (exec, shell, SFTP-free)."""
        env = {
            "HOME": str(self.home),
            "USER": user,
            "LOGNAME": user,
            "SHELL": login_shell(),
            "PATH": os.pathsep.join((str(self.bin), tool_path())),
            "LANG": os.environ.get("LANG") or "C.UTF-8",
            "TMUX_TMPDIR": str(self.tmux_dir),
            STATE_ENV: str(self.gpu_state),
            HEARTBEAT_ENV: str(self.heartbeat),
            ROOT_ENV: str(self.demo_root),
            "PYTHONPATH": str(self.lib),
        }
        return env

    def tmux_sockets(self) -> list[Path]:
        """The pod's tmux server sockets (normally one: ``t/tmux-UID/default``)."""
        return sorted(p for p in self.tmux_dir.glob("tmux-*/*") if not p.name.startswith("."))

    def kill_tmux(self, timeout: float = 10.0) -> None:
        """End the pod's tmux server, and with it every session and its processes."""
        tmux = shutil.which("tmux") or shutil.which("tmux", path=tool_path())
        if tmux is None:
            return
        for socket in self.tmux_sockets():
            subprocess.run([tmux, "-S", str(socket), "kill-server"], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def leftover_pids(root: Path) -> list[int]:
    """Processes (of this user) whose environment carries this demo's marker (Linux only)."""
    return marked_pids(str(root))


async def end_leftovers(root: Path, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, whatever of the demo's still runs (after the orderly stops)."""
    pids = leftover_pids(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"
