"""Child processes that never outlive gpuctl.

A download's OpenSSH client writes straight into the `.part` file and shares its
lock (the flock lives on the open file, which the child holds too). If gpuctl dies
by kill -9, SIGTERM or SIGHUP and the child lives on, it keeps writing the `.part`
and every rerun is refused as "being written by another download" until it ends on
its own. So each child started through `tied`:

* gets its own process group (session), so a terminal's Ctrl-C or hangup reaches
  gpuctl, which then ends the child itself, and so `killpg` reaches whatever the
  child started;
* on Linux asks the kernel for SIGKILL when gpuctl dies (`PR_SET_PDEATHSIG`), the
  one thing that still works after kill -9;
* while it runs, a SIGTERM or SIGHUP that would kill gpuctl without any cleanup (the
  default disposition) first kills the child's group, then ends gpuctl as the signal
  would have. Where the application has its own handler (a graceful shutdown that
  cancels the download), that handler is left alone: the cancellation ends the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, AsyncIterator, Callable

_PR_SET_PDEATHSIG = 1
_FATAL_BY_DEFAULT = (signal.SIGTERM, signal.SIGHUP)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # resolved here: the forked child only calls it


def _die_with(parent: int) -> Callable[[], None]:
    """The child's last step before exec: SIGKILL when `parent` dies; and if it died
    already (between the fork and here), no exec at all."""
    args = (ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL),
            ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))

    def preexec() -> None:
        _prctl(*args)  # type: ignore[misc]
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the child's process group (it leads it); nothing if it is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Groups:
    """The groups of the children running now, and the signal handlers that end them."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self._saved: dict[int, Any] = {}

    def add(self, pid: int) -> None:
        self.pids.add(pid)
        if self._saved or threading.current_thread() is not threading.main_thread():
            return  # installed already; or not allowed (signal handlers are the main thread's)
        for sig in _FATAL_BY_DEFAULT:
            if signal.getsignal(sig) == signal.SIG_DFL:
                self._saved[sig] = signal.signal(sig, self._fatal)

    def discard(self, pid: int) -> None:
        self.pids.discard(pid)
        if not self.pids and threading.current_thread() is threading.main_thread():
            self._restore()

    def _restore(self) -> None:
        saved, self._saved = self._saved, {}
        for sig, handler in saved.items():
            if signal.getsignal(sig) == self._fatal:  # nobody replaced ours meanwhile
                signal.signal(sig, handler)

    def _fatal(self, sig: int, frame: FrameType | None) -> None:
        for pid in list(self.pids):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._restore()
        os.kill(os.getpid(), sig)  # the default action again: gpuctl ends as it would have


_groups = _Groups()


@contextlib.asynccontextmanager
async def tied(*argv: str, **options: Any) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `argv` (as `asyncio.create_subprocess_exec`, `options` passed on) as a
    child that cannot outlive gpuctl; leaving the block kills its group if it still
    runs, and waits for it.

    Raises:
        OSError: the program could not be started.
    """
    preexec = _die_with(os.getpid()) if _prctl is not None else None
    proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True, preexec_fn=preexec, **options)
    _groups.add(proc.pid)
    try:
        yield proc
    finally:
        try:
            if proc.returncode is None:
                kill_group(proc)
            await asyncio.shield(proc.wait())
        finally:
            _groups.discard(proc.pid)
