"""`Transport` over an open asyncssh connection: one exec channel per command.

The connection is lent (by `sessions.link.pod_link`), never owned: closing this transport
closes nothing but the SFTP channel a download may have opened. Any number of
commands can run at once, each on its own channel, so `beside()` is this transport.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Sequence

import asyncssh

from backends.ssh import FailureKind, SshFailure, command_bytes, run_command
from backends.transport.base import CommandResult, read_file_by_command, write_command

if TYPE_CHECKING:
    from backends.agent import AgentChannel
    from backends.transfer import Fetcher
    from backends.upload_transfer import ParallelSender

_CHUNK = 64 * 1024


class SshTransport:
    """Commands as exec channels of `conn`.

    Args:
        conn: an open connection (`backends.ssh.connect`), lent by its owner.
        default_timeout: seconds a `run` may take when the caller gives none.
        ssh_argv: `SshTarget.ssh_argv(tty=False)` for the same pod, so a large
            download can go through the OpenSSH client (`backends.transfer`);
            None leaves that method out.
    """

    kind = "ssh"

    def __init__(self, conn: asyncssh.SSHClientConnection, default_timeout: float = 30.0, *,
                 ssh_argv: Sequence[str] | None = None):
        self.conn = conn
        self._timeout = default_timeout
        self._ssh_argv = list(ssh_argv) if ssh_argv else None

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        result = await run_command(self.conn, command, timeout=timeout or self._timeout, check=False)
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(status, str(result.stdout or ""), str(result.stderr or ""))

    async def stream(self, command: str) -> AsyncGenerator[bytes, None]:
        try:
            process = await self.conn.create_process(command_bytes(command), encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
        try:
            while True:
                try:
                    chunk = await process.stdout.read(_CHUNK)
                except (asyncssh.Error, OSError) as exc:
                    raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
                if not chunk:
                    break
                yield chunk
            await process.wait_closed()
            if process.exit_status is None and process.exit_signal is None:
                raise SshFailure(FailureKind.LOST, "connection lost while the command ran")
            if process.exit_status not in (0, None):
                err = (await process.stderr.read()) or b""
                lines = err.decode(errors="replace").strip().splitlines()
                raise SshFailure(FailureKind.COMMAND, lines[-1] if lines else f"exit status {process.exit_status}")
        finally:
            process.close()

    async def read_file(self, path: str, offset: int = 0, length: int | None = None, *,
                        timeout: float | None = None) -> bytes:
        return await read_file_by_command(self, path, offset, length, timeout)

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600,
                         timeout: float | None = None) -> None:
        limit = timeout or self._timeout
        try:
            process = await self.conn.create_process(command_bytes(write_command(path, mode)),
                                                     encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
        try:
            try:
                process.stdin.write(data)
                process.stdin.write_eof()
            except (asyncssh.Error, OSError):
                pass  # the command ended before reading it all: its exit status says why
            result = await asyncio.wait_for(process.wait(check=False), limit)
        except (asyncio.TimeoutError, TimeoutError):
            raise SshFailure(FailureKind.TIMEOUT, f"writing {path} timed out after {limit:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
        finally:
            process.close()
        if result.exit_status is None and result.exit_signal is None:
            raise SshFailure(FailureKind.LOST, f"connection lost while writing {path}")
        if result.exit_status != 0:
            err = result.stderr or b""
            lines = (err if isinstance(err, str) else err.decode(errors="replace")).strip().splitlines()
            why = lines[-1] if lines else f"exit status {result.exit_status}"
            raise SshFailure(FailureKind.COMMAND, f"could not write {path}: {why}")

    def fetcher(self, *, method: str = "auto") -> "Fetcher":
        from backends.parallel_transfer import ChannelFetcher

        return ChannelFetcher(self.conn, method=method, ssh_argv=self._ssh_argv)

    def sender(self) -> "ParallelSender":
        from backends.upload_transfer import ParallelSender

        return ParallelSender(self.conn, ssh_argv=self._ssh_argv)

    @asynccontextmanager
    async def beside(self) -> AsyncIterator["SshTransport"]:
        yield self  # every command is a channel of its own already

    async def start_agent(self, options: dict[str, Any], *, timeout: float) -> "AgentChannel":
        from backends.agent import AgentChannel

        return await AgentChannel.start(self.conn, options, timeout=timeout)

    async def open_pty(self, command: str | None = None, *, term_size: tuple[int, int] = (80, 24)) -> Any:
        try:
            return await self.conn.create_process(
                command_bytes(command) if command is not None else None,
                term_type="xterm-256color", term_size=term_size, request_pty="force",
                encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"could not open a terminal: {exc}") from exc

    def close(self) -> None:
        pass  # the connection is lent; Fetcher closes its own SFTP channel
