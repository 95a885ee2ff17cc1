"""Several channels of ONE OpenSSH client connection (a ControlMaster), for big
transfers on a far link.

Why: on a far link a transfer needs several channels (one channel's window caps it,
`backends.parallel_transfer`), and with several channels the limit becomes CPU.
asyncssh re-slices its input buffer per packet and copies each payload several
times: receiving a GiB through it costs ~4 s of this machine's CPU before anything is
written, sending one ~3x OpenSSH's cost per 32 KiB packet (the pod's sshd takes no
larger ones from a client). OpenSSH's C client moves the same GiB for ~1.4 s
(`bench/download.py`, 2 cores, 50 ms round trip). So a big transfer on a far link
opens one more connection, an OpenSSH ControlMaster, and runs its range servers as
sessions multiplexed on it: one TCP connection, one handshake, one host-key check,
several channels with their own windows, and the bytes never pass through asyncssh.

How:

* The master is `ssh -M -N` with exactly the settings gpuctl's own connection uses
  (`SshTarget.ssh_argv`: host, port, user, keys, known_hosts, host-key policy,
  ProxyCommand) plus `backends.transfer`'s OpenSSH options (BatchMode, AES-GCM
  first, no forwarding). Its socket lives in a private directory (0700, made here),
  gone with the transfer. OpenSSH takes the first value given for an option, so the
  mux options come before the shared ones that say "no multiplexing".
* Each channel is `ssh -S SOCKET HOST COMMAND`: the mux client hands its stdin,
  stdout and stderr to the master (file descriptor passing), which reads and writes
  them itself; the client process only waits. `MuxProcess` gives it the shape of
  asyncssh's `SSHClientProcess` that the senders and fetchers already speak (stdin,
  stdout, stderr streams, `exit_status`, `close`, `wait_closed`), so the range
  protocol is written once.
* Every child is tied to gpuctl (`backends.child_procs`): none outlives it, a kill -9
  included. Leaving `OpensshMux` ends the channels, then the master.
* A master that cannot come up (no OpenSSH client, a key only asyncssh can use, a
  refused login) is `MuxUnavailable`: callers carry on over asyncssh's channels,
  which always work, only slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from backends import child_procs

PIPE_SIZE = 1024 * 1024
"""Pipe buffer asked for each channel's stdin and stdout (Linux `F_SETPIPE_SZ`; 1 MiB is
what an unprivileged process may ask by default): the master and this process then
move a MiB per wake-up instead of 64 KiB."""

_F_SETPIPE_SZ = 1031
_READY_POLL_S = 0.02


class MuxUnavailable(Exception):
    """The OpenSSH master could not be started; the message says why."""


class MuxProcess:
    """One session on the master, shaped like asyncssh's `SSHClientProcess` where
    the transfer code uses it: `stdin` (write, drain, write_eof), `stdout` and
    `stderr` (readers), `exit_status` (None while it runs), `close`, `wait_closed`."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def exit_status(self) -> int | None:
        return self._proc.returncode

    def close(self) -> None:
        """End the session (its mux client's group); the master closes the channel."""
        if self._proc.returncode is None:
            child_procs.kill_group(self._proc)

    async def wait_closed(self) -> None:
        await self._proc.wait()


class OpensshMux:
    """An OpenSSH ControlMaster for one transfer; `async with` it, then `open(command)`
    sessions on it. See the module docstring."""

    def __init__(self, ssh_argv: Sequence[str], options: Sequence[str], *, connect_timeout: float = 15.0):
        """`ssh_argv`: `SshTarget.ssh_argv(tty=False)` with the program resolved
        (`backends.transfer.openssh_argv`), the host last; `options`: the OpenSSH
        options every transfer client gets (`backends.transfer._OPENSSH_OPTIONS`)."""
        self._argv = list(ssh_argv)
        self._options = list(options)
        self._timeout = connect_timeout
        self._stack = contextlib.AsyncExitStack()
        self._dir: str | None = None
        self._socket = ""
        self._master: asyncio.subprocess.Process | None = None

    def _command(self, *mux: str, remote: Sequence[str] = ()) -> list[str]:
        return [*self._argv[:-1], *mux, *self._options, self._argv[-1], *remote]

    async def __aenter__(self) -> "OpensshMux":
        _sweep()
        # 0700: only this user reaches the socket. Short (a socket path has ~100 bytes).
        self._dir = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        self._socket = os.path.join(self._dir, "s")
        log = Path(self._dir) / "master.log"
        try:
            with open(log, "wb") as err:
                self._master = await self._stack.enter_async_context(child_procs.tied(
                    *self._command("-M", "-N", "-o", "ControlMaster=yes", "-o", f"ControlPath={self._socket}",
                                   "-o", "ControlPersist=no"),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err))
            await self._wait_ready(log)
        except BaseException:
            await self.close()
            raise
        return self

    async def _wait_ready(self, log: Path) -> None:
        assert self._master is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while not os.path.exists(self._socket):
            if self._master.returncode is not None:
                words = log.read_text(errors="replace").strip().splitlines()
                raise MuxUnavailable(words[-1] if words else f"ssh exited with status {self._master.returncode}")
            if loop.time() > deadline:
                raise MuxUnavailable(f"ssh did not connect within {self._timeout:.0f} s")
            await asyncio.sleep(_READY_POLL_S)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """End every session, then the master; remove the socket's directory."""
        try:
            await self._stack.aclose()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    async def open(self, command: str) -> MuxProcess:
        """A session running `command` (a shell command line for the pod) on the master.

        Raises:
            OSError: the client could not be started.
        """
        proc = await self._stack.enter_async_context(child_procs.tied(
            *self._command("-o", "ControlMaster=no", "-o", f"ControlPath={self._socket}", remote=[command]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=PIPE_SIZE))
        for stream in (proc.stdin, proc.stdout):
            _widen(stream)
        return MuxProcess(proc)


_PREFIX = "gpuctl-mux-"


def _sweep() -> None:
    """Remove the socket directories of gpuctl processes that are gone (a kill -9
    leaves one behind: its master died with it, `child_procs`, but nothing removed
    the directory). Only this user's, only ours by name."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue  # alive (EPERM: another user's process) or unreadable: leave it


def _widen(stream: object) -> None:
    """Ask for a `PIPE_SIZE` pipe behind `stream` (best effort: not Linux, or capped)."""
    transport = getattr(stream, "transport", None) or getattr(stream, "_transport", None)
    pipe = transport.get_extra_info("pipe") if transport is not None else None
    if pipe is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ValueError, AttributeError):
        pass
