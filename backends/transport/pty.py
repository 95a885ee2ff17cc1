"""`Transport` through one interactive PTY shell, for pods behind RunPod's proxy.

The proxy offers no exec channel and no SFTP (`backends.transport.pty_shell` says how commands
are framed through the shell instead). One shell runs one command at a time, so
`beside()` opens a second shell on the same connection for the pod's hash next to a
download, falling back to this one when the proxy refuses a second.
"""

from __future__ import annotations

import shlex
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator

import asyncssh

from backends.transport.pty_shell import PtyShell
from backends.ssh import FailureKind, SshFailure, command_bytes
from backends.transport.base import CommandResult, TransportUnsupported, read_range_command

if TYPE_CHECKING:
    from backends.agent import AgentChannel
    from backends.transfer import PtyFetcher
    from backends.upload_transfer import PtySender

PTY = "pty"


class PtyTransport:
    """A `PtyShell` as a `Transport`. Use `await PtyTransport.open(conn)`; `close()`
    closes the shell (never the connection, which is lent)."""

    kind = "pty"

    def __init__(self, shell: PtyShell, conn: asyncssh.SSHClientConnection, default_timeout: float = 30.0):
        self.shell = shell
        self._conn = conn
        self._timeout = default_timeout

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection, *, timeout: float = 20.0) -> "PtyTransport":
        """A new shell on `conn`, ready for commands (raises `SshFailure`)."""
        return cls(await PtyShell.open(conn, timeout=timeout), conn, timeout)

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        return await self.shell.run(command, timeout=timeout or self._timeout)

    async def stream(self, command: str) -> AsyncGenerator[bytes, None]:
        async for chunk in self.shell.follow(command):
            yield chunk

    async def read_file(self, path: str, offset: int = 0, length: int | None = None, *,
                        timeout: float | None = None) -> bytes:
        # Through base64 (`PtyShell.stream`): a file may hold any byte, and the proxy
        # is built to carry a terminal's text.
        data = bytearray()
        try:
            await self.shell.stream(read_range_command(path, offset, length), data.extend,
                                    idle_timeout=timeout or self._timeout)
        except SshFailure as exc:
            if exc.kind == FailureKind.COMMAND:
                raise SshFailure(FailureKind.COMMAND, f"cannot read {path}: {exc.message}") from None
            raise
        return bytes(data)

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600,
                         timeout: float | None = None) -> None:
        await self.shell.put_file(path, data, mode=f"{mode:o}", timeout=timeout or max(60.0, self._timeout))

    def fetcher(self, *, method: str = "auto") -> "PtyFetcher":
        from backends.transfer import METHODS, PtyFetcher

        if method not in ("auto", PTY):
            if method not in METHODS:
                raise ValueError(f"unknown transfer method {method!r}; use auto, {', '.join(METHODS)}")
            raise TransportUnsupported("the pod is reached through a shell-only proxy: its files come through "
                                       f"the shell (method pty), not {method}")
        return PtyFetcher(self.shell)

    def sender(self) -> "PtySender":
        """Ranges one at a time as base64 through this shell (slower; it works)."""
        from backends.upload_transfer import PtySender

        return PtySender(self.shell)

    @asynccontextmanager
    async def beside(self) -> AsyncIterator["PtyTransport"]:
        try:
            other = PtyTransport(await self.shell.sibling(timeout=30.0), self._conn, self._timeout)
        except SshFailure:
            yield self  # the proxy refused a second shell: wait for this one
            return
        try:
            yield other
        finally:
            other.close()

    async def start_agent(self, options: dict[str, Any], *, timeout: float) -> "AgentChannel":
        """The agent in a shell of its own (this one stays free for commands)."""
        shell = await self.shell.sibling(timeout=timeout)
        try:
            return await shell.start_agent(options, timeout=timeout)
        except BaseException:
            shell.close()
            raise

    async def open_pty(self, command: str | None = None, *, term_size: tuple[int, int] = (80, 24)) -> Any:
        """A new interactive shell; a `command` is typed into it (the proxy has no
        exec), as `exec sh -c COMMAND` so the terminal closes when it ends."""
        try:
            process = await self._conn.create_process(
                term_type="xterm-256color", term_size=term_size, request_pty="force", encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"could not open a terminal: {exc}") from exc
        if command is not None:
            process.stdin.write(command_bytes(f"exec sh -c {shlex.quote(command)}\n"))
        return process

    def close(self) -> None:
        self.shell.close()
