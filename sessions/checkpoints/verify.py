"""Is a recorded local copy of a checkpoint still the pod's checkpoint? Content, not names.

A copy counts as verified only when its SHA-256 equals the pod's SHA-256 of the same
checkpoint, both as they are *now*. (path, size, mtime) alone were trusted before,
and both sides can change behind them: a pod file rewritten with the same size and
its mtime set back (`os.utime`), or a local copy overwritten with as many bytes of
something else, still read as "verified", and teardown destroyed the only good copy.

Hashing a 20 GB checkpoint on every `gpuctl teardown` would be slow, so each side
keeps a *stamp* in the index entry (`sessions.checkpoints.index.IndexEntry`): a digest
of the stat fields that any write changes.

* **Pod stamp**: type, size, mtime, ctime, inode and device of the file, or of every
  entry under a folder (`stamp_command`). ctime cannot be set from user space: a
  rewrite followed by `os.utime` moves it, a rename-over gives a new inode, and a
  rename inside a folder moves the folder's mtime. When the stamp is unchanged the
  recorded pod hash is trusted; otherwise the pod hashes the checkpoint again (the
  same `backends.transfer.sha256_command` the download uses), between two stamps
  taken in the same exec (`bracketed_command`): if they differ, the checkpoint moved
  while it was read and nothing is concluded from that hash.
* **Local stamp** (`sessions.checkpoints.index.local_stamp`): the same fields of the
  local copy. When it moved, the copy is hashed again here before it counts.

A fresh hash that still matches refreshes the stamp in the index, so a harmless
change (a `chmod`, a copy put back byte for byte) costs one hash, not one per check.
A folder's digest is that of its manifest (`<sha256>  <relative path>` lines sorted
by path, `manifest_digest`): a file added to or removed from a local copy changes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backends.runner import CommandResult, Runner
from backends.transfer import parse_sha256, sha256_command, sha256_file
from sessions.checkpoints import index
from sessions.checkpoints.listing import (
    DIR,
    Checkpoint,
    UnsafeName,
    folder_command,
    parse_folder,
)

HASH_RATE = 50e6
"""Bytes/s assumed for the pod's hash when sizing its timeout (real tools do 300-1500 MB/s)."""

# $1 a checkpoint path. One line per entry: type size mtime ctime inode device, all
# numbers and no names (a name can hold any byte; a rename shows in its folder's
# mtime and ctime instead). stderr goes nowhere: through a PTY shell it would land
# among the lines.
_STAMP_SCRIPT = r"""
exec 2>/dev/null
if [ -d "$1" ]; then
  find "$1/" -printf '%y %s %T@ %C@ %i %D\n'
elif [ -f "$1" ]; then
  find "$1" -maxdepth 0 -printf '%y %s %T@ %C@ %i %D\n'
else
  exit 3
fi
"""

_STAMP_LINE = re.compile(r"[a-zA-Z] \d+ \d+(?:\.\d+)? \d+(?:\.\d+)? \d+ \d+")
_MARK = "GPUCTL-STAMP-9c1e"
"""Separates the parts of `bracketed_command`'s output; neither a hash line nor a
stamp line can contain it."""


def stamp_command(path: str) -> str:
    """Print the stat lines of a pod file or folder (parse with `parse_stamp`)."""
    return f"sh -c {shlex.quote(_STAMP_SCRIPT)} sh {shlex.quote(path)}"


def parse_stamp(stdout: str) -> str:
    """The stamp (a hex digest of the sorted stat lines), or "" when there are none."""
    lines = sorted(line.strip() for line in stdout.splitlines() if _STAMP_LINE.fullmatch(line.strip()))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest() if lines else ""


def bracketed_command(command: str, path: str) -> str:
    """`command` between two stamps of `path`, in one exec; its exit status is `command`'s.

    The outer `sh -c` keeps `exit` from ending a PTY shell the command is typed into.
    """
    stamp = stamp_command(path)
    mark = f"printf '\\n%s\\n' {_MARK}"
    script = f"{stamp}\n{mark}\n{command}\nr=$?\n{mark}\n{stamp}\nexit $r\n"
    return f"sh -c {shlex.quote(script)}"


def split_bracketed(result: CommandResult) -> tuple[CommandResult, str, str]:
    """(the inner command's result, stamp before, stamp after) from `bracketed_command`.

    A stamp that cannot be read is "": it never equals a recorded one.
    """
    parts = result.stdout.replace("\r\n", "\n").split(f"\n{_MARK}\n", 2)
    if len(parts) != 3:
        return result, "", ""
    return replace(result, stdout=parts[1]), parse_stamp(parts[0]), parse_stamp(parts[2])


