"""Local files to a pod: parallel byte ranges into a `.part` on the pod, resumable,
each range checked on both ends; the pod-side commands that go with them.

The mirror of `backends.parallel_transfer`, for the other direction:

* **The pod side** is one python3 script (`_POD_SCRIPT`, several modes), so every
  path goes in hex-encoded (a name may hold any byte) and nothing is interpolated:
  `start` makes the upload's root and opens each file's `.part` in it (never through
  a symlink, never outside the root once symlinks are resolved), keeps the ranges its `.ranges` record lists whose
  CRC-32 still matches the bytes there, and says which; `serve` writes framed ranges
  (`OFFSET LENGTH HEXPART` + the bytes) where they belong and answers each with its
  CRC-32 once written and recorded; `put` does one range whose bytes come on stdin
  (through a PTY shell, as base64); `finish` renames a verified `.part` into place
  (never over an existing file unless forced) and drops the records; `follow`
  hashes each `.part` as its landed prefix grows (its record says what landed), so
  the pod's SHA-256 is ready with the last range; `kind` says
  what is at some paths; `drop` deletes `.part` files that failed verification.
* **Over exec channels** (`ParallelSender`) up to `MAX_CHANNELS` channels of the one
  connection each run `serve`; ranges of every file go out from one queue, `DEPTH`
  outstanding per channel, so on a far link many windows are in flight at once.
* **Through a PTY shell** (RunPod's proxy, `PtySender`) one range at a time as a
  heredoc of base64 lines into `put`: the proxy carries a terminal's text and one
  shell runs one command. It works, slower (about a third more bytes, one round trip
  per range); the callers say so.

Each range's CRC-32 is computed here as it is read and on the pod as it is written:
a range whose two CRCs differ is sent again. The whole file's SHA-256 on both ends
and the rename are the caller's (`sessions.checkpoints.upload`), so a copy is only
ever put in place once proven.

(Past 400 lines: the pod script is a third of it, and it is the other half of the
framing the senders speak; they are checked together.)
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import asyncssh

from backends.openssh_mux import MuxProcess, MuxUnavailable, OpensshMux
from backends import parallel_transfer
from backends.parallel_transfer import (DEPTH, MAX_CHANNELS, PACKET, chunk_for, opened_or_raise,
                                        run_until_first_failure)
from backends.ssh import FailureKind, SshFailure, command_bytes
from backends import transfer
from backends.transfer import TransferFailed, _lost



class _Result(Protocol):
    """What a command left (`backends.transport.base.CommandResult`)."""

    @property
    def exit_status(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...

    @property
    def ok(self) -> bool: ...


class _Runs(Protocol):
    """Something that runs a pod command: a `Transport`, or a `PtyShell` (named by
    shape, not imported: `backends.transport` builds senders from this module)."""

    async def run(self, command: str, *, timeout: float | None = None) -> _Result: ...

SendProgress = Callable[[int, int, int], None]
"""`progress(job_index, done_bytes, size)`; `done` counts ranges the pod already held."""

PTY_CHUNK = 1024 * 1024
"""Range size through a PTY shell: one command (1.4 MB of base64 lines) per range."""

_READ = 1024 * 1024

_FOLLOW_RATE = 50e6
"""Bytes/s the pod's follower is at least expected to hash (as `HASH_RATE` for a
checkpoint's): past that wait, the caller asks for a hash of its own."""

