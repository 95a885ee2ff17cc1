"""Run one shell command on a pod, over SSH or on this machine, with a timeout.

Actions (launch, kill, resume...) are rare compared with telemetry, so they use a
plain exec per command; the long-lived agent channel stays for streaming. Both
runners take a command string already built from `shlex.quote`d parts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from backends.ssh import (
    REMOTE_ENCODING,
    REMOTE_ERRORS,
    FailureKind,
    SshFailure,
    run_command,
)


@dataclass(frozen=True)
class CommandResult:
    """What a remote command printed and how it ended.

    `stdout`/`stderr` are decoded losslessly (`backends.ssh.REMOTE_ERRORS`): a byte
    that is not UTF-8 is a lone surrogate, so a file name read from here and put back
    into a command reaches the pod as the same bytes. Escape it before showing it.
    """

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def last_error_line(self) -> str:
        """The last non-empty stderr line, or the exit status in words."""
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.exit_status}"


class Runner(Protocol):
    """Anything that can run a shell command on a pod."""

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult: ...


class SshRunner:
    """Runs commands over an open asyncssh connection."""

    def __init__(self, conn: asyncssh.SSHClientConnection, default_timeout: float = 30.0):
        self.conn = conn
        self._timeout = default_timeout

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        result = await run_command(self.conn, command, timeout=timeout or self._timeout, check=False)
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(status, str(result.stdout or ""), str(result.stderr or ""))


class LocalRunner:
    """Runs commands on this machine through `sh -c` (for `host: local` pods)."""

    def __init__(self, default_timeout: float = 30.0):
        self._timeout = default_timeout

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout or self._timeout)
        except (asyncio.TimeoutError, TimeoutError):
            proc.kill()
            await proc.wait()
            raise SshFailure(FailureKind.TIMEOUT, f"local command timed out after {timeout or self._timeout:g}s") from None
        return CommandResult(proc.returncode or 0, out.decode(REMOTE_ENCODING, REMOTE_ERRORS),
                             err.decode(REMOTE_ENCODING, REMOTE_ERRORS))
