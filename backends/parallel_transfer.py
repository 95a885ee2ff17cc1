"""Pod files to here as parallel byte ranges over several channels of ONE connection.

Why: one SSH channel moves at most its flow-control window per round trip. Between a
laptop and a pod on another continent (30-150 ms) that caps a single stream near
40 MB/s (`scp`: OpenSSH's 2 MiB window over 50 ms) whatever the bandwidth. Several
channels of the same connection, each with its own window, multiply that; no new
handshake, no second login, the host key checked once (`sessions.link.pod_link`).

How:

* **One range server per channel.** Each channel runs `_RANGE_SERVER` (python3, on
  the pod) once; it reads requests `OFFSET LENGTH HEXPATH` on stdin and answers each
  with exactly LENGTH bytes of the file (`sendfile` into a 1 MiB pipe: no copy on the
  pod). Requests are pipelined (`DEPTH` outstanding per channel), so a channel never
  waits a round trip between two ranges, and a folder's small files share channels
  instead of paying a process start each. Without python3 on the pod the caller falls
  back to the sequential methods (`NoRangeServer`).
* **One queue of ranges for every file** of a checkpoint (file order, then offset):
  the files of a folder move concurrently, a big file as `chunk_for` ranges spread
  over `channels_for(round trip)` channels (at most `MAX_CHANNELS`, fewer when there
  are fewer ranges). Channels get a
  large window and 256 KiB packets: asyncssh's cost is per packet, and 8x fewer of
  them was 1.5x less client CPU per GiB here.
* **Written where they belong** (`pwrite` at the range's offset) into a `.part`
  created at full size. `backends.range_state` records each finished range with its
  CRC-32 beside the `.part` (one appended line), so any interruption (kill -9, dropped link, full disk)
  loses at most the ranges in flight, and a resumed range is checked before it is
  trusted. A file whose ranges have all landed is fsynced and its record removed: the
  `.part` is then complete, as a sequential method leaves it.
* **Hashed as it lands**: a `LocalHasher` thread per file follows the landed prefix
  (ranges finish roughly in order), so the file's SHA-256 is ready soon after its
  last byte; the pod's SHA-256 runs beside (`sessions.checkpoints.download`).

Local safety is the sequential writer's (`backends.transfer._open_part`): never
through a symlink, one writer per `.part` (flock), the user's umask, a full disk
named as such.

(Past 400 lines: the pod's range server, the channel that answers it and the local
bookkeeping are one protocol, easier to check side by side than across files.)
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import math
import os
import shlex
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Sequence, TypeVar

import asyncssh

from backends import range_state
from backends.openssh_mux import PIPE_SIZE, MuxProcess, MuxUnavailable, OpensshMux
from backends.ssh import command_bytes
from backends import transfer
from backends.transfer import (
    PARALLEL,
    Fetcher,
    FetchJob,
    FetchStats,
    FileProgress,
    LocalHasher,
    TransferFailed,
    _lost,
    _NO_SPACE,
    _open_part,
    _write_failed,
    fetch_each,
)

MAX_CHANNELS = 8
"""Channels per transfer. OpenSSH's sshd allows 10 sessions per connection
(`MaxSessions`); the agent and the pod's hash use two. Fewer open, fewer are used."""

DEPTH = 2
"""Requests outstanding per channel: the next range is asked for before this one ends."""

WINDOW = 8 * 1024 * 1024
"""Receive window per channel (asyncssh's default is 2 MiB)."""

TARGET_RATE = 1e9
"""Bytes/s the channels together should be able to carry whatever the round trip."""

OPENSSH_WINDOW = 2 * 1024 * 1024
"""The receive window an OpenSSH client gives a session (its `CHAN_SES_WINDOW_DEFAULT`),
so what each session of the OpenSSH master (`backends.openssh_mux`) keeps in flight."""

PACKET = 256 * 1024
"""Largest SSH packet a channel accepts (asyncssh's default is 32 KiB)."""

PARALLEL_SSH = "parallel-ssh"
"""How `FetchStats.method` names parallel ranges moved through the OpenSSH master."""

MUX_MIN_BYTES = 64 * 1024 * 1024
"""From this many bytes on a far link, the channels are sessions of an OpenSSH
ControlMaster (`backends.openssh_mux`) rather than of asyncssh: its C client needs a
third of the CPU per GiB, worth its one more connection (~0.3 s at 50 ms) only for
a big transfer."""

MIN_CHUNK = 4 * 1024 * 1024
MAX_CHUNK = 64 * 1024 * 1024
_SYNC_EVERY = 64 * 1024 * 1024
_MARK = 1024 * 1024