_POD_SCRIPT = r"""import binascii, json, os, sys, zlib
def P(h):
    return os.path.expanduser(binascii.unhexlify(h))
def side(part):
    return part + b".ranges"
def crc_of(fd, off, n):
    c = 0
    while n > 0:
        b = os.pread(fd, min(n, 4194304), off)
        if not b:
            return None
        c = zlib.crc32(b, c)
        off += len(b)
        n -= len(b)
    return c
def opened(part):
    fd = os.open(part, os.O_RDWR | os.O_NOFOLLOW)
    if not os.path.isfile(part):
        sys.stderr.write("%s: not a regular file\n" % os.fsdecode(part))
        sys.exit(6)
    return fd
def land(fd, inp, buf, off, end, whole=None):
    # one range from stdin, a MiB at a time: written, CRC'd (and hashed) while in the cache
    c = 0
    at = off
    while at < end:
        view = memoryview(buf)[:min(1048576, end - at)]
        got = inp.readinto(view)
        if not got:
            sys.exit(5)
        view = view[:got]
        k = 0
        while k < got:
            k += os.pwrite(fd, view[k:], at + k)
        c = zlib.crc32(view, c)
        if whole is not None:
            whole.update(view)
        at += got
    return c
def write_range(fd, part, off, data):
    n = 0
    while n < len(data):
        n += os.pwrite(fd, data[n:], off + n)
    c = zlib.crc32(data)
    with open(side(part), "ab") as r:
        r.write(b"%d %d\n" % (off, c))
    return c
mode = sys.argv[1]
if mode == "start":
    root = P(sys.argv[2])
    if os.path.islink(root) and sys.argv[3] == "1":
        sys.stderr.write("refusing to write through the symlink %s\n" % os.fsdecode(root))
        sys.exit(7)
    os.makedirs(root, exist_ok=True)
    real_root = os.path.realpath(root)
    old = os.umask(0)
    os.umask(old)
    out = []
    words = sys.stdin.buffer.read().split()
    for i in range(len(words) // 3):
        part, size, chunk = P(words[3 * i]), int(words[3 * i + 1]), int(words[3 * i + 2])
        os.makedirs(os.path.dirname(part) or b".", exist_ok=True)
        real_dir = os.path.realpath(os.path.dirname(part) or b".")
        if real_dir != real_root and not real_dir.startswith(real_root.rstrip(b"/") + b"/"):
            sys.stderr.write("%s leads outside %s (a symlink on the pod)\n" % (os.fsdecode(part), os.fsdecode(root)))
            sys.exit(7)
        if os.path.islink(part) or os.path.islink(side(part)):
            sys.stderr.write("refusing to write through the symlink %s\n" % os.fsdecode(part))
            sys.exit(7)
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666 & ~old)
        keep = {}
        try:
            lines = open(side(part), "rb").read().split(b"\n")
            head = json.loads(lines[0])
            if head.get("size") == size and head.get("chunk") == chunk:
                for rec in lines[1:-1]:
                    try:
                        off, c = (int(x) for x in rec.split())
                    except ValueError:
                        continue
                    if off % chunk == 0 and 0 <= off < size and crc_of(fd, off, min(chunk, size - off)) == c:
                        keep[off] = c
        except (OSError, ValueError, IndexError, AttributeError):
            pass
        if not keep:
            os.ftruncate(fd, 0)
        with open(side(part) + b".tmp", "wb") as r:
            r.write(json.dumps({"version": 1, "size": size, "chunk": chunk}).encode() + b"\n")
            r.write(b"".join(b"%d %d\n" % kv for kv in sorted(keep.items())))
        os.replace(side(part) + b".tmp", side(part))
        os.ftruncate(fd, size)
        os.close(fd)
        out += ["%d %d %d\n" % (i, off, c) for off, c in sorted(keep.items())]
    sys.stdout.write("".join(out) + "started\n")
elif mode == "serve":
    try:  # F_SETPIPE_SZ: a 1 MiB pipe from sshd, read a MiB per call, not 64 KiB
        import fcntl
        fcntl.fcntl(0, 1031, 1048576)
    except Exception:
        pass
    fds = {}
    inp = sys.stdin.buffer
    buf = bytearray(1048576)
    records = {}
    while True:
        line = inp.readline()
        if not line:
            break
        off, n, hexpart = line.split()
        off, end, part = int(off), int(off) + int(n), P(hexpart)
        fd = fds.get(part)
        if fd is None:
            if len(fds) >= 64:  # a folder of many files: keep few open
                oldest = next(iter(fds))
                os.close(fds.pop(oldest))
                records.pop(oldest).close()
            fd = fds[part] = opened(part)
            records[part] = open(side(part), "ab")
        c = land(fd, inp, buf, off, end)
        records[part].write(b"%d %d\n" % (off, c))
        records[part].flush()
        sys.stdout.write("%d %d\n" % (off, c))
        sys.stdout.flush()
elif mode == "stream":
    import hashlib
    part, off, size, chunk = P(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    fd = opened(part)
    inp = sys.stdin.buffer
    buf = bytearray(1048576)
    whole = hashlib.sha256() if off == 0 else None
    record = open(side(part), "ab")
    while off < size:
        end = min(off + chunk, size)
        c = land(fd, inp, buf, off, end, whole)
        record.write(b"%d %d\n" % (off, c))
        record.flush()
        sys.stdout.write("%d %d\n" % (off, c))
        sys.stdout.flush()
        off = end
    if whole is not None:
        sys.stdout.write("sha256 %s\n" % whole.hexdigest())
elif mode == "follow":
    # SHA-256 of each .part as its landed prefix grows (the `.ranges` records say what
    # landed), so the pod's hash is ready when the last range lands, not a pass later
    import hashlib, select, threading
    inp = sys.stdin.buffer
    syncing = None
    files = []
    for line in iter(inp.readline, b""):
        if line.strip() == b"go":
            break
        h, size, chunk = line.split()
        files.append({"part": P(h), "size": int(size), "chunk": int(chunk), "sha": hashlib.sha256(),
                      "hashed": 0, "prefix": 0, "landed": set(), "pos": 0, "fd": None})
    pending = list(range(len(files)))
    while pending:
        moved = False
        for i in list(pending):
            f = files[i]
            try:
                with open(side(f["part"]), "rb") as r:
                    r.seek(f["pos"])
                    got = r.read()
            except OSError:
                got = b""
            got = got[:got.rfind(b"\n") + 1]
            if got:
                lines = got.split(b"\n")[:-1]
                if f["pos"] == 0:
                    lines = lines[1:]  # the record's head
                f["pos"] += len(got)
                for rec in lines:
                    try:
                        f["landed"].add(int(rec.split()[0]))
                    except (ValueError, IndexError):
                        pass
            size, chunk = f["size"], f["chunk"]
            while f["prefix"] < size and f["prefix"] in f["landed"]:
                f["prefix"] += min(chunk, size - f["prefix"])
            if f["hashed"] < f["prefix"]:
                if f["fd"] is None:
                    f["fd"] = os.open(f["part"], os.O_RDONLY | os.O_NOFOLLOW)
                while f["hashed"] < f["prefix"]:
                    b = os.pread(f["fd"], min(1048576, f["prefix"] - f["hashed"]), f["hashed"])
                    if not b:
                        sys.exit(5)
                    f["sha"].update(b)
                    f["hashed"] += len(b)
                    if f["hashed"] % 67108864 == 0 and not (syncing and syncing.is_alive()):
                        # writeback while ranges still land, off their path and the
                        # hash's: `finish`'s fsync then finds little left (3 s a GiB here)
                        syncing = threading.Thread(target=os.fdatasync, args=(f["fd"],), daemon=True)
                        syncing.start()
                moved = True
            if f["hashed"] >= size:
                if syncing is not None:
                    syncing.join()  # its fd is closed next
                if f["fd"] is not None:
                    os.close(f["fd"])
                sys.stdout.write("%d %s\n" % (i, f["sha"].hexdigest()))
                sys.stdout.flush()
                pending.remove(i)
        if pending and not moved:
            ready = select.select([0], [], [], 0.05)[0]
            if ready and not os.read(0, 65536):
                sys.exit(0)  # the client went away: nobody to tell
elif mode == "put":
    part, off = P(sys.argv[2]), int(sys.argv[3])
    data = sys.stdin.buffer.read()
    fd = opened(part)
    sys.stdout.write("%d %d\n" % (off, write_range(fd, part, off, data)))
elif mode == "finish":
    part, final, force = P(sys.argv[2]), P(sys.argv[3]), sys.argv[4] == "1"
    for h in sys.stdin.buffer.read().split():  # a folder's files: their records go
        try:
            os.unlink(side(P(h)))
        except OSError:
            pass
    if os.path.isfile(part) and not os.path.islink(part):
        fd = os.open(part, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    try:
        os.unlink(side(part))
    except FileNotFoundError:
        pass
    if os.path.lexists(final) and not force:
        sys.stderr.write("%s already exists on the pod\n" % os.fsdecode(final))
        sys.exit(6)
    if force and os.path.isdir(final) and not os.path.islink(final) and os.path.isdir(part):
        aside = final + b".old-%d" % os.getpid()
        os.rename(final, aside)
        os.rename(part, final)
        import shutil
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(part, final)
    d = os.open(os.path.dirname(final) or b".", os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    sys.stdout.write("done\n")
elif mode == "kind":
    for h in sys.argv[2:]:
        p = P(h)
        sys.stdout.write("dir\n" if os.path.isdir(p) else "file\n" if os.path.lexists(p) else "none\n")
elif mode == "drop":
    for h in sys.stdin.buffer.read().split():
        p = P(h)
        for q in (p, side(p)):
            try:
                os.unlink(q)
            except OSError:
                pass
"""


