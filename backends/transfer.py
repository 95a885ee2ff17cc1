"""Move files from a pod to this machine over SSH: resumable, written in order,
hashed as they land, flushed to disk while they arrive.

A whole checkpoint goes through `Fetcher.fetch_all`: on a far link (round trip over
`NEAR_RTT_S`), or when no file is big, as parallel byte ranges over channels of the
one connection (`backends.parallel_transfer`, resumable per range); on a near link a
big file goes through the OpenSSH client below, which needs half the CPU per GiB. The
sequential methods here remain for that, for a pod without python3, and behind a
shell-only proxy (`PtyFetcher`, one shell: one file after another, in order).

Three sequential ways to move a file's bytes, measured by `bench/download.py` (1 GiB, loopback,
2 cores, AES-GCM negotiated):

* **ssh**: the OpenSSH client (`ssh`, with the very options `SshTarget.ssh_argv` gives
  attach: same host, user, keys, known_hosts, host-key policy) runs `cat FILE`, its
  stdout the `.part` file itself. No byte passes through Python; gpuctl watches the
  file grow. Why a second connection: asyncssh spends ~50 us of Python per 32 KiB SSH
  packet (its input buffer is re-sliced per packet): ~1.6 s of client CPU per GiB
  received, before writing anything, where OpenSSH's C client needs ~0.9 with the
  writes (the kernel's TCP and page-cache work included). With both hashes on top,
  that is the difference between below scp's speed and above it. When `ssh` fails on its own (exit 255: no usable key in BatchMode, a
  dropped link) the rest comes over the next method, from where the file ends.
* **stream**: one asyncssh exec channel running `cat FILE`, whose stdout lands in a
  session object that writes it straight to the `.part` file. No request/response
  framing, no reordering. Its channel gets an 8 MiB receive window (asyncssh's
  default is 2 MiB), so on a 100 ms link up to 8 MiB are in flight instead of 2.
* **sftp**: `SFTPClientFile.read_parallel` with asyncssh's own block size (the server's
  `limits@openssh.com` read length, 255 KiB on OpenSSH) and its own request count, so
  many reads are in flight on a high-latency link. Replies may arrive out of order, so
  blocks wait in a small reorder buffer and are written strictly in order: a `.part`
  file is always a clean prefix of the remote file, which is what makes "resume at the
  `.part` size" correct after a drop (an out-of-order `pwrite` would leave holes).

The ssh and stream methods (and the PTY one) run `stream_command` on the pod:
`sendfile` from the resume offset into a 1 MiB pipe where python3 is there, else
`cat` after a `dd` seek (never `tail -c +N`: 4 KiB writes, twice the CPU per byte).

A pod behind a shell-only proxy (RunPod's) has none of these: `PtyFetcher` streams
each file as base64 through a PTY shell (`backends.transport.pty_shell.PtyShell.stream`) into
the same writer, with the same contract.

`choose_method` picks ssh (else stream) for large single files (less client CPU per
GiB, which is the limit on a fast link) and SFTP for small files, where one subsystem
channel serves many files without a new exec (and its shell start-up) each.

Local side, per file: `PartWriter` appends in order (one `os.write` per SSH packet,
see its docstring for why not batched, or the `ssh` child writes), feeds a
`LocalHasher` thread that SHA-256es the file from disk up to what has landed (so a
resumed `.part`'s old prefix is hashed the same way as new data, and the event loop
never copies data for the hash), and starts background `fdatasync`s so the final
fsync before the rename has little left.

Nothing here knows about checkpoints: `sessions.checkpoints.download` decides what to fetch and
where, and checks the result. The pod-side hash command is built here too, next to
its parser (one place to audit the quoting). The module runs past 400 lines because
the transfer paths, the writer and the hasher share one contract (in order,
resumable, hashed) that is easier to check in one place than across four files.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import mmap
import os
import re
import shlex
import shutil
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import asyncssh

from backends import child_procs, range_state
from backends.remote_path import quote_path
from backends.ssh import REMOTE_ENCODING, REMOTE_ERRORS, FailureKind, SshFailure, command_bytes

if TYPE_CHECKING:
    from backends.transport.pty_shell import PtyShell

ProgressFn = Callable[[int, int], None]
"""`progress(done_bytes, total_bytes)` for one file; `done` counts a resumed prefix."""

SSH, STREAM, SFTP, PTY, PARALLEL = "ssh", "stream", "sftp", "pty", "parallel"
METHODS = (PARALLEL, SSH, STREAM, SFTP)
"""The methods over an exec-capable connection; PTY is the only one through a shell.
PARALLEL (`backends.parallel_transfer`) moves whole checkpoints (`fetch_all`); a single
`fetch` takes the best sequential method for it."""

STREAM_MIN_SIZE = 32 * 1024 * 1024
"""Files at least this big go over an exec stream; smaller ones over SFTP."""

NEAR_RTT_S = 0.005
"""Below this round trip "auto" streams a big file through the OpenSSH client; above
it, parallel ranges (one channel's 2 MiB window over 5 ms is still ~400 MB/s)."""

STREAM_WINDOW = 8 * 1024 * 1024
"""Receive window of a stream channel (bytes the pod may send before we acknowledge)."""

_MARK_BYTES = 1024 * 1024
"""The hasher and the progress callback are told about new data every this many bytes."""

_SYNC_EVERY = 64 * 1024 * 1024
"""Start a background `fdatasync` after this many new bytes."""

_HASH_BLOCK = 4 * 1024 * 1024

_MAP_WINDOW = 64 * 1024 * 1024
"""The local hasher maps at most this much of the file at a time."""


class TransferFailed(Exception):
    """A file could not be fetched; `str()` says which and why.

    Attributes:
        kind: "lost" (connection dropped), "remote" (the pod refused: missing file,
            permission), or "local" (disk full, permission here).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class FetchStats:
    """What one `Fetcher.fetch` did.

    Attributes:
        remote_path: the pod file.
        part_path: the local file written (still `.part`: renaming is the caller's).
        size: bytes in the local file now.
        resumed_from: bytes that were already there (the `.part` size at start).
        transferred: bytes moved over the link by this call.
        method: "ssh", "stream", "sftp", "ssh+stream" (ssh failed part way) or "pty"
            ("" when nothing had to move).
        seconds: wall time of the transfer.
        sha256: the local file's digest, where the fetcher hashed it (`fetch_all`).
        refetched: ranges kept from an earlier run that failed their check and were
            fetched again (`backends.parallel_transfer`).
    """

    remote_path: str
    part_path: Path
    size: int
    resumed_from: int
    transferred: int
    method: str
    seconds: float
    sha256: str | None = None
    refetched: int = 0


@dataclass(frozen=True)
class FetchJob:
    """One file for `fetch_all`: the pod's `remote_path` (`size` bytes) into `part_path`."""

    remote_path: str
    part_path: Path
    size: int


FileProgress = Callable[[int, int, int], None]
"""`progress(job_index, done_bytes, size)` for `fetch_all`."""


async def fetch_each(fetcher: "Fetcher | PtyFetcher", jobs: Sequence[FetchJob],
                     progress: FileProgress | None = None) -> list[FetchStats]:
    """`fetch_all` one file after another through `fetcher.fetch`, each hashed as it
    lands (the sequential methods, and the PTY path, which has one shell)."""
    out = []
    for i, job in enumerate(jobs):
        hasher = LocalHasher(job.part_path).start()
        tell = None if progress is None else (lambda done, size, i=i: progress(i, done, size))
        try:
            stats = await fetcher.fetch(job.remote_path, job.part_path, job.size, hasher=hasher, progress=tell)
            digest = await hasher.result(job.size)
        finally:
            hasher.close()
        out.append(replace(stats, sha256=digest))
    return out


def choose_method(size: int, method: str = "auto", *, openssh: bool = False) -> str:
    """The transfer method for a file of `size` bytes (`method` "auto", or forced);
    `openssh`: an OpenSSH client is there to run (see `openssh_argv`)."""
    if method in METHODS and method != PARALLEL:
        return method
    if method not in ("auto", PARALLEL):
        raise ValueError(f"unknown transfer method {method!r}; use auto, {', '.join(METHODS)}")
    if size < STREAM_MIN_SIZE:
        return SFTP
    return SSH if openssh else STREAM


# Options for the OpenSSH client on top of `SshTarget.ssh_argv` (same host, port, user,
# keys, known_hosts and host-key policy as gpuctl's own connection). BatchMode: never
# prompt (a key only asyncssh can use makes ssh fail, and asyncssh carries on). The
# ciphers are OpenSSH's default set (each known since 6.5), AES-GCM first as
# `backends.ssh` offers it; a `^` prefix would say the same only to newer clients.
# The key exchange is left to OpenSSH: 9.x puts post-quantum sntrup761x25519 first,
# ~80 ms of a ~220 ms connect here over curve25519, a price kept rather than
# weakening the key that protects the checkpoint.
_OPENSSH_OPTIONS = (
    "-T", "-x", "-a",
    "-o", "BatchMode=yes",
    "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
          "aes128-ctr,aes192-ctr,aes256-ctr",
    "-o", "Compression=no",
    "-o", "ServerAliveInterval=15",  # a link that dies silently fails in ~45 s, as
    "-o", "ServerAliveCountMax=3",   # backends.ssh's keepalive does for asyncssh
    "-o", "ControlMaster=no",
    "-o", "ControlPath=none",
    "-o", "ClearAllForwardings=yes",
    "-o", "PermitLocalCommand=no",
    "-o", "LogLevel=ERROR",
)

_WATCH_S = 0.02
"""How often the file an OpenSSH client writes is checked for new bytes."""


def openssh_argv(argv: Sequence[str] | None) -> list[str] | None:
    """`argv` (`SshTarget.ssh_argv(tty=False)`: options, then the host) with its
    program resolved on PATH, or None when there is none or no OpenSSH client."""
    if not argv:
        return None
    program = shutil.which(argv[0])
    return [program, *argv[1:]] if program else None


# --------------------------------------------------------------- local hashing


class LocalHasher:
    """SHA-256 of a local file, computed in a thread while the file is being written.

    The writer calls `advance(n)` once the first `n` bytes are on disk; the thread hashes
    up to there through a read-only mapping of the file (the page cache: the data was
    just written). hashlib releases the GIL on large buffers, so this runs beside the
    event loop on another core. Use `start()`, then `advance`, then `await result(size)`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._landed = 0
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._digest = hashlib.sha256()
        self._hashed = 0
        self._thread = threading.Thread(target=self._run, name=f"sha256:{self.path.name}", daemon=True)

    def start(self) -> "LocalHasher":
        self._thread.start()
        return self

    def advance(self, landed: int) -> None:
        """The first `landed` bytes of the file are written."""
        with self._cond:
            if landed > self._landed:
                self._landed = landed
                self._cond.notify()

    def close(self) -> None:
        """Stop the thread (the digest is then incomplete); safe to call twice."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    async def result(self, size: int) -> str:
        """The hex digest of the file's first `size` bytes, once they are hashed."""
        self.advance(size)
        self.close()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        if self._error is not None:
            raise TransferFailed("local", f"cannot read {self.path} back to hash it: {self._error}")
        if self._hashed != size:
            raise TransferFailed("local", f"{self.path} has {self._hashed} bytes, expected {size}")
        return self._digest.hexdigest()

    def _run(self) -> None:
        with self._cond:  # the writer creates the file: open it once something landed
            while not self._landed and not self._closed:
                self._cond.wait()
            if not self._landed:
                return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)  # the file the writer opened, not a link
        except OSError as exc:
            self._error = exc
            return
        try:
            while True:
                with self._cond:
                    while self._hashed >= self._landed and not self._closed:
                        self._cond.wait()
                    target = self._landed
                    if self._hashed >= target and self._closed:
                        return
                while self._hashed < target:
                    if not self._hash_mapped(fd, target):
                        return  # the file is shorter than announced: result() says so
        except OSError as exc:
            self._error = exc
        finally:
            os.close(fd)


    def _hash_mapped(self, fd: int, target: int) -> bool:
        """Hash from `_hashed` towards `target` through a read-only mapping of the file:
        the page cache itself, no copy (0.13 s of CPU per GiB less than `preadv` into
        a buffer). False when the file is shorter than `target`.

        Mapped pages past the end of a file fault (SIGBUS), so the size is checked
        first; only this download writes the `.part` (`PartWriter` holds a lock), and
        it only appends.
        """
        base = self._hashed - self._hashed % mmap.ALLOCATIONGRANULARITY
        end = min(target, base + _MAP_WINDOW)
        if os.fstat(fd).st_size < end:
            return False
        with mmap.mmap(fd, end - base, prot=mmap.PROT_READ, offset=base) as mapped:
            with memoryview(mapped) as view:
                while self._hashed < end:
                    upto = min(end, self._hashed + _HASH_BLOCK)
                    self._digest.update(view[self._hashed - base:upto - base])
                    self._hashed = upto
        return True


def sha256_file(path: Path) -> str:
    """SHA-256 of a whole local file (for checks outside a transfer)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------- local file


class PartWriter:
    """Appends received data to a `.part` file, strictly in order.

    Opening keeps the bytes already there (a resume) unless there are more than the
    remote file has, which can only be stale data: then it starts over.

    Each piece is written as it arrives, one `os.write` per SSH packet. Batching into
    1 MiB `writev`s was measured 3-8x *slower* per GiB on this kind of VM (the data
    has left the CPU cache by the time a big batch is written); per-packet writes cost
    0.37 s of CPU per GiB. The hasher and the progress callback hear about it every
    `_MARK_BYTES`, which keeps their cost per GiB small.
    """

    def __init__(self, path: Path, size: int, *, hasher: LocalHasher | None = None,
                 progress: ProgressFn | None = None, sync: bool = True):
        self.path = Path(path)
        self.size = size
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _open_part(self.path)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._fd)
                raise TransferFailed("local", f"{self.path} is being written by another download "
                                              "(another gpuctl?); let it finish or stop it") from None
            have = os.fstat(self._fd).st_size
            if have > size:
                os.ftruncate(self._fd, 0)
                have = 0
            os.lseek(self._fd, have, os.SEEK_SET)
        except OSError as exc:
            raise TransferFailed("local", f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.start = self.pos = have
        self._hasher = hasher
        self._progress = progress
        self._sync = sync
        self._next_mark = have + _MARK_BYTES
        self._synced_at = have
        self._syncing: asyncio.Future | None = None
        if hasher is not None:
            hasher.advance(have)

    @property
    def end(self) -> int:
        """Where the next byte given to `add` goes."""
        return self.pos

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def add(self, data: bytes) -> None:
        """Write `data`, the next bytes of the file.

        Raises:
            TransferFailed: the local write failed (disk full, permission).
        """
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.pos += written
        except OSError as exc:
            raise _write_failed(self.path, self.remaining, exc) from exc
        if self.pos >= self._next_mark:
            self.mark()

    @property
    def fd(self) -> int:
        """The open `.part` file, positioned at `end` (a child process may write to it)."""
        return self._fd

    def landed(self, pos: int) -> None:
        """Someone else (the OpenSSH client writing to `fd`) has written up to `pos`."""
        if pos > self.pos:
            self.pos = pos
            if self.pos >= self._next_mark:
                self.mark()

    def mark(self) -> None:
        """Tell the hasher and the progress callback how far the file is written."""
        self._next_mark = self.pos + _MARK_BYTES
        if self._hasher is not None:
            self._hasher.advance(self.pos)
        if self._progress is not None:
            self._progress(self.pos, self.size)
        if self._sync and self.pos - self._synced_at >= _SYNC_EVERY and (
                self._syncing is None or self._syncing.done()):
            # Writeback while data still arrives: the fsync before the rename then
            # finds little left to flush (0.45 s per GiB on this disk otherwise).
            self._synced_at = self.pos
            self._syncing = asyncio.get_running_loop().run_in_executor(None, os.fdatasync, self._fd)

    async def finish(self) -> None:
        """Make the file durable (fsync) before anyone renames it."""
        self.mark()
        if self._syncing is not None:
            await asyncio.gather(self._syncing, return_exceptions=True)
        if not self._sync:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, self._fd)
        except OSError as exc:
            if exc.errno in _NO_SPACE:  # delayed allocation: the disk filled up at the flush
                raise _write_failed(self.path, 0, exc) from exc
            raise TransferFailed("local", f"cannot flush {self.path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        """Close the file. What arrived is a valid prefix: a rerun resumes after it."""
        try:
            if self._hasher is not None:
                self._hasher.advance(self.pos)
            if self._syncing is not None:
                await asyncio.gather(self._syncing, return_exceptions=True)
        finally:
            os.close(self._fd)


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""Write errors that mean "the local disk (or this user's share of it) is full"."""


def _open_part(path: Path, *, read: bool = False) -> int:
    """Open (or create) a `.part` file for appending, never through a symlink.

    O_NOFOLLOW: a link planted at `DEST/x.part` would otherwise have its target (any
    file this user may write) truncated and overwritten, and then renamed into place
    as a "verified" copy. O_NONBLOCK for the open only: a FIFO there must not hang
    the download. The mode is 0o666 as for any new file: the user's umask decides,
    never the pod's mode. `read`: open for reading too (a parallel resume checks the
    ranges it keeps).

    Raises:
        TransferFailed: a symlink or something other than a regular file is there.
        OSError: any other reason it cannot be opened.
    """
    flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(
        os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise TransferFailed("local", f"refusing to write through the symlink {path}; "
                                          "remove it (its target is left alone)") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise TransferFailed("local", f"refusing to write into {path}: not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TransferFailed("local", f"refusing to write into {path}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def _write_failed(path: Path, needed: int, exc: OSError) -> TransferFailed:
    """What a failed local write says: a full disk (or quota) in words a person can act
    on, with how much is still needed and how much is free; else the OS's reason."""
    if exc.errno not in _NO_SPACE:
        return TransferFailed("local", f"cannot write {path}: {exc.strerror or exc}")
    try:
        fs = os.statvfs(path.parent)
        free = f"{fs.f_bavail * fs.f_frsize:,} bytes"
    except OSError:
        free = "unknown"
    what = {errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}.get(
        exc.errno, "no space left")
    return TransferFailed("local", f"{what} on the local disk at {path.parent} "
                                   f"(needed {needed:,} bytes more, free {free}) writing {path.name}")


# ------------------------------------------------------------- remote commands


# The pod's side of a stream: the file from byte $2 on stdout, which is a pipe into
# sshd (or into `base64`, through a PTY shell). `sendfile` moves page-cache pages into
# the pipe without copying them, and a 1 MiB pipe (F_SETPIPE_SZ, 1031) wakes the
# reader 16x less often than the default 64 KiB: on this kind of VM 1 GiB through a
# pipe costs ~0.4 s of CPU that way against ~1.5 s for `cat FILE | reader`. Without
# python3 (or where sendfile refuses the pair), plain copying does the same.
_SEND_FILE = r"""import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
offset = int(sys.argv[2])
try:
    import fcntl
    fcntl.fcntl(1, 1031, 1048576)
except Exception:
    pass
try:
    while True:
        sent = os.sendfile(1, fd, offset, 16777216)
        if not sent:
            break
        offset += sent
except OSError as exc:
    if offset == int(sys.argv[2]) and exc.errno in (22, 38):
        os.lseek(fd, offset, 0)
        for block in iter(lambda: os.read(fd, 1048576), b""):
            view = memoryview(block)
            while view:
                view = view[os.write(1, view):]
    else:
        raise
"""


def stream_command(remote_path: str, offset: int) -> str:
    """The pod command printing the file from byte `offset` on (`_SEND_FILE`).

    Without python3: `cat FILE`, and to resume `dd ... count=0` seeks the shared stdin
    first (in whole MiB, then in bytes) and `cat` goes on from there. Not `tail -c
    +N`: GNU tail copies in 4 KiB writes, about twice the pod's CPU per byte of
    `cat`; a resumed half took as long as a whole download. `dd`'s chatter goes
    nowhere: through a PTY shell stderr shares the terminal with the data.
    """
    path = quote_path(remote_path)
    if offset <= 0:
        plain = f"cat -- {path}"
    else:
        mib, rest = divmod(int(offset), 1 << 20)
        seeks = ([f"dd bs=1048576 skip={mib} count=0 2>/dev/null"] if mib else []) + (
            [f"dd bs=1 skip={rest} count=0 2>/dev/null"] if rest else [])
        plain = f"{{ {' && '.join(seeks)} && cat; }} < {path}"
    fast = f"exec python3 -c {shlex.quote(_SEND_FILE)} {path} {max(0, int(offset))}"
    return f"if command -v python3 >/dev/null 2>&1; then {fast}; else {plain}; fi"


# The pod's SHA-256, cheapest tool first. Python's hashlib (OpenSSL's SHA-256, SHA-NI
# where the CPU has it) over an mmap of each file: no read copies, no syscalls per
# block, one process for every file of a folder; 0.86 s of CPU per GiB here against
# 0.97 for `openssl dgst` (8 KiB reads, one process per file) and 3.5 for GNU
# coreutils' sha256sum, which Debian and Ubuntu build without SHA-NI. The digest is
# the same SHA-256 whichever runs. Each file's line holds its 64 hex digits and
# nothing else (no tool prints, or escapes, a file name). `cd` makes every file name
# relative to the root. `nice`: the pod is busy training, and its data loaders should
# win over our hash.
_HASH_SCRIPT = r"""
cd -- "$1" || exit 3
shift
n=
if command -v nice >/dev/null 2>&1; then n='nice -n 10'; fi
if command -v python3 >/dev/null 2>&1; then
  exec $n python3 -c 'import hashlib,mmap,os,sys
B = 4194304
for name in sys.argv[1:]:
    d = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY)
    size = os.fstat(fd).st_size
    try:
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
    except (OSError, ValueError):
        m = None
    if m is not None:
        v = memoryview(m)
        for i in range(0, size, B):
            d.update(v[i:i + B])
        v.release()
        m.close()
    else:
        b = os.read(fd, B)
        while b:
            d.update(b)
            b = os.read(fd, B)
    os.close(fd)
    sys.stdout.write(d.hexdigest() + "\n")
' "$@"
fi
if command -v openssl >/dev/null 2>&1 && printf '' | openssl dgst -sha256 -r >/dev/null 2>&1; then
  h() { $n openssl dgst -sha256 -r; }
elif command -v sha256sum >/dev/null 2>&1; then
  h() { $n sha256sum; }
else
  h() { $n shasum -a 256; }
fi
for f do
  h < "$f" || exit 4
done
"""

_HEX64 = re.compile(r"\b([0-9a-f]{64})\b")


def sha256_command(root: str, files: Sequence[str]) -> str:
    """The pod command printing one SHA-256 line per file (paths relative to `root`).

    `root` may start with `~` (expanded by the pod's shell); the files are passed as
    separate quoted arguments, never interpolated into the script.
    """
    if not files:
        raise ValueError("no files to hash")
    args = " ".join(shlex.quote(f if not f.startswith("-") else "./" + f) for f in files)
    return f"sh -c {shlex.quote(_HASH_SCRIPT)} sh {quote_path(root)} {args}"


def parse_sha256(stdout: str, count: int) -> list[str]:
    """The digests printed by `sha256_command`, in file order.

    Raises:
        ValueError: not exactly `count` digests.
    """
    digests = [m.group(1) for line in stdout.splitlines() if (m := _HEX64.search(line.lower()))]
    if len(digests) != count:
        raise ValueError(f"expected {count} SHA-256 digests from the pod, got {len(digests)}")
    return digests


# ------------------------------------------------------------------ transfers


class _StreamSession(asyncssh.SSHClientSession):
    """Receives `cat`'s stdout and hands it to the `PartWriter` as it arrives."""

    def __init__(self, writer: PartWriter):
        self._writer = writer
        self.stderr = b""
        self.error: BaseException | None = None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._chan: asyncssh.SSHClientChannel | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr = (self.stderr + data)[-4096:]
            return
        if self.error is not None:
            return
        try:
            self._writer.add(data)
        except TransferFailed as exc:
            self.error = exc
            if self._chan is not None:
                self._chan.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


class Fetcher:
    """Fetches files from one pod over one open asyncssh connection.

    One SFTP subsystem channel is opened on first need and shared by every small file;
    each large file gets its own exec channel. Use `async with Fetcher(conn) as f`.

    Args:
        conn: an open connection (as `backends.ssh.connect` returns).
        method: "auto" (see `choose_method`), "stream" or "sftp" for every file.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, *, method: str = "auto", sync: bool = True,
                 ssh_argv: Sequence[str] | None = None):
        choose_method(0, method)  # validate early
        self.conn = conn
        self.method = method
        self.sync = sync
        self.ssh_argv = openssh_argv(ssh_argv)
        self._sftp: asyncssh.SFTPClient | None = None

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sftp is not None:
            sftp, self._sftp = self._sftp, None
            sftp.exit()
            try:
                await sftp.wait_closed()
            except (asyncssh.Error, OSError):
                pass  # the connection is gone already: nothing left to close

    async def fetch(self, remote_path: str, part_path: Path, size: int, *,
                    hasher: LocalHasher | None = None, progress: ProgressFn | None = None) -> FetchStats:
        """Bring the pod's `remote_path` (`size` bytes) into `part_path`, resuming.

        Bytes already in `part_path` are kept and the pod is read from that offset; on
        return the file holds `size` bytes, written and fsynced (the size check and the
        hash comparison are the caller's). After a failure the file keeps every byte
        that arrived, in order, so the next call continues there.

        Raises:
            TransferFailed: connection lost, the pod refused, or a local write failed.
        """
        def move(writer: PartWriter) -> tuple[str, Awaitable[str | None]]:
            method = choose_method(size, self.method, openssh=self.ssh_argv is not None)
            if method == SSH:
                if self.ssh_argv is None:
                    raise TransferFailed("local", "no OpenSSH client (ssh) here for the ssh method")
                return method, self._openssh(remote_path, writer, self.ssh_argv)
            if method == STREAM:
                return method, self._stream(remote_path, writer)
            return method, self._sftp_read(remote_path, writer)

        return await _fetch_into(remote_path, part_path, size, move, hasher, progress, self.sync)

    async def fetch_all(self, jobs: Sequence[FetchJob], progress: FileProgress | None = None) -> list[FetchStats]:
        """Bring every job's file into its `.part`, resuming, one after another
        (`fetch`); stats with `sha256` per job. `backends.parallel_transfer.ChannelFetcher`
        (what `SshTransport.fetcher` gives) moves them as parallel ranges instead."""
        return await fetch_each(self, jobs, progress)

    async def _openssh(self, remote_path: str, writer: PartWriter, argv: list[str]) -> str | None:
        """`cat` the file through the OpenSSH client, its stdout the `.part` file itself.

        No byte passes through Python: this process only watches the file grow (for
        the hasher, the progress callback and the background fsyncs). When `ssh`
        fails for any reason the rest comes over asyncssh's exec stream from where
        the file ends (see below). The child never outlives gpuctl
        (`backends.child_procs`): it holds the `.part` and its lock.
        """
        command = [*argv[:-1], *_OPENSSH_OPTIONS, argv[-1], stream_command(remote_path, writer.pos)]
        start = writer.pos
        proc = None
        try:
            async with child_procs.tied(*command, stdin=asyncio.subprocess.DEVNULL, stdout=writer.fd,
                                        stderr=asyncio.subprocess.DEVNULL) as proc:
                # ssh's stderr is not kept: whatever it failed on, the stream below runs
                # into again and reports in its own (and the pod's) words.
                exited = asyncio.ensure_future(proc.wait())
                try:
                    while not exited.done():
                        await asyncio.wait((exited,), timeout=_WATCH_S)
                        writer.landed(os.fstat(writer.fd).st_size)
                except BaseException:
                    exited.cancel()
                    raise
        except OSError:
            if proc is not None:
                raise
            await self._stream(remote_path, writer)  # no ssh to start after all
            return STREAM
        writer.landed(os.fstat(writer.fd).st_size)
        if proc.returncode == 0 and writer.remaining <= 0:
            return None
        # ssh failed: its own failure (255: no usable key in BatchMode, a dropped link),
        # the pod's (the file went away), or a local write (a full disk: ssh then drops
        # the rest and may even exit 0, as the pod's side succeeded; it cannot say
        # which). The rest comes over the connection we have, from where the file
        # ends: that either finishes the file or fails with the real reason, a local
        # one included, where ssh's exit status alone read as "cannot read it on the
        # pod" (or a short file as "did the file change?").
        ssh_moved = writer.pos > start
        os.lseek(writer.fd, writer.pos, os.SEEK_SET)
        await self._stream(remote_path, writer)
        return f"{SSH}+{STREAM}" if ssh_moved else STREAM

    async def _stream(self, remote_path: str, writer: PartWriter) -> None:
        command = stream_command(remote_path, writer.pos)
        try:
            chan, session = await self.conn.create_session(
                # Bytes: a pod's file name may hold any byte (surrogateescape'd in the str).
                lambda: _StreamSession(writer), command_bytes(command), encoding=None,  # type: ignore[arg-type]
                window=STREAM_WINDOW)
        except (asyncssh.Error, OSError) as exc:
            raise _lost(remote_path, exc) from exc
        assert isinstance(session, _StreamSession)  # asyncssh types it as the base session
        chan.write_eof()
        try:
            lost = await session.done
        except asyncio.CancelledError:
            chan.close()
            raise
        if session.error is not None:
            raise session.error
        if lost is not None:
            raise _lost(remote_path, lost)
        status = chan.get_exit_status()
        if status is None and chan.get_exit_signal() is None:
            # sshd always reports how an exec ended before closing its channel: no word
            # at all means the connection went away under us.
            raise TransferFailed("lost", f"connection closed while fetching {remote_path}")
        if status != 0:
            detail = session.stderr.decode(errors="replace").strip().splitlines()
            why = detail[-1] if detail else f"exit status {status}"
            raise TransferFailed("remote", f"cannot read {remote_path} on the pod: {why}")

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            self._sftp = await self.conn.start_sftp_client(path_encoding=REMOTE_ENCODING, path_errors=REMOTE_ERRORS)
        return self._sftp

    async def _sftp_read(self, remote_path: str, writer: PartWriter) -> None:
        try:
            sftp = await self._sftp_client()
            # SFTP paths are not shell words: `~/x` is relative to the login directory.
            path = remote_path[2:] if remote_path.startswith("~/") else remote_path
            async with sftp.open(path, "rb") as fh:
                waiting: dict[int, bytes] = {}
                async for offset, data in await fh.read_parallel(writer.remaining, writer.pos):
                    waiting[offset] = data
                    while writer.end in waiting:  # write strictly in order: see module doc
                        writer.add(waiting.pop(writer.end))
        except (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection) as exc:
            raise _lost(remote_path, exc) from exc
        except asyncssh.SFTPError as exc:
            raise TransferFailed("remote", f"cannot read {remote_path} on the pod: {exc.reason}") from exc
        except (asyncssh.Error, OSError) as exc:
            raise _lost(remote_path, exc) from exc


class PtyFetcher:
    """Fetches files through one PTY shell, for pods with no exec channel and no SFTP
    (RunPod's proxied SSH; see `backends.transport.pty_shell`).

    One `cat FILE | base64` (seeking first, to resume) per file, decoded as it
    arrives (`PtyShell.stream`) into the same `PartWriter` the other methods use: in
    order, hashed as it lands, resumable at the `.part` size. Same interface as
    `Fetcher`; the method is "pty".
    """

    def __init__(self, shell: "PtyShell", *, sync: bool = True):
        self.shell = shell
        self.sync = sync

    async def __aenter__(self) -> "PtyFetcher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def fetch(self, remote_path: str, part_path: Path, size: int, *,
                    hasher: LocalHasher | None = None, progress: ProgressFn | None = None) -> FetchStats:
        """As `Fetcher.fetch`."""
        def move(writer: PartWriter) -> tuple[str, Awaitable[str | None]]:
            return PTY, self._stream(remote_path, writer)

        return await _fetch_into(remote_path, part_path, size, move, hasher, progress, self.sync)

    async def fetch_all(self, jobs: Sequence[FetchJob], progress: FileProgress | None = None) -> list[FetchStats]:
        """As `Fetcher.fetch_all`, one file after another: one shell carries one stream."""
        return await fetch_each(self, jobs, progress)

    async def _stream(self, remote_path: str, writer: PartWriter) -> None:
        try:
            await self.shell.stream(stream_command(remote_path, writer.pos), writer.add)
        except SshFailure as exc:
            if exc.kind == FailureKind.COMMAND:
                raise TransferFailed("remote", f"cannot read {remote_path} on the pod: {exc.message}") from None
            raise TransferFailed("lost", f"connection lost while fetching {remote_path}: {exc.message}") from None


async def _fetch_into(remote_path: str, part_path: Path, size: int,
                      move: Callable[[PartWriter], tuple[str, Awaitable[str | None]]],
                      hasher: LocalHasher | None, progress: ProgressFn | None, sync: bool) -> FetchStats:
    """The contract every method shares: open the `.part` (resuming), `move` the rest
    of the bytes into it, check the size, fsync; the `.part` keeps what arrived."""
    started = time.monotonic()
    range_state.to_prefix(Path(part_path))  # left by a parallel run: keep its landed prefix
    writer = PartWriter(part_path, size, hasher=hasher, progress=progress, sync=sync)
    resumed_from = writer.start
    method = ""
    try:
        if progress is not None:
            progress(writer.pos, size)
        if writer.remaining:
            method, moving = move(writer)
            method = await moving or method
        writer.mark()
        if writer.pos != size:
            raise TransferFailed("remote", f"{remote_path}: the pod sent {writer.pos - resumed_from} bytes, "
                                           f"expected {size - resumed_from} (did the file change?)")
        await writer.finish()
    finally:
        await writer.close()
    return FetchStats(remote_path, Path(part_path), writer.pos, resumed_from,
                      writer.pos - resumed_from, method, time.monotonic() - started)


def _lost(remote_path: str, exc: BaseException) -> TransferFailed:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return TransferFailed("lost", f"connection lost while fetching {remote_path}: {reason}")
