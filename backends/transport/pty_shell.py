"""Commands, file transfers and the agent through one interactive PTY shell.

RunPod's proxied SSH (`<token>@ssh.runpod.io`) carries an interactive shell only: no
exec channel, no SFTP, no port forwarding. Everything gpuctl needs is rebuilt on top
of that one shell, slower than direct TCP but working:

1. **Setup.** Open a shell with a PTY, then type one line that turns the terminal's
   echo and output processing off (`stty -echo -opost`: no typed text comes back,
   `\\n` is not turned into `\\r\\n`) and replaces the login shell with `cat | sh -s`.
   That shell reads a pipe, so it is not interactive in any shell's sense: no prompt,
   no line editor (bash's readline, busybox's), no job control. Markers printed with
   `printf '%s-%s' WORD NONCE` never appear literally in what was typed, so an echo
   that slipped through before `stty` took effect cannot be taken for one.
2. **Commands** are framed: `printf B-<tag>; { ( command ) </dev/null 2>&1; printf E-<tag> $?; } | cat`.
   Output between the frames is the command's (stdout and stderr together: a PTY has
   one stream), and the exit status comes with the end frame. The `| cat` keeps the
   terminal away from the command, as over exec: tools that see a terminal change
   what they print (GNU `find -printf` turns control characters in names into `?`).
3. **Files up** (the agent's source) travel as a heredoc of base64 lines: a terminal
   in canonical mode accepts lines of at most 4095 bytes, so nothing long is typed.
4. **Files down** (checkpoints) travel as base64: `stream` runs a command whose
   stdout the pod base64-encodes, and hands the client the decoded bytes line-whole
   and in order, so a `.part` file written from it is always a clean prefix of the
   file (`backends.transfer.PtyFetcher` resumes a download there, and
   `sessions.checkpoints.download` verifies it against the pod's SHA-256 as for direct pods).
5. **Typed text is plain.** A terminal acts on control characters typed into it
   (`^C` interrupts, `^D` ends input, `\r` becomes `\n`, `^V` and DEL edit the
   line), so a command holding any (a file name with a `\r` in it) is typed as
   base64 lines and `eval`ed from `base64 -d`, never raw.
6. **The agent** runs in the same shell: its source is uploaded as a file, then the
   shell `exec`s python on it; its JSON lines come back over the PTY, and
   `AgentChannel` reads them as it does over an exec channel.

Every remote command here is built from `shlex.quote`d parts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncssh

from backends.agent import AgentChannel
from backends.agent_command import agent_payload
from backends.remote_path import quote_path
from backends.ssh import REMOTE_ENCODING, REMOTE_ERRORS, FailureKind, SshFailure
from backends.transport.base import CommandResult

MAX_LINE = 3000
"""Longest line typed into the shell (a canonical-mode terminal takes at most 4095)."""

_UNTYPABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\udc80-\udcff]")
"""Characters a terminal in canonical mode would act on instead of passing along, and
the lone surrogates that stand for a file name's non-UTF-8 bytes (`REMOTE_ERRORS`): a
raw invalid byte typed into a UTF-8 line editor is not sure to arrive as typed."""

_B64_LINES = re.compile(r"(?:[A-Za-z0-9+/]{76}\n)*")
"""Whole lines of `base64` output (it wraps at 76 characters), the bulk of a stream."""

_B64_SHORT = re.compile(r"[A-Za-z0-9+/]{0,75}={0,2}")

STREAM_IDLE_S = 60.0
"""`stream` gives up when no output arrived for this long."""

_SETUP = "stty -echo -opost 2>/dev/null; printf '%s-%s\\n' SETUP {nonce}; exec /bin/sh -c 'cat | exec /bin/sh -s'\n"


class PtyShell:
    """One PTY shell on a pod, used as a command runner (see module docstring).

    Use `await PtyShell.open(conn)`; one command at a time (a lock serialises them).
    """

    def __init__(self, process: asyncssh.SSHClientProcess, nonce: str) -> None:
        self._process = process
        self._nonce = nonce
        self._buffer = ""
        self._seq = 0
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._broken: str | None = None

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection, *, timeout: float = 20.0) -> "PtyShell":
        """Open the shell and bring it to the framed, echo-less state.

        Raises:
            SshFailure: the shell did not come up, or did not answer in `timeout` seconds.
        """
        try:
            # Lossless both ways (backends.ssh.REMOTE_ERRORS): a file name that is not
            # UTF-8 comes back as the bytes it is, and goes out again the same.
            process = await conn.create_process(term_type="dumb", term_size=(200, 50), request_pty="force",
                                                encoding=REMOTE_ENCODING, errors=REMOTE_ERRORS)
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"could not open a shell: {exc}") from exc
        shell = cls(process, secrets.token_hex(6))
        shell._conn = conn
        try:
            process.stdin.write(_SETUP.format(nonce=shell._nonce))
            await shell._read_until(re.compile(rf"SETUP-{shell._nonce}\n"), timeout)
            process.stdin.write(f"printf '%s-%s\\n' READY {shell._nonce}\n")
            await shell._read_until(re.compile(rf"READY-{shell._nonce}\n"), timeout)
        except BaseException:
            process.close()
            raise
        shell._buffer = ""
        return shell

    async def _read_until(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Read until `pattern` matches the buffer; drop everything up to the match's end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = pattern.search(self._buffer)
            if match:
                self._buffer = self._buffer[match.end():]
                return match
            left = deadline - loop.time()
            if left <= 0:
                raise SshFailure(FailureKind.TIMEOUT, f"the pod's shell did not answer within {timeout:g}s")
            try:
                data = await asyncio.wait_for(self._process.stdout.read(65536), left)
            except (asyncio.TimeoutError, TimeoutError):
                continue
            except (asyncssh.Error, OSError) as exc:
                raise SshFailure(FailureKind.LOST, f"the shell closed: {exc}") from None
            if not data:
                raise SshFailure(FailureKind.LOST, "the pod's shell closed")
            self._buffer += data

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        """Run `command` in the shell; its stdout and stderr together come back as stdout.

        Raises:
            ValueError: a line of `command` is longer than MAX_LINE (send data with `put_file`).
            SshFailure: the shell closed or did not answer in time.
        """
        def frame(tag: str, typed: str) -> str:
            return f"{{ ( {typed}\n) </dev/null 2>&1; printf '\\n%s-%s %s\\n' E {tag} \"$?\"; }} | cat\n"

        async with self._framed(command, frame, timeout or 30.0) as tag:
            end = await self._read_until(re.compile(rf"\nE-{tag} (\d+)\n"), timeout or 30.0)
            # _read_until dropped the output with the end frame: recover it from the match.
            output = end.string[: end.start()]
            return CommandResult(int(end.group(1)), output, "")

    @asynccontextmanager
    async def _framed(self, command: str, frame: Callable[[str, str], str],
                      timeout: float) -> AsyncIterator[str]:
        """Hold the shell, type the begin marker and `frame(tag, typed command)`, wait
        for the marker: what `run` and `stream` share. Yields the frame's tag."""
        typed = self._typable(command)
        async with self._lock:
            self._check_open()
            tag = self._next_tag()
            self._process.stdin.write(f"printf '%s-%s\\n' B {tag}\n" + frame(tag, typed))
            await self._read_until(re.compile(rf"B-{tag}\n"), timeout)
            yield tag

    def _next_tag(self) -> str:
        self._seq += 1
        return f"{self._nonce}x{self._seq}"

    def _check_open(self) -> None:
        if self._broken is not None:
            raise SshFailure(FailureKind.LOST, f"the pod's shell was closed: {self._broken}")

    def _typable(self, command: str) -> str:
        """`command` as it can be typed: itself, or base64 lines `eval`ed when it holds
        characters the terminal would act on (module docstring, point 5).

        Raises:
            ValueError: a line longer than MAX_LINE.
        """
        if _UNTYPABLE.search(command):
            encoded = base64.b64encode(command.encode(REMOTE_ENCODING, REMOTE_ERRORS)).decode("ascii")
            body = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
            end = f"GPUCTL_CMD_{self._nonce}"
            command = f"eval \"$(base64 -d <<'{end}'\n{body}\n{end}\n)\""
        if any(len(line) > MAX_LINE for line in command.splitlines()):
            raise ValueError(f"a command line longer than {MAX_LINE} characters cannot be typed into a terminal")
        return command

    async def stream(self, command: str, sink: Callable[[bytes], None], *,
                     idle_timeout: float = STREAM_IDLE_S) -> int:
        """Run `command`; hand its stdout, as bytes, to `sink` in order as it arrives.

        The pod base64-encodes the output (a terminal and the proxy carry text, and this
        shell reads it as UTF-8); the client decodes whole 76-character lines, so `sink`
        only ever gets bytes that arrived intact and in order, never a guess. After the
        first line that is not base64 (an error message on stderr, which shares the
        terminal) nothing more goes to `sink`. Returns the number of bytes handed over.

        Raises:
            SshFailure: COMMAND when the command failed (with its last error line),
                LOST when the shell closed, TIMEOUT after `idle_timeout` s without output.
            Whatever `sink` raises. Then, and when cancelled mid-stream, the shell is
            closed: the rest of the output is still on its way, and no later command
            could find its own frames behind it.
        """
        def frame(tag: str, typed: str) -> str:
            return (f"{{ ( {typed}\n) </dev/null || printf '\\n%s-%s %s\\n' X {tag} \"$?\" >&2; }} | base64\n"
                    f"printf '\\n%s-%s %s\\n' E {tag} \"$?\"\n")

        async with self._framed(command, frame, idle_timeout) as tag:
            try:
                sent, failure = await self._stream_body(tag, sink, idle_timeout)
            except BaseException as exc:
                if self._broken is None:  # the frame never ended: the shell is unusable
                    self._broken = f"a transfer through it stopped ({type(exc).__name__})"
                    self._process.close()
                raise
        if failure is not None:
            raise SshFailure(FailureKind.COMMAND, failure)
        return sent

    async def _stream_body(self, tag: str, sink: Callable[[bytes], None],
                           idle_timeout: float) -> tuple[int, str | None]:
        """(bytes handed to `sink`, why the command failed or None), once the end frame came."""
        end_frame, fail_frame = f"E-{tag} ", f"X-{tag} "
        pending, self._buffer = self._buffer, ""
        sent = 0
        errors: list[str] = []
        failed: str | None = None
        short = False  # the last, shorter line of the output was seen: no data may follow
        while True:
            cut = pending.rfind("\n") + 1
            if cut:
                block, pending = pending[:cut], pending[cut:]
                bulk = _B64_LINES.match(block).end()  # type: ignore[union-attr]
                if bulk and not (errors or failed or short):
                    data = binascii.a2b_base64(block[:bulk])
                    sink(data)
                    sent += len(data)
                for line in block[bulk:].split("\n")[:-1] if bulk < len(block) else ():
                    if line.startswith(end_frame):
                        self._buffer = pending  # normally empty: the frame is the last output
                        status = int(line[len(end_frame):] or 1)
                        if failed is not None or errors or status != 0:
                            return sent, errors[-1].strip() if errors else f"exit status {failed or status}"
                        return sent, None
                    if line.startswith(fail_frame):
                        failed = line[len(fail_frame):].strip()
                    elif not line:
                        continue
                    elif (not (errors or failed or short) and len(line) % 4 == 0
                          and _B64_SHORT.fullmatch(line)):
                        data = binascii.a2b_base64(line)
                        sink(data)
                        sent += len(data)
                        short = len(line) < 76
                    else:
                        errors.append(line if len(line) <= 300 else line[:300] + "...")
            try:
                chunk = await asyncio.wait_for(self._process.stdout.read(1 << 20), idle_timeout)
            except (asyncio.TimeoutError, TimeoutError):
                raise SshFailure(FailureKind.TIMEOUT,
                                 f"the pod sent nothing for {idle_timeout:g}s in the middle of a transfer") from None
            except (asyncssh.Error, OSError) as exc:
                raise SshFailure(FailureKind.LOST, f"the shell closed: {exc}") from None
            if not chunk:
                raise SshFailure(FailureKind.LOST, "the pod's shell closed in the middle of a transfer")
            pending += chunk

    async def follow(self, command: str) -> AsyncIterator[bytes]:
        """Run `command`; yield its stdout as bytes the moment they arrive, until it ends.

        Unlike `stream`, nothing is base64-encoded on the pod: `base64` reads its input
        in 30 KiB blocks, so a slowly growing log (`gpuctl logs -f`) would show in
        bursts. The bytes come raw instead (output processing is off, and this shell
        decodes with surrogateescape, so every byte survives), and the end frame is
        found by its nonce, which no output can guess; output is held back only while
        it ends in what could be the frame's first characters (a record separator). stderr is dropped (it shares
        the terminal and would mix into the data); a non-zero exit says its status.

        Raises:
            SshFailure: COMMAND when the command exited non-zero, LOST when the shell
                closed. When the caller stops early (or is cancelled) the shell is
                closed: the command is still running in it.
        """
        def frame(tag: str, typed: str) -> str:
            # The end frame starts with an ASCII record separator rather than a newline:
            # the part of the output that could be the start of the frame is held back
            # until more arrives, and a log's last newline must not wait for the next line.
            return f"{{ ( {typed}\n) </dev/null 2>/dev/null; printf '\\036%s-%s %s\\n' E {tag} \"$?\"; }} | cat\n"

        # The lock is taken by hand, not with `_framed`: a generator that yields inside
        # an `async with` cannot be finalised cleanly when its consumer drops it.
        typed = self._typable(command)
        status = 0
        await self._lock.acquire()
        try:
            self._check_open()
            tag = self._next_tag()
            self._process.stdin.write(f"printf '%s-%s\\n' B {tag}\n" + frame(tag, typed))
            await self._read_until(re.compile(rf"B-{tag}\n"), 30.0)
            marker = f"\x1eE-{tag} "
            pending, self._buffer = self._buffer, ""
            while True:
                at = pending.find(marker)
                if at >= 0:
                    if at:
                        yield pending[:at].encode(REMOTE_ENCODING, REMOTE_ERRORS)
                    rest = pending[at + len(marker):]
                    while "\n" not in rest:
                        rest += await self._read_more(None)
                    status_text, _, self._buffer = rest.partition("\n")
                    status = int(status_text.strip() or 1)
                    break
                keep = _partial_suffix(pending, marker)
                if len(pending) > keep:
                    cut = len(pending) - keep
                    yield pending[:cut].encode(REMOTE_ENCODING, REMOTE_ERRORS)
                    pending = pending[cut:]
                pending += await self._read_more(None)
        except BaseException as exc:
            if self._broken is None:  # the frame never ended: the shell is unusable
                self._broken = f"a command streaming through it stopped ({type(exc).__name__})"
                self._process.close()
            raise
        finally:
            self._lock.release()
        if status != 0:
            raise SshFailure(FailureKind.COMMAND, f"exit status {status}")

    async def _read_more(self, timeout: float | None) -> str:
        """The next text from the shell (waiting at most `timeout` s, or for ever)."""
        try:
            data = await asyncio.wait_for(self._process.stdout.read(1 << 20), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise SshFailure(FailureKind.TIMEOUT, f"the pod's shell sent nothing for {timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"the shell closed: {exc}") from None
        if not data:
            raise SshFailure(FailureKind.LOST, "the pod's shell closed")
        return data

    async def sibling(self, *, timeout: float = 20.0) -> "PtyShell":
        """Another shell on the same connection, for a command to run beside this one's.

        Raises:
            SshFailure: the proxy refused a second shell, or it did not come up.
        """
        if self._conn is None:
            raise SshFailure(FailureKind.OTHER, "this shell does not know its connection")
        return await PtyShell.open(self._conn, timeout=timeout)

    async def put_file(self, remote_path: str, data: bytes, *, mode: str = "600", timeout: float = 60.0) -> None:
        """Write `data` to `remote_path` on the pod (a leading `~/` expands), as a
        heredoc of base64 lines."""
        encoded = base64.b64encode(data).decode("ascii")
        lines = [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
        end = f"GPUCTL_EOF_{self._nonce}"
        path = quote_path(remote_path)
        body = "\n".join(lines)
        command = f"umask 077; base64 -d > {path} <<'{end}' && chmod {shlex.quote(mode)} {path}\n{body}\n{end}"
        result = await self.run(command, timeout=timeout)
        if not result.ok:
            raise SshFailure(FailureKind.COMMAND, f"could not write {remote_path}: {result.last_error_line()}")

    async def start_agent(self, options: dict[str, Any], *, python: str = "python3",
                          timeout: float = 30.0) -> AgentChannel:
        """Upload the agent and `exec` it in this shell; the shell is the agent's channel after.

        The shell can run no more commands once this returns.
        """
        path = f"/tmp/gpuctl-agent-{self._nonce}.z"
        await self.put_file(path, base64.b64decode(agent_payload()), timeout=timeout)
        # The bootstrap reads and deletes the file, then runs it as `python3 -c` would.
        boot = (f"import os,zlib;p={path!r};s=open(p,'rb').read();os.unlink(p);"
                "exec(zlib.decompress(s))")
        argument = json.dumps(options, separators=(",", ":"), sort_keys=True)
        self._process.stdin.write(" ".join(shlex.quote(p) for p in ("exec", python, "-u", "-c", boot, argument)) + "\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = await self._read_until(re.compile(r"[^\n]*\n"), max(0.1, deadline - loop.time()))
            line = match.group(0).strip()
            if not line:
                continue
            try:
                hello = json.loads(line)
            except ValueError:
                raise SshFailure(FailureKind.COMMAND, f"the agent did not start: {line[:200]!r}") from None
            # Text already read past the hello belongs to the agent's stream.
            leftover, self._buffer = self._buffer, ""
            return AgentChannel(_Resumed(self._process, leftover), hello)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._broken is None:
            self._broken = "closed by gpuctl"
        self._process.close()


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a start of `marker` (held back: the
    next read may complete the marker)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


class _ResumedReader:
    """A stream reader that first hands out text already read from it."""

    def __init__(self, reader: Any, leftover: str) -> None:
        self._reader = reader
        self._left = leftover

    async def readline(self) -> str:
        if "\n" in self._left:
            line, _, self._left = self._left.partition("\n")
            return line + "\n"
        head, self._left = self._left, ""
        return head + await self._reader.readline()


class _Resumed:
    """The shell's process as `AgentChannel` uses it, stdout resumed after the hello."""

    def __init__(self, process: asyncssh.SSHClientProcess, leftover: str) -> None:
        self._process = process
        self.stdin = process.stdin
        self.stdout = _ResumedReader(process.stdout, leftover)

    def close(self) -> None:
        self._process.close()