def manifest_digest(rels: Sequence[str], digests: Sequence[str]) -> str:
    """The digest of a folder: of its `<sha256>  <relative path>` lines, sorted by path."""
    lines = "".join(f"{d}  {r}\n" for r, d in sorted(zip(rels, digests)))
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def local_digest(path: Path) -> str | None:
    """SHA-256 of a local copy as `sessions.checkpoints.download` records it, or None if unreadable.

    A folder: the manifest digest of every regular file under it (symlinks are not
    followed: a download never makes one, so one found there is not the pod's data).
    """
    try:
        if path.is_symlink():
            return None
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            return None
        rels, digests = [], []
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(top, name)
                if full.is_symlink() or not full.is_file():
                    continue
                rels.append(full.relative_to(path).as_posix())
                digests.append(sha256_file(full))
        return manifest_digest(rels, digests)
    except OSError:
        return None


class PodHashFailed(Exception):
    """The pod could not hash a checkpoint (or it moved while it did); `str()` says why."""


async def pod_digest(runner: Runner, checkpoint: Checkpoint) -> tuple[str, str]:
    """(the pod's SHA-256 of `checkpoint` as the download computes it, its stamp then).

    Raises:
        PodHashFailed: the pod could not list or hash it, or it changed meanwhile.
        backends.ssh.SshFailure: the pod is unreachable.
    """
    before = ""
    if checkpoint.kind == DIR:
        # The stamp before the folder listing: a file added after it moves the stamp.
        result = await runner.run(bracketed_command(folder_command(checkpoint.path), checkpoint.path))
        listing, before, _ = split_bracketed(result)
        if not listing.ok:
            raise PodHashFailed(f"cannot list its files on the pod: {listing.last_error_line()}")
        try:
            rels = [f.rel for f in parse_folder(listing.stdout, checkpoint.name)]
        except (UnsafeName, ValueError) as exc:
            raise PodHashFailed(str(exc)) from None
        root = checkpoint.path
    else:
        rels, root = [posixpath.basename(checkpoint.path)], posixpath.dirname(checkpoint.path) or "/"
    if not rels:  # an empty folder: nothing to hash
        after = parse_stamp((await runner.run(stamp_command(checkpoint.path))).stdout)
        if not after or after != before:
            raise PodHashFailed("it changed on the pod while gpuctl read it")
        return manifest_digest([], []), after
    hashed, first, after = split_bracketed(await runner.run(
        bracketed_command(sha256_command(root, rels), checkpoint.path), timeout=120 + checkpoint.size / HASH_RATE))
    if not hashed.ok:
        raise PodHashFailed(f"the pod could not hash it: {hashed.last_error_line()}")
    try:
        digests = parse_sha256(hashed.stdout, len(rels))
    except ValueError as exc:
        raise PodHashFailed(f"the pod could not hash it: {exc}") from None
    if not after or after != first or (checkpoint.kind == DIR and after != before):
        raise PodHashFailed("it changed on the pod while gpuctl hashed it (still being written?)")
    return (digests[0] if checkpoint.kind != DIR else manifest_digest(rels, digests)), after


async def confirm(runner: Runner, checkpoint: Checkpoint,
                  entry: index.IndexEntry) -> tuple[index.IndexEntry | None, str]:
    """(the entry, "") when the local copy `entry` records still holds the pod's
    `checkpoint` byte for byte; (None, why not) otherwise. See the module docstring.

    Checks the local side first (no pod round trip when the copy is gone). A stamp
    refreshed by a matching hash is written back to the index.

    Raises:
        backends.ssh.SshFailure: the pod is unreachable.
    """
    local = Path(entry.local_path)
    fresh = entry
    stamp = index.local_stamp(local)
    if stamp is None:
        return None, f"its local copy {local} is gone"
    if stamp != entry.local_stamp:
        digest = await asyncio.to_thread(local_digest, local)
        if digest != entry.sha256:
            return None, f"its local copy {local} no longer holds what was verified"
        if index.local_stamp(local) != stamp:
            return None, f"its local copy {local} is being changed"
        fresh = replace(fresh, local_stamp=stamp)
    result = await runner.run(stamp_command(checkpoint.path))
    pod_stamp = parse_stamp(result.stdout) if result.ok else ""
    if not pod_stamp:
        return None, "the pod cannot read it"
    if pod_stamp != entry.pod_stamp:
        try:
            digest, pod_stamp = await pod_digest(runner, checkpoint)
        except PodHashFailed as exc:
            return None, str(exc)
        if digest != entry.sha256:
            return None, "its content on the pod differs from the verified copy's"
        fresh = replace(fresh, pod_stamp=pod_stamp)
    if fresh != entry:
        index.record(fresh)
    return fresh, ""