def pod_command(mode: str, *args: str | int) -> str:
    """`python3 -c _POD_SCRIPT MODE ARGS...` (paths pass through `hexpath`)."""
    words = " ".join(shlex.quote(str(a)) for a in args)
    return (f"command -v python3 >/dev/null 2>&1 || {{ echo 'no python3 on the pod' >&2; exit 127; }}; "
            f"exec python3 -c {shlex.quote(_POD_SCRIPT)} {mode} {words}")


def hexpath(path: str) -> str:
    """A pod path as the script takes it (hex of its bytes; `~/` expands there)."""
    return os.fsencode(path).hex()


def with_lines(command: str, lines: Sequence[str]) -> str:
    """`command` reading `lines` on stdin from a heredoc: many paths in short lines
    (a terminal takes at most 4095 characters a line, a command line has a limit too)."""
    end = f"GPUCTL_LINES_{os.urandom(6).hex()}"
    return f"{command} <<'{end}'\n" + "".join(f"{line}\n" for line in lines) + end


def parse_started(stdout: str, count: int) -> list[dict[int, int]]:
    """`start`'s answer: per job, the ranges the pod kept {offset: crc}; ValueError
    without its closing word (cut short)."""
    lines = stdout.strip().splitlines()
    if not lines or lines[-1].strip() != "started":
        raise ValueError("the pod did not open the upload's .part files")
    kept: list[dict[int, int]] = [{} for _ in range(count)]
    for line in lines[:-1]:
        i, off, crc = (int(x) for x in line.split())
        kept[i][off] = crc
    return kept