class NoRangeServer(Exception):
    """The pod cannot run the range server (no python3): use a sequential method."""



_T = TypeVar("_T")

def opened_or_raise(opened: list[_T | BaseException]) -> list[_T]:
    """The channels that opened (from `gather(..., return_exceptions=True)`); when none
    did, the first failure is raised: some channels are enough, none is an error."""
    ok = [o for o in opened if not isinstance(o, BaseException)]
    if not ok:
        raise next(o for o in opened if isinstance(o, BaseException))
    return ok


async def run_until_first_failure(jobs: Sequence[Awaitable[object]]) -> None:
    """Run the channel workers together (downloads and uploads alike): the first one
    that fails cancels the others, which are waited for, and its error is raised."""
    workers = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for w in done:
            error = w.exception()
            if error is not None:
                raise error
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def chunk_for(size: int) -> int:
    """Range size for a file of `size` bytes: about 4 ranges per channel, whole MiB,
    between `MIN_CHUNK` and `MAX_CHUNK` (small enough to spread a file over every
    channel and to lose little to an interruption; large enough that the per-range
    request costs nothing)."""
    want = -(-size // (MAX_CHANNELS * 4))
    want = -(-want // (1 << 20)) * (1 << 20)
    return max(MIN_CHUNK, min(MAX_CHUNK, want))


# The pod's side: answers `OFFSET LENGTH HEXPATH` lines with exactly LENGTH bytes of the
# file; a file shorter than asked (it changed) ends the server with exit 5 and a word
# on stderr, an unreadable one with exit 4. Paths come hex-encoded: a name may hold
# any byte, newlines included. `~/` is the login directory, as in a shell.
_RANGE_SERVER = r"""import binascii, os, sys
try:
    import fcntl
    fcntl.fcntl(1, 1031, 1048576)
except Exception:
    pass
fds = {}
for line in sys.stdin.buffer:
    off, length, hexpath = line.split()
    off = int(off)
    end = off + int(length)
    path = os.path.expanduser(binascii.unhexlify(hexpath))
    fd = fds.get(path)
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            sys.stderr.write("%s: %s\n" % (os.fsdecode(path), exc.strerror))
            sys.exit(4)
        if len(fds) > 64:
            os.close(fds.pop(next(iter(fds))))
        fds[path] = fd
    while off < end:
        try:
            sent = os.sendfile(1, fd, off, end - off)
        except OSError as exc:
            if exc.errno not in (22, 38):
                raise
            block = os.pread(fd, min(1048576, end - off), off)
            sent = len(block)
            view = memoryview(block)
            while view:
                view = view[os.write(1, view):]
        if not sent:
            sys.stderr.write("%s: shorter than listed (did it change?)\n" % os.fsdecode(path))
            sys.exit(5)
        off += sent
"""


async def round_trip(conn: asyncssh.SSHClientConnection, tries: int = 5) -> float | None:
    """The link's round trip in seconds: the fastest of `tries` keepalive requests
    (answered by sshd itself, no process started on the pod, so a busy pod does not
    read as a far one); None when it cannot be measured."""
    ask = getattr(conn, "_make_global_request", None)  # asyncssh's own keepalive call
    if ask is None:
        return None
    best: float | None = None
    for _ in range(tries):
        started = time.perf_counter()
        try:
            await asyncio.wait_for(ask(b"keepalive@openssh.com"), 10)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            return best
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
        if took > _FAR_S:
            break  # far whatever the noise (a busy machine only adds to a round trip)
    return best


_FAR_S = 0.02


def channels_for(rtt: float | None, window: int = WINDOW) -> int:
    """Channels for a link with round trip `rtt` (None: unknown): enough windows in
    flight for `TARGET_RATE` (`window` bytes each per round trip: asyncssh's channels
    get `WINDOW`, an OpenSSH client's `OPENSSH_WINDOW`), between 2 and `MAX_CHANNELS`;
    each one more is a process on the pod and work for its sshd."""
    if rtt is None:
        return MAX_CHANNELS
    return max(2, min(MAX_CHANNELS, math.ceil(TARGET_RATE * rtt / window)))


def range_server_command() -> str:
    """The pod command of one channel (exit 127 without python3)."""
    return (f"command -v python3 >/dev/null 2>&1 || exit 127; "
            f"exec python3 -c {shlex.quote(_RANGE_SERVER)}")


@dataclass
class _File:
    """One file of a transfer: its `.part`, which ranges landed, its hash."""

    index: int
    job: FetchJob
    fd: int
    state: range_state.RangeState
    progress: FileProgress | None
    sync: bool
    resumed_from: int = 0
    refetched: int = 0
    moved: int = 0
    inflight: int = 0
    hasher: LocalHasher | None = None
    syncing: asyncio.Future | None = None
    synced_at: int = 0
    landed: int = 0
    prefix: int = 0
    record: range_state.Record | None = None
    next_mark: int = 0

    def done_bytes(self) -> int:
        return self.landed + self.inflight

    def tell(self, force: bool = False) -> None:
        done = self.done_bytes()
        if self.progress is not None and (force or done >= self.next_mark):
            self.next_mark = done + _MARK
            self.progress(self.index, done, self.job.size)


@dataclass
class _Range:
    file: _File
    offset: int
    length: int
    got: int = 0
    crc: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _RangeChannel(asyncssh.SSHClientSession):
    """One range server's channel: writes each answer where it belongs, in request order."""

    def __init__(self, landed: Callable[[_Range], None]):
        self._landed = landed
        self._queue: collections.deque[_Range] = collections.deque()
        self._chan: asyncssh.SSHClientChannel | None = None
        self.stderr = b""
        self.error: BaseException | None = None
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, chan: asyncssh.SSHClientChannel) -> None:
        self._chan = chan

    def ask(self, rng: _Range) -> None:
        assert self._chan is not None
        path = os.fsencode(rng.file.job.remote_path).hex()
        self._queue.append(rng)
        try:
            self._chan.write(f"{rng.offset} {rng.length} {path}\n".encode())
        except (asyncssh.Error, OSError):
            pass  # the channel closed (no python3, a drop): `closed` and `error` say why

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr = (self.stderr + data)[-4096:]
            return
        view = memoryview(data)
        while view and self.error is None:
            if not self._queue:
                self._fail(TransferFailed("remote", "the pod sent more than was asked for"))
                return
            rng = self._queue[0]
            take = view[:rng.length - rng.got]
            try:
                written = 0
                while written < len(take):
                    written += os.pwrite(rng.file.fd, take[written:], rng.offset + rng.got + written)
            except OSError as exc:
                self._fail(_write_failed(rng.file.job.part_path, rng.length - rng.got, exc))
                return
            rng.crc = zlib.crc32(take, rng.crc)
            rng.got += len(take)
            rng.file.inflight += len(take)
            rng.file.tell()
            view = view[len(take):]
            if rng.got == rng.length:
                self._queue.popleft()
                self._landed(rng)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if self._chan is not None:
            self._chan.close()

    def connection_lost(self, exc: Exception | None) -> None:
        status = self._chan.get_exit_status() if self._chan is not None else None
        if self.error is None:
            if status == 127:
                self.error = NoRangeServer("no python3 on the pod")
            elif self._queue:
                rng = self._queue[0]
                words = self.stderr.decode(errors="replace").strip().splitlines()
                if status is not None and status != 0:
                    why = words[-1] if words else f"exit status {status}"
                    self.error = TransferFailed("remote", f"cannot read {rng.file.job.remote_path} on the pod: {why}")
                else:
                    self.error = _lost(rng.file.job.remote_path, exc or ConnectionError("channel closed"))
        self._queue.clear()  # the workers wake on `closed` and raise `error`
        if not self.closed.done():
            self.closed.set_result(None)


class _MuxChannel:
    """A session of the OpenSSH master (`MuxProcess`) as the channel `_RangeChannel`
    talks to: what asyncssh would call on the session (data, then the end) is pumped
    from the process's stdout and stderr; the range protocol stays written once."""

    def __init__(self, proc: MuxProcess, session: _RangeChannel):
        self._proc = proc
        session.connection_made(self)  # type: ignore[arg-type]
        self._pump = asyncio.ensure_future(self._run(session))

    def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)

    def write_eof(self) -> None:
        try:
            self._proc.stdin.write_eof()
        except (OSError, RuntimeError):
            pass  # the session is gone: its end says why

    def close(self) -> None:
        self._proc.close()

    def get_exit_status(self) -> int | None:
        return self._proc.exit_status

    async def _run(self, session: _RangeChannel) -> None:
        async def errors() -> None:
            while chunk := await self._proc.stderr.read(4096):
                session.data_received(chunk, asyncssh.EXTENDED_DATA_STDERR)

        said = asyncio.ensure_future(errors())
        lost: Exception | None = None
        try:
            while data := await self._proc.stdout.read(PIPE_SIZE):
                session.data_received(data, None)
            await said
            await self._proc.wait_closed()
        except (OSError, ValueError) as exc:
            lost = exc if isinstance(exc, OSError) else ConnectionError(str(exc))
        finally:
            said.cancel()
            session.connection_lost(lost)


