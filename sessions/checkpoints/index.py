"""The local index of verified checkpoint copies, so nothing is fetched twice.

A small JSON file under `sessions.config.paths.data_dir()`. An entry says: this pod file or
folder, at this size and mtime, has a local copy at this path whose SHA-256 matched
the pod's. The key is (host identity, remote path, size, mtime): a checkpoint rewritten
under the same name (`best.pt`) is a new key, so it is fetched again, and a pod renamed
in the config keeps its entries (the host identity is `user@host:port`, not the name).

The key alone proves nothing about content: a pod file rewritten with its size and
mtime kept, or a local copy overwritten with as many other bytes, has the same key.
So each entry also holds a stamp of each side (`pod_stamp`, `local_stamp`: digests of
the stat fields any write changes, ctime and inode included), and
`sessions.checkpoints.verify.confirm` hashes a side again whenever its stamp moved.
That is what the teardown guard and "already downloaded" ask. `lookup` is the cheap
view (listings, the TUI, auto-download's "is there work"): the local copy must still
have its recorded stamp, so a touched copy reads as unverified until it is re-hashed.

One version may have several copies: the download folder's (the one auto-download
and `keep_local` manage) and copies a person asked for with `gpuctl download --dest`
(hard-linked from the verified one). The first copy recorded holds the plain key; a
further copy is an `extra` entry, keyed by its local path too, so neither replaces
the other: `keep_local` pruning the folder's copy leaves the person's copy recorded
(and `entry_for` then answers with it).

Writes are atomic (temp file + `os.replace`) under an advisory lock, so two gpuctl
processes finishing downloads at once do not lose each other's entries.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

from sessions.link import pods
from sessions.checkpoints.listing import Checkpoint
from sessions.config.model import Defaults, PodConfig
from sessions.config.paths import data_dir

INDEX_NAME = "verified-checkpoints.json"
_VERSION = 1


@dataclass(frozen=True)
class IndexEntry:
    """One verified local copy.

    Attributes:
        host: the pod's host identity (`host_identity`).
        remote_path: absolute path on the pod.
        size: bytes (a folder: total of its files), as listed on the pod.
        mtime: the pod's mtime as listed (a folder: its newest entry).
        local_path: absolute local path of the copy.
        sha256: the file's digest; for a folder, the digest of its manifest
            (`<sha256>  <relative path>` lines, sorted by path).
        files: regular files in the copy.
        local_bytes: bytes in the copy when verified (differs from `size` for a folder
            holding symlinks to files: the copy holds their content). -1: as `size`.
        verified_at: local time of verification (seconds since the epoch).
        pod, session: names at the time, for people reading the file.
        pod_stamp: `checkpoint_verify.stamp_command`'s stamp of the pod's checkpoint
            when its hash was last taken ("": unknown, hash again).
        local_stamp: `local_stamp` of the copy when it was last hashed ("": unknown).
        extra: a further copy of a version already recorded elsewhere (an explicit
            `--dest`), keyed by its local path too (see the module docstring).
    """

    host: str
    remote_path: str
    size: int
    mtime: float
    local_path: str
    sha256: str
    files: int = 1
    local_bytes: int = -1
    verified_at: float = 0.0
    pod: str = ""
    session: str = ""
    pod_stamp: str = ""
    local_stamp: str = ""
    extra: bool = False

    @property
    def expected_local_bytes(self) -> int:
        return self.size if self.local_bytes < 0 else self.local_bytes

    @property
    def key(self) -> str:
        return entry_key(self.host, self.remote_path, self.size, self.mtime,
                         self.local_path if self.extra else None)


def index_path() -> Path:
    """Where the index lives."""
    return data_dir() / INDEX_NAME


def entry_key(host: str, remote_path: str, size: int, mtime: float, local_path: str | None = None) -> str:
    """The JSON key of an entry: unambiguous whatever characters the path holds (an
    `extra` copy's also names its local path)."""
    fields: list[object] = [host, remote_path, int(size), float(mtime)]
    return json.dumps(fields if local_path is None else [*fields, local_path])


def host_identity(pod: PodConfig, defaults: Defaults) -> str:
    """`user@host:port` as SSH resolves it (so aliases and defaults agree), or `local`."""
    if pods.is_local(pod):
        return "local"
    return pods.ssh_target(pod, defaults).display


def load(path: Path | None = None) -> dict[str, IndexEntry]:
    """Every entry by key; a missing or unreadable index is empty (never an error:
    the worst outcome is fetching a checkpoint again)."""
    path = path or index_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    entries = {}
    for item in raw.get("entries", []) if isinstance(raw, dict) else []:
        try:
            entry = IndexEntry(**item)
        except TypeError:
            continue
        entries[entry.key] = entry
    return entries


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside `path`, so two gpuctl processes writing the
    same small JSON file do not lose each other's changes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(entries: dict[str, IndexEntry], path: Path) -> None:
    write_json_atomic(path, {"version": _VERSION,
                             "entries": [asdict(e) for e in sorted(entries.values(), key=lambda e: e.key)]})


def write_json_atomic(path: Path, data: object) -> None:
    """Temp file, fsync, `os.replace`: a reader sees the old file or the new one, never
    half of one (also used by `sessions.providers.spend`; call it inside `locked`)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record(entry: IndexEntry, path: Path | None = None) -> IndexEntry:
    """Add (or replace) an entry; entries of older versions of the same remote path
    that pointed at the same local path are dropped (that copy was replaced)."""
    path = path or index_path()
    if not entry.verified_at:
        entry = replace(entry, verified_at=time.time())
    with locked(path):
        entries = {
            k: e for k, e in load(path).items()
            if not (e.host == entry.host and e.remote_path == entry.remote_path and e.local_path == entry.local_path)
        }
        entries[entry.key] = entry
        _write(entries, path)
    return entry


def local_size(path: Path) -> int | None:
    """Bytes in a local file, or in the regular files under a folder; None if absent."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def local_stamp(path: Path) -> str | None:
    """A digest of what any write to a local copy changes (type, size, mtime, ctime,
    inode of the file, or of every entry under the folder, by relative path); None
    when the copy is not there. Symlinks are not followed: a download makes none."""
    def line(p: Path, rel: str) -> str:
        st = p.lstat()
        return f"{stat.S_IFMT(st.st_mode)} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino} {rel!r}"

    try:
        top = path.lstat()
        if stat.S_ISREG(top.st_mode):
            lines = [line(path, "")]
        elif stat.S_ISDIR(top.st_mode):
            # The folder's own times are left out: installing the copy renames it.
            inside = []
            for root, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    full = Path(root, name)
                    inside.append(line(full, full.relative_to(path).as_posix()))
            lines = ["folder", *sorted(inside)]
        else:
            return None
    except OSError:
        return None
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def versions_of(host: str, checkpoint: Checkpoint, path: Path | None = None,
                entries: dict[str, IndexEntry] | None = None) -> list[IndexEntry]:
    """Every recorded copy of this exact checkpoint version, the plain-keyed one first."""
    entries = load(path) if entries is None else entries
    same = [e for e in entries.values() if e.host == host and e.remote_path == checkpoint.path
            and e.size == int(checkpoint.size) and e.mtime == float(checkpoint.mtime)]
    return sorted(same, key=lambda e: (e.extra, e.local_path))


def entry_for(host: str, checkpoint: Checkpoint, path: Path | None = None,
              entries: dict[str, IndexEntry] | None = None, *, at: Path | None = None) -> IndexEntry | None:
    """The entry recorded for this exact checkpoint version, whatever its copy holds now
    (`checkpoint_verify.confirm` decides that): the copy at `at` when there is one,
    else the plain-keyed copy, else an extra one (the first was pruned)."""
    copies = versions_of(host, checkpoint, path, entries)
    if at is not None:
        here = os.path.realpath(at)
        copies.sort(key=lambda e: os.path.realpath(e.local_path) != here)
    return copies[0] if copies else None


def lookup(host: str, checkpoint: Checkpoint, path: Path | None = None,
           entries: dict[str, IndexEntry] | None = None) -> IndexEntry | None:
    """An entry for this exact checkpoint version whose local copy is untouched since
    it was hashed (its stamp; an entry from before stamps: its size). Reads no pod."""
    return next((e for e in versions_of(host, checkpoint, path, entries) if untouched(e)), None)


def untouched(entry: IndexEntry) -> bool:
    """Whether the entry's local copy is as it was hashed (its stamp; an entry from
    before stamps: its size)."""
    local = Path(entry.local_path)
    if entry.local_stamp:
        return local_stamp(local) == entry.local_stamp
    return local_size(local) == entry.expected_local_bytes


def verified_here(host: str, session: str | None = None, path: Path | None = None) -> list[IndexEntry]:
    """The untouched verified copies of `host`'s checkpoints (of `session`), newest
    first: what is known to be safe here while the pod cannot be asked (stopped)."""
    found = [e for e in load(path).values()
             if e.host == host and (session is None or e.session == session) and untouched(e)]
    return sorted(found, key=lambda e: e.mtime, reverse=True)


def copies_of(host: str, remote_path: str, path: Path | None = None) -> list[IndexEntry]:
    """Every recorded copy of a remote path, any version (to know a local file is ours)."""
    return [e for e in load(path).values() if e.host == host and e.remote_path == remote_path]


def is_verified(host: str, checkpoint: Checkpoint, path: Path | None = None) -> bool:
    """A verified local copy of this checkpoint version exists, untouched (`lookup`)."""
    return lookup(host, checkpoint, path) is not None


def mark_verified(checkpoints: Sequence[Checkpoint], host: str, path: Path | None = None) -> list[Checkpoint]:
    """The same checkpoints with `verified_local` filled from the index (one read)."""
    entries = load(path)
    return [replace(c, verified_local=lookup(host, c, entries=entries) is not None) for c in checkpoints]


def forget(keys: Sequence[str], path: Path | None = None) -> None:
    """Drop entries (their local copies were deleted on purpose, e.g. by `keep_local`)."""
    path = path or index_path()
    with locked(path):
        entries = load(path)
        if any(k in entries for k in keys):
            _write({k: e for k, e in entries.items() if k not in set(keys)}, path)