@dataclass
class SendJob:
    """One file to send: `local_path` (`size` bytes) into the pod's `part` (a path as
    the pod names it), in ranges of `chunk` bytes; `kept` are ranges the pod already
    holds (`start`'s answer)."""

    local_path: Path
    part: str
    size: int
    chunk: int
    kept: dict[int, int] = field(default_factory=dict)
    pod_sha256: str | None = None
    """The pod's SHA-256 of the whole `.part`, when the sender got it on the way (a
    file streamed whole through the OpenSSH client); else the caller asks the pod."""

    def missing(self) -> list[tuple[int, int]]:
        return [(off, min(self.chunk, self.size - off)) for off in range(0, self.size, self.chunk)
                if off not in self.kept]


@dataclass
class _Sent:
    job_index: int
    offset: int
    length: int
    crc: int
    acked: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _Progress:
    def __init__(self, jobs: Sequence[SendJob], progress: SendProgress | None):
        self.done = [sum(min(j.chunk, j.size - off) for off in j.kept) for j in jobs]
        self.jobs = jobs
        self.progress = progress

    def add(self, i: int, n: int) -> None:
        self.done[i] += n
        if self.progress is not None:
            self.progress(i, self.done[i], self.jobs[i].size)

    def start(self) -> None:
        if self.progress is not None:
            for i, job in enumerate(self.jobs):
                self.progress(i, self.done[i], job.size)


