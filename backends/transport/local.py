"""`Transport` for `host: local` pods: every command through `sh -c` on this machine.

The same shell text as over SSH, so a command is tested once for both. What has no
meaning here says so (`TransportUnsupported`): downloading from this machine to
itself, or a remote terminal.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator

from backends.child_procs import kill_group
from backends.ssh import REMOTE_ENCODING, REMOTE_ERRORS, FailureKind, SshFailure
from backends.transport.base import CommandResult, TransportUnsupported, read_file_by_command, write_command

if TYPE_CHECKING:
    from backends.agent import AgentChannel
    from backends.transport.base import Fetcher, Sender

_CHUNK = 64 * 1024


class LocalTransport:
    """Commands as `sh -c` children of this process (see module docstring)."""

    kind = "local"

    def __init__(self, default_timeout: float = 30.0):
        self._timeout = default_timeout

    async def _communicate(self, command: str, data: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        limit = timeout or self._timeout
        # Its own process group: a timeout ends what the command started too (a `sleep`
        # left holding the pipes kept `communicate` waiting past the limit).
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL if data is None else asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), limit)
        except (asyncio.TimeoutError, TimeoutError):
            kill_group(proc)
            await proc.wait()
            raise SshFailure(FailureKind.TIMEOUT, f"local command timed out after {limit:g}s") from None
        except BaseException:
            if proc.returncode is None:
                kill_group(proc)
                await proc.wait()
            raise
        return proc.returncode or 0, out, err

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        status, out, err = await self._communicate(command, None, timeout)
        return CommandResult(status, out.decode(REMOTE_ENCODING, REMOTE_ERRORS), err.decode(REMOTE_ENCODING, REMOTE_ERRORS))

    async def stream(self, command: str) -> AsyncGenerator[bytes, None]:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while chunk := await proc.stdout.read(_CHUNK):
                yield chunk
            err = await proc.stderr.read()
            status = await proc.wait()
            if status != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                raise SshFailure(FailureKind.COMMAND, lines[-1] if lines else f"exit status {status}")
        finally:
            if proc.returncode is None:
                kill_group(proc)
                await proc.wait()

    async def read_file(self, path: str, offset: int = 0, length: int | None = None, *,
                        timeout: float | None = None) -> bytes:
        return await read_file_by_command(self, path, offset, length, timeout)

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600,
                         timeout: float | None = None) -> None:
        status, _, err = await self._communicate(write_command(path, mode), data, timeout)
        if status != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise SshFailure(FailureKind.COMMAND,
                             f"could not write {path}: {lines[-1] if lines else f'exit status {status}'}")

    def fetcher(self, *, method: str = "auto") -> "Fetcher":
        raise TransportUnsupported("the pod is this machine (host: local): its files are already here; "
                                   "copy them with cp if you want them elsewhere")

    def sender(self) -> "Sender":
        raise TransportUnsupported("the pod is this machine (host: local): copy files with cp")

    @asynccontextmanager
    async def beside(self) -> AsyncIterator["LocalTransport"]:
        yield self

    async def start_agent(self, options: dict[str, Any], *, timeout: float) -> "AgentChannel":
        raise TransportUnsupported("a local pod is sampled in-process (backends.local), not by the agent")

    async def open_pty(self, command: str | None = None, *, term_size: tuple[int, int] = (80, 24)) -> Any:
        raise TransportUnsupported("the pod is this machine: run the command in this terminal")

    def close(self) -> None:
        pass
