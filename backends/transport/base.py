"""The one way gpuctl reaches a pod's shell: the `Transport` protocol and its result.

Every remote command, byte stream, file read or write and interactive terminal goes
through a `Transport`. Three implementations exist (`backends.transport.ssh_exec`,
`.pty`, `.local`); callers never ask which one they hold: what differs between them
(how a download moves bytes, whether a second command can run beside a busy one) is
a method of the transport itself (`fetcher`, `beside`).

Commands are shell text built from `shlex.quote`d parts. Output is decoded losslessly
(`REMOTE_ERRORS`, surrogateescape): a byte that is not UTF-8 comes back as a lone
surrogate, and `command_bytes` sends it back as the same byte.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncGenerator, Protocol, runtime_checkable

from backends.ssh import REMOTE_ENCODING, REMOTE_ERRORS

if TYPE_CHECKING:
    from backends.agent import AgentChannel
    from collections.abc import Sequence

    from backends.transfer import FetchJob, FetchStats, FileProgress, LocalHasher, ProgressFn
    from backends.upload_transfer import SendJob, SendProgress


class TransportUnsupported(Exception):
    """The transport cannot do this at all (a download from `host: local`, a PTY on
    this machine, a transfer method the proxy does not carry); `str()` says why in
    words a person can act on."""


@dataclass(frozen=True)
class CommandResult:
    """What a remote command printed and how it ended.

    `stdout`/`stderr` are decoded losslessly (`backends.ssh.REMOTE_ERRORS`): a byte
    that is not UTF-8 is a lone surrogate, so a file name read from here and put back
    into a command reaches the pod as the same bytes. Escape it before showing it.
    Through a PTY-only shell stdout and stderr arrive as one stream, in `stdout`.
    """

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def stdout_bytes(self) -> bytes:
        """`stdout` as the bytes the pod printed (the decoding is reversible)."""
        return self.stdout.encode(REMOTE_ENCODING, REMOTE_ERRORS)

    def last_error_line(self) -> str:
        """The last non-empty stderr line, or the exit status in words."""
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.exit_status}"


class Fetcher(Protocol):
    """Moves pod files into local `.part` files (`backends.transfer`); what
    `Transport.fetcher` returns. Use as `async with transport.fetcher() as f`."""

    async def __aenter__(self) -> "Fetcher": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def fetch(self, remote_path: str, part_path: Path, size: int, *,
                    hasher: "LocalHasher | None" = None, progress: "ProgressFn | None" = None) -> "FetchStats": ...

    async def fetch_all(self, jobs: "Sequence[FetchJob]",
                        progress: "FileProgress | None" = None) -> "list[FetchStats]":
        """Every job's file into its `.part` (resuming), hashed: `FetchStats.sha256`
        set. Over exec channels the files and the ranges of big files move in
        parallel; through a PTY shell one after another."""
        ...


class Sender(Protocol):
    """Sends local files' ranges into `.part` files on the pod
    (`backends.upload_transfer`); what `Transport.sender` returns."""

    kind: str

    def chunk_for(self, size: int) -> int: ...

    async def send_all(self, jobs: "Sequence[SendJob]", progress: "SendProgress | None" = None) -> int: ...


@runtime_checkable
class Transport(Protocol):
    """A way to run things on one pod (see the module docstring).

    Attributes:
        kind: "ssh", "pty" or "local": for words shown to people and for tests,
            never for a caller to branch on.
    """

    kind: str

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        """Run `command` to its end; raises `SshFailure` (TIMEOUT, LOST), never for a
        non-zero exit (that is `CommandResult.ok`)."""
        ...

    def stream(self, command: str) -> AsyncGenerator[bytes, None]:
        """Run `command` and yield its stdout as bytes, in order, as they arrive, until
        it ends. Raises `SshFailure`: LOST when the link drops, COMMAND when the command
        exits non-zero (after its output). Closing the iterator stops the command."""
        ...

    async def read_file(self, path: str, offset: int = 0, length: int | None = None, *,
                        timeout: float | None = None) -> bytes:
        """Bytes `offset`.. (at most `length`) of a pod file; `SshFailure(COMMAND)` when
        it cannot be read. `path` may start with `~/`."""
        ...

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600,
                         timeout: float | None = None) -> None:
        """Create or replace a pod file with `data` and `mode`; `SshFailure(COMMAND)`
        when it cannot be written."""
        ...

    def fetcher(self, *, method: str = "auto") -> Fetcher:
        """How this transport moves files here (`backends.transfer`). Raises
        `TransportUnsupported` for a method it cannot carry, `ValueError` for an
        unknown one."""
        ...

    def sender(self) -> "Sender":
        """How this transport moves local files into `.part`s on the pod
        (`backends.upload_transfer`): parallel exec channels, or one PTY shell.
        Raises `TransportUnsupported` where there is nothing to upload to."""
        ...

    def beside(self) -> AbstractAsyncContextManager["Transport"]:
        """A transport for a command that must run while this one is busy (the pod's
        hash beside a download): the same one where commands run concurrently, a
        second shell where they cannot (this one again when the pod refuses one)."""
        ...

    async def start_agent(self, options: dict[str, Any], *, timeout: float) -> "AgentChannel":
        """Start the telemetry agent (`backends.agent`) on a channel of its own.
        Raises `AgentUnavailable` (no python3) or `SshFailure`."""
        ...

    async def open_pty(self, command: str | None = None, *, term_size: tuple[int, int] = (80, 24)) -> Any:
        """An interactive terminal on the pod (`command`, or the login shell): a process
        with `stdin.write`, `stdout.read` and `close`. `TransportUnsupported` where there
        is no remote terminal (this machine: run the command here instead)."""
        ...

    def close(self) -> None:
        """Release what this transport holds (a shell, a channel); never the connection
        it was lent (that belongs to `sessions.link.pod_link`)."""
        ...


def read_range_command(path: str, offset: int, length: int | None) -> str:
    """Shell text printing bytes `offset`.. (at most `length`) of `path`: the command
    every transport uses for `read_file` (plain coreutils/busybox, so pods without
    python3 work too; `tail -c +K` seeks on a regular file)."""
    from backends.remote_path import quote_path

    cut = f" | head -c {int(length)}" if length is not None else ""
    # The redirection first: a missing file fails the command (with the shell's
    # words) instead of an empty pipeline that exits 0.
    return f"exec < {quote_path(path)} && tail -c +{int(offset) + 1}{cut}"


async def read_file_by_command(transport: Transport, path: str, offset: int, length: int | None,
                               timeout: float | None) -> bytes:
    """`read_file` for a transport whose `run` returns exact bytes (ssh exec, local):
    `read_range_command` run once; a failure names the path and the shell's words."""
    from backends.ssh import FailureKind, SshFailure

    result = await transport.run(read_range_command(path, offset, length), timeout=timeout)
    if not result.ok:
        raise SshFailure(FailureKind.COMMAND, f"cannot read {path}: {result.last_error_line()}")
    return result.stdout_bytes


def write_command(path: str, mode: int) -> str:
    """Shell text that writes stdin to `path` with `mode` (never readable by others
    in between: the umask applies from the file's creation)."""
    from backends.remote_path import quote_path

    p = quote_path(path)
    return f"umask 077; cat > {p} && chmod {mode:o} {p}"