_Channel = asyncssh.SSHClientChannel | _MuxChannel


class ParallelFetch:
    """One transfer of several files (see the module docstring). `await run()` once."""

    def __init__(self, conn: asyncssh.SSHClientConnection, jobs: Sequence[FetchJob], *,
                 progress: FileProgress | None = None, sync: bool = True, channels: int = MAX_CHANNELS,
                 mux: OpensshMux | None = None):
        self.conn = conn
        self.mux = mux
        self.jobs = list(jobs)
        self.progress = progress
        self.sync = sync
        self.channels = channels
        self.files: list[_File] = []
        self.started = time.monotonic()

    async def run(self) -> list[FetchStats]:
        """Fetch every job's missing ranges; stats (with `sha256`) per job, in order.

        Raises:
            NoRangeServer: the pod has no python3 (nothing was written).
            TransferFailed: lost link, the pod refused, or a local write failed; every
                landed range is recorded, so the next run continues.
        """
        try:
            for i, job in enumerate(self.jobs):
                self.files.append(self._open(i, job))
            pending = [(f, off, n) for f in self.files for off, n in f.state.missing()]
            for f in self.files:
                f.tell(force=True)
            if pending:
                await self._move(collections.deque(pending))
            for f in self.files:
                await self._finish(f)
            return [await self._stats(f) for f in self.files]
        finally:
            for f in self.files:
                await self._close(f)

    def _open(self, index: int, job: FetchJob) -> _File:
        part = Path(job.part_path)
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            fd = _open_part(part, read=True)
        except OSError as exc:
            raise TransferFailed("local", f"cannot write {part}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TransferFailed("local", f"{part} is being written by another download "
                                          "(another gpuctl?); let it finish or stop it") from None
        try:
            state, bad = range_state.resume_state(part, fd, job.size, chunk_for(job.size))
            # The record before the file grows: a ranged .part always has one.
            record = range_state.Record(part, state) if state.missing() else None
            if os.fstat(fd).st_size != job.size:
                os.ftruncate(fd, job.size)
        except OSError as exc:
            os.close(fd)
            raise _write_failed(part, job.size, exc) if exc.errno in _NO_SPACE else TransferFailed(
                "local", f"cannot write {part}: {exc.strerror or exc}") from exc
        landed = state.landed_bytes()
        f = _File(index, job, fd, state, self.progress, self.sync, resumed_from=landed, refetched=bad,
                  synced_at=landed, landed=landed, prefix=state.prefix(), record=record)
        f.hasher = LocalHasher(part).start()
        f.hasher.advance(f.prefix)
        return f

    async def _move(self, pending: collections.deque[tuple[_File, int, int]]) -> None:
        count = max(1, min(self.channels, len(pending)))
        channels = opened_or_raise(
            await asyncio.gather(*(self._channel() for _ in range(count)), return_exceptions=True))
        try:
            await run_until_first_failure([self._worker(chan, session, pending) for chan, session in channels])
        finally:
            for chan, _ in channels:
                chan.close()

    async def _channel(self) -> tuple[_Channel, _RangeChannel]:
        if self.mux is not None:
            try:
                proc = await self.mux.open(range_server_command())
            except OSError as exc:
                raise _lost(self.jobs[0].remote_path, exc) from exc
            ranges = _RangeChannel(self._landed)
            return _MuxChannel(proc, ranges), ranges
        try:
            chan, session = await self.conn.create_session(
                lambda: _RangeChannel(self._landed), command_bytes(range_server_command()),  # type: ignore[arg-type]
                encoding=None, window=WINDOW, max_pktsize=PACKET)
        except (asyncssh.Error, OSError) as exc:
            raise _lost(self.jobs[0].remote_path, exc) from exc
        assert isinstance(session, _RangeChannel)
        return chan, session

    async def _worker(self, chan: _Channel, session: _RangeChannel,
                      pending: collections.deque[tuple[_File, int, int]]) -> None:
        asked: collections.deque[_Range] = collections.deque()
        while pending or asked:
            while pending and len(asked) < DEPTH:
                f, off, n = pending.popleft()
                rng = _Range(f, off, n)
                session.ask(rng)
                asked.append(rng)
            rng = asked[0]
            done, _ = await asyncio.wait((rng.done, session.closed), return_when=asyncio.FIRST_COMPLETED)
            if rng.done.done():
                asked.popleft()
                rng.done.result()
                continue
            await asyncio.sleep(0)  # let connection_lost fail the futures
            raise session.error or TransferFailed("lost", f"connection closed while fetching "
                                                          f"{rng.file.job.remote_path}")
        chan.write_eof()

    def _landed(self, rng: _Range) -> None:
        f = rng.file
        f.inflight -= rng.length
        f.state.done[rng.offset] = rng.crc
        if f.record is not None:
            f.record.add(rng.offset, rng.crc)
        f.moved += rng.length
        f.landed += rng.length
        while f.prefix < f.job.size and f.prefix in f.state.done:
            f.prefix += f.state.length(f.prefix)
        assert f.hasher is not None
        f.hasher.advance(f.prefix)
        f.tell()
        if f.sync and f.landed - f.synced_at >= _SYNC_EVERY and (f.syncing is None or f.syncing.done()):
            # Writeback while data still arrives: the fsync at the end finds little left.
            f.synced_at = f.landed
            f.syncing = asyncio.get_running_loop().run_in_executor(None, os.fdatasync, f.fd)
        if not rng.done.done():
            rng.done.set_result(None)

    async def _finish(self, f: _File) -> None:
        """Every range of `f` landed: make it durable, then drop its range record."""
        if f.syncing is not None:
            await asyncio.gather(f.syncing, return_exceptions=True)
        if f.sync:
            try:
                await asyncio.get_running_loop().run_in_executor(None, os.fsync, f.fd)
            except OSError as exc:
                raise (_write_failed(Path(f.job.part_path), 0, exc) if exc.errno in _NO_SPACE else
                       TransferFailed("local", f"cannot flush {f.job.part_path}: {exc.strerror or exc}")) from exc
        if f.record is not None:
            f.record.close()
            f.record = None
        range_state.discard(Path(f.job.part_path))
        f.tell(force=True)

    async def _stats(self, f: _File) -> FetchStats:
        assert f.hasher is not None
        digest = await f.hasher.result(f.job.size)
        return FetchStats(f.job.remote_path, Path(f.job.part_path), f.job.size, f.resumed_from, f.moved,
                          (PARALLEL_SSH if self.mux is not None else PARALLEL) if f.moved else "", time.monotonic() - self.started, sha256=digest,
                          refetched=f.refetched)

    async def _close(self, f: _File) -> None:
        if f.syncing is not None:
            await asyncio.gather(f.syncing, return_exceptions=True)
        if f.hasher is not None:
            f.hasher.close()
        if f.record is not None:  # stopped part way: the record keeps what landed
            f.record.close()
        os.close(f.fd)