def _read_range(fd: int, off: int, n: int) -> tuple[list[bytes], int]:
    """The bytes of a local range of an open file, in `_READ` pieces, and their CRC-32
    (a PTY shell's `put` takes a range whole)."""
    pieces, crc, end = [], 0, off + n
    while off < end:
        block = os.pread(fd, min(_READ, end - off), off)
        if not block:
            raise TransferFailed("local", "a local file got shorter while it was uploaded")
        crc = zlib.crc32(block, crc)
        pieces.append(block)
        off += len(block)
    return pieces, crc


def _range_crc(path: Path, off: int, n: int) -> int:
    """The CRC-32 of a local range, read a MiB at a time and let go: checking what the
    pod answered for a whole streamed file must not hold the file in memory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        crc, end = 0, off + n
        while off < end:
            block = os.pread(fd, min(_READ, end - off), off)
            if not block:
                raise TransferFailed("local", "a local file got shorter while it was uploaded")
            crc = zlib.crc32(block, crc)
            off += len(block)
        return crc
    finally:
        os.close(fd)


_Process = asyncssh.SSHClientProcess | MuxProcess
"""A channel running the pod's writer: asyncssh's, or a session of the OpenSSH master."""


class ParallelSender:
    """Sends ranges over exec channels of one connection (see the module docstring).

    On a near link (round trip under `backends.transfer.NEAR_RTT_S`) with an OpenSSH
    client at hand, a big file goes through that client instead (`_openssh`): the
    pod's sshd takes 32 KiB packets from a client, and asyncssh spends ~3x the CPU of
    OpenSSH's C client per packet, which is what caps the speed when latency does not.
    """

    kind = "parallel"

    def __init__(self, conn: asyncssh.SSHClientConnection, channels: int = MAX_CHANNELS, *,
                 ssh_argv: Sequence[str] | None = None):
        from backends.transfer import openssh_argv

        self.conn = conn
        self.channels = channels
        self.ssh_argv = openssh_argv(ssh_argv)

    @staticmethod
    def chunk_for(size: int) -> int:
        return chunk_for(size)

    async def send_all(self, jobs: Sequence[SendJob], progress: SendProgress | None = None) -> int:
        """Send every job's missing ranges; bytes sent. Raises `TransferFailed`."""
        meter = _Progress(jobs, progress)
        meter.start()
        sent = 0
        big_file = any(j.size >= transfer.STREAM_MIN_SIZE and j.missing() for j in jobs)
        much = sum(n for job in jobs for _, n in job.missing()) >= parallel_transfer.MUX_MIN_BYTES
        if self.ssh_argv is not None and (big_file or much):
            rtt = await parallel_transfer.round_trip(self.conn)
            if rtt is not None and rtt < transfer.NEAR_RTT_S:
                for i, job in enumerate(jobs):
                    if job.size >= transfer.STREAM_MIN_SIZE and job.missing():
                        sent += await self._openssh(i, job, meter)
            elif much:
                try:
                    async with OpensshMux(self.ssh_argv, transfer._OPENSSH_OPTIONS) as mux:
                        self.kind = parallel_transfer.PARALLEL_SSH
                        return sent + await self._parallel(jobs, meter, mux)
                except MuxUnavailable:
                    pass  # no OpenSSH master (a key only asyncssh can use...): asyncssh's channels
        return sent + await self._parallel(jobs, meter)

    async def _openssh(self, index: int, job: SendJob, meter: _Progress) -> int:
        """The file from its first missing range to its end through the OpenSSH client
        (its stdin the local file itself), the pod answering each range's CRC-32;
        ranges that arrive damaged (or not at all) stay missing for the channels."""
        from backends import child_procs
        from backends.transfer import _OPENSSH_OPTIONS

        assert self.ssh_argv is not None
        start = job.missing()[0][0]
        argv = self.ssh_argv
        command = [*argv[:-1], *_OPENSSH_OPTIONS, argv[-1],
                   pod_command("stream", hexpath(job.part), start, job.size, job.chunk)]
        fd = os.open(job.local_path, os.O_RDONLY)
        answered: dict[int, int] = {}
        local: dict[int, asyncio.Future] = {}  # this side's CRC of each answered range, read meanwhile
        digest = None
        try:
            os.lseek(fd, start, os.SEEK_SET)
            async with child_procs.tied(*command, stdin=fd, stdout=asyncio.subprocess.PIPE,
                                        stderr=asyncio.subprocess.DEVNULL) as proc:
                assert proc.stdout is not None
                async for line in proc.stdout:
                    words = line.split()
                    if len(words) == 2 and words[0] == b"sha256":
                        digest = words[1].decode()
                        continue
                    try:
                        off, crc = (int(x) for x in words)
                    except ValueError:
                        continue
                    answered[off] = crc
                    local[off] = asyncio.ensure_future(asyncio.to_thread(
                        _range_crc, job.local_path, off, min(job.chunk, job.size - off)))
                    if off not in job.kept:
                        meter.add(index, min(job.chunk, job.size - off))
                await proc.wait()
        except OSError:
            return 0  # no ssh to run after all: the channels carry it
        finally:
            os.close(fd)
        sent = 0
        for off, crc in answered.items():
            n = min(job.chunk, job.size - off)
            here = await local[off]
            if here == crc:
                if off not in job.kept:
                    sent += n
                job.kept[off] = crc
            elif off in job.kept:
                del job.kept[off]
                meter.add(index, -n)
            else:
                meter.add(index, -n)
        if digest is not None and proc.returncode == 0 and not job.missing():
            job.pod_sha256 = digest
        return sent

    async def _parallel(self, jobs: Sequence[SendJob], meter: _Progress, mux: OpensshMux | None = None) -> int:
        queue = collections.deque((i, off, n) for i, job in enumerate(jobs) for off, n in job.missing())
        if not queue:
            return 0
        fds = [os.open(job.local_path, os.O_RDONLY) for job in jobs]
        sent = [0]
        follower = await self._follow(jobs)
        try:
            count = max(1, min(self.channels, len(queue)))
            opened: list[_Process | BaseException] = await asyncio.gather(
                *(self._open(mux) for _ in range(count)), return_exceptions=True)
            procs: list[_Process] = opened_or_raise(opened)
            try:
                await run_until_first_failure([self._worker(p, jobs, fds, queue, meter, sent) for p in procs])
            finally:
                for p in procs:
                    p.close()
            if follower is not None:
                await self._followed(*follower)
        finally:
            for fd in fds:
                os.close(fd)
            if follower is not None:
                follower[0].close()
        return sent[0]

    async def _follow(self, jobs: Sequence[SendJob]) -> tuple[asyncssh.SSHClientProcess, list[SendJob]] | None:
        """The pod's `follow`: each `.part` hashed as its landed prefix grows, beside the
        channels, so the SHA-256 is there when the last range lands instead of a pass
        over the whole upload afterwards. None when it cannot start: the caller then
        asks the pod to hash once all landed, as before."""
        want = [j for j in jobs if j.pod_sha256 is None]
        if not want:
            return None
        try:
            proc = await self.conn.create_process(command_bytes(pod_command("follow")), encoding=None)
            proc.stdin.write("".join(f"{hexpath(j.part)} {j.size} {j.chunk}\n" for j in want).encode() + b"go\n")
        except (asyncssh.Error, OSError):
            return None
        return proc, want

    @staticmethod
    async def _followed(proc: asyncssh.SSHClientProcess, jobs: Sequence[SendJob]) -> None:
        """Take the follower's digests (`INDEX HEX` lines, INDEX into the jobs it was
        given) as `pod_sha256`, waiting at most what hashing the rest would take; what
        it does not say stays None. A digest taken on the way is checked by the caller,
        which hashes afresh before it calls a mismatch (a range sent again after the
        follower read it, damaged the first time, reads as one)."""
        async def read() -> None:
            while any(j.pod_sha256 is None for j in jobs):
                line = await proc.stdout.readline()
                if not line:
                    return
                i, digest = line.split()
                jobs[int(i)].pod_sha256 = digest.decode()

        left = sum(j.size for j in jobs if j.pod_sha256 is None)
        try:
            await asyncio.wait_for(read(), 30 + left / _FOLLOW_RATE)
        except (asyncio.TimeoutError, asyncssh.Error, OSError, ValueError, IndexError):
            return

    async def _open(self, mux: OpensshMux | None) -> _Process:
        """A channel running the pod's `serve`: a session of the OpenSSH master when
        there is one (`backends.openssh_mux`, a third of the CPU per GiB), else one of
        asyncssh's."""
        try:
            if mux is not None:
                return await mux.open(pod_command("serve"))
            return await self.conn.create_process(command_bytes(pod_command("serve")), encoding=None,
                                                  max_pktsize=PACKET)
        except (asyncssh.Error, OSError) as exc:
            raise _lost("the upload", exc) from exc

    async def _worker(self, proc: _Process, jobs: Sequence[SendJob], fds: list[int],
                      queue: collections.deque[tuple[int, int, int]], meter: _Progress, sent: list[int]) -> None:
        asked: collections.deque[_Sent] = collections.deque()  # in order, until counted here
        unanswered: collections.deque[_Sent] = collections.deque()  # in order, until the pod answers

        async def acks() -> None:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    return
                off, crc = (int(x) for x in line.split())
                rec = unanswered.popleft()
                if rec.offset != off:
                    raise TransferFailed("remote", "the pod answered out of order")
                rec.acked.set_result(crc)

        reader = asyncio.ensure_future(acks())
        try:
            retries = 0
            while queue or asked:
                while queue and len(asked) < DEPTH:
                    i, off, n = queue.popleft()
                    rec = _Sent(i, off, n, 0)
                    asked.append(rec)
                    unanswered.append(rec)
                    proc.stdin.write(f"{off} {n} {hexpath(jobs[i].part)}\n".encode())
                    at, end = off, off + n
                    while at < end:  # a MiB read, CRC'd and sent at a time, not a whole range held
                        block = await asyncio.to_thread(os.pread, fds[i], min(_READ, end - at), at)
                        if not block:
                            raise TransferFailed("local", "a local file got shorter while it was uploaded")
                        rec.crc = zlib.crc32(block, rec.crc)
                        proc.stdin.write(block)
                        at += len(block)
                        await proc.stdin.drain()
                rec = asked[0]
                await asyncio.wait((rec.acked, reader), return_when=asyncio.FIRST_COMPLETED)
                if not rec.acked.done():
                    if reader.done() and reader.exception() is not None:
                        raise reader.exception()  # type: ignore[misc]
                    raise await self._why(proc, jobs[rec.job_index])
                asked.popleft()
                if rec.acked.result() != rec.crc:  # damaged on the way or on the pod's disk: again
                    retries += 1
                    if retries > 3:
                        raise TransferFailed("remote", f"{jobs[rec.job_index].part}: a range kept arriving damaged")
                    queue.appendleft((rec.job_index, rec.offset, rec.length))
                    continue
                meter.add(rec.job_index, rec.length)
                sent[0] += rec.length
            proc.stdin.write_eof()
        except (asyncssh.Error, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                raise TransferFailed("local", f"cannot read a local file: {exc.strerror or exc}") from exc
            # The channel closed under a write: the pod's words (no python3...) or a drop.
            raise await self._why(proc, jobs[asked[0].job_index if asked else 0]) from exc
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    @staticmethod
    async def _why(proc: _Process, job: SendJob) -> TransferFailed:
        try:
            await asyncio.wait_for(proc.wait_closed(), 5)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pass
        status = proc.exit_status
        err = b""
        try:
            err = await asyncio.wait_for(proc.stderr.read(), 1) or b""
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pass
        words = err.decode(errors="replace").strip().splitlines() if isinstance(err, bytes) else []
        if status is None:
            return TransferFailed("lost", f"connection lost while uploading {job.local_path}")
        why = words[-1] if words else f"exit status {status}"
        return TransferFailed("remote", f"cannot write {job.part} on the pod: {why}")


class PtySender:
    """Sends ranges one at a time through a PTY shell (see the module docstring)."""

    kind = "pty"

    def __init__(self, shell: _Runs):
        self.shell = shell

    @staticmethod
    def chunk_for(size: int) -> int:
        return PTY_CHUNK

    async def send_all(self, jobs: Sequence[SendJob], progress: SendProgress | None = None) -> int:
        meter = _Progress(jobs, progress)
        meter.start()
        sent = 0
        for i, job in enumerate(jobs):
            fd = os.open(job.local_path, os.O_RDONLY)
            try:
                for off, n in job.missing():
                    pieces, crc = _read_range(fd, off, n)
                    for _ in range(3):
                        answer = await self._put(job, off, b"".join(pieces))
                        if answer == crc:
                            break
                    else:
                        raise TransferFailed("remote", f"{job.part}: a range kept arriving damaged")
                    meter.add(i, n)
                    sent += n
            finally:
                os.close(fd)
        return sent

    async def _put(self, job: SendJob, off: int, data: bytes) -> int:
        encoded = base64.b64encode(data).decode("ascii")
        body = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
        end = f"GPUCTL_UP_{os.urandom(6).hex()}"
        command = f"base64 -d <<'{end}' | {{ {pod_command('put', hexpath(job.part), off)}; }}\n{body}\n{end}"
        try:
            result = await self.shell.run(command, timeout=120)
        except SshFailure as exc:
            kind = "remote" if exc.kind == FailureKind.COMMAND else "lost"
            raise TransferFailed(kind, f"uploading {job.local_path}: {exc.message}") from None
        if not result.ok:
            raise TransferFailed("remote", f"cannot write {job.part} on the pod: {pod_words(result)}")
        try:
            _, crc = result.stdout.strip().splitlines()[-1].split()
            return int(crc)
        except (ValueError, IndexError):
            raise TransferFailed("remote", f"the pod did not confirm a range of {job.part}") from None


async def run_pod(transport: _Runs, mode: str, *args: str | int, stdin_lines: Sequence[str] = (),
                  timeout: float = 120.0) -> str:
    """Run one mode of the pod script through any transport (`stdin_lines` fed from a
    heredoc); its stdout, or `TransferFailed("remote")` with the pod's words."""
    command = with_lines(pod_command(mode, *args), stdin_lines)  # stdin always ends (no lines: at once)
    try:
        result = await transport.run(command, timeout=timeout)
    except SshFailure as exc:
        raise TransferFailed("lost" if exc.kind != FailureKind.COMMAND else "remote", exc.message) from None
    if not result.ok:
        raise TransferFailed("remote", pod_words(result))
    return result.stdout


def pod_words(result: _Result) -> str:
    """The pod's last words about a failed command: stderr's last line (stdout's
    through a PTY shell, where the two are one stream), or the exit status."""
    lines = [x for x in (result.stderr or result.stdout).strip().splitlines() if x.strip()]
    return lines[-1] if lines else f"exit status {result.exit_status}"