class ChannelFetcher(Fetcher):
    """`backends.transfer.Fetcher` whose `fetch_all` moves a checkpoint as parallel
    ranges (what `SshTransport.fetcher` gives); `fetch` and the sequential methods
    are the base class's."""

    async def fetch_all(self, jobs: Sequence[FetchJob], progress: FileProgress | None = None) -> list[FetchStats]:
        """Bring every job's file into its `.part`, resuming; stats with `sha256` per job.

        "auto" and "parallel" move them as parallel byte ranges over channels of this
        connection (`ParallelFetch`, as many as the round trip needs),
        falling back to one file after another (`fetch`) on a pod without python3; a
        forced sequential method goes file by file. "auto" also goes file by file for
        a big file on a near link (round trip under `NEAR_RTT_S`, a LAN or this
        machine) with an OpenSSH client to stream it: one channel's window is no limit
        there, and the OpenSSH client moves a GiB for about half the CPU of channels
        through asyncssh (`bench/download.py`), CPU being what caps the speed.

        Raises:
            TransferFailed: as `fetch`.
        """
        rtt = await round_trip(self.conn) if self.method in ("auto", PARALLEL) else None
        near = rtt is not None and rtt < transfer.NEAR_RTT_S and self.ssh_argv is not None and any(
            j.size >= transfer.STREAM_MIN_SIZE for j in jobs)
        if self.method == PARALLEL or (self.method == "auto" and not near):
            try:
                if self.method == "auto" and self.ssh_argv is not None and sum(j.size for j in jobs) >= MUX_MIN_BYTES:
                    try:
                        async with OpensshMux(self.ssh_argv, transfer._OPENSSH_OPTIONS) as mux:
                            return await ParallelFetch(self.conn, jobs, progress=progress, sync=self.sync,
                                                       channels=channels_for(rtt, OPENSSH_WINDOW), mux=mux).run()
                    except MuxUnavailable:
                        pass  # no OpenSSH master (a key only asyncssh can use...): asyncssh's channels
                return await ParallelFetch(self.conn, jobs, progress=progress, sync=self.sync,
                                           channels=channels_for(rtt)).run()
            except NoRangeServer:
                if self.method == PARALLEL:
                    raise TransferFailed("remote", "the pod has no python3 to serve parallel ranges; "
                                                   "use another method") from None
        return await fetch_each(self, jobs, progress)

