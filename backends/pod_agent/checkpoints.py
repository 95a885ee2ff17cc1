"""Watching a session's checkpoint globs cheaply; gpuctl's own listing run only when
something changed, so a new complete checkpoint is reported within seconds.

The listing is not defined here. gpuctl sends the exact command its one listing runs
over exec (``sessions/checkpoints/listing.py``: the globs, the completion markers, the
NUL-separated records ending in an ``E`` record), the agent runs it and returns its
output whole, and gpuctl parses and judges that output as it judges any listing. What
the agent decides is *when*. About once a second it stats what the listing reads: the
folders the globs look into (an entry created, removed or renamed moves their mtime;
then the globs are matched again, in-process), every match (a file's size and mtime; a folder's mtime, and for a folder changed in the
last ``YOUNG_S`` the count, total size and newest mtime of the files inside, as the
listing sums them) and a DeepSpeed ``latest`` beside a folder match. It runs the listing

* once at the start (gpuctl's first view),
* when those stats changed and then stayed still for ``quiet_s``: gpuctl sends its
  "modified just now" threshold plus a margin, so a checkpoint whose writes stopped is
  judged complete by that one listing, or
* ``busy_s`` after they started to differ from the last listing's, if they never
  settled meanwhile (a long write): so at most one listing per ``busy_s``.

While nothing changes there is no listing and no exec: a stat per watched folder and
match. A folder match older than ``YOUNG_S`` whose files are rewritten in place is not
seen here; gpuctl's periodic listing (``checkpoint_interval_s``) still is. The listing
runs as a child process that the agent's loop reads (``fileno``/``pump``), so a slow
filesystem never holds up telemetry.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
import time

from .protocol import AGENT_PROTOCOL_VERSION
from .tools import _quietly

#: How often a watch stats its folders and matches.
CHECKPOINT_CHECK_S = 1.0
#: Stats unchanged this long after a change: list (gpuctl sends its own value).
CHECKPOINT_QUIET_S = 2.5
#: While stats keep changing, list at most this often.
CHECKPOINT_BUSY_S = 4.0
#: A listing still running after this long is killed and reported as failed.
CHECKPOINT_LISTING_TIMEOUT_S = 60.0
#: A listing that prints more than this is cut off and reported as failed.
CHECKPOINT_LISTING_MAX_BYTES = 16 * 1024 * 1024
#: Folder matches modified this recently have the files inside them stat'ed too.
YOUNG_S = 900.0
#: Directory entries one scan of the globs, or of one folder's files, may look at.
MAX_SCAN_ENTRIES = 20000
MAX_CHECKPOINT_WATCHES = 256

_MAGIC = frozenset("*?[")


def _lstat(path):
    try:
        return os.lstat(path)
    except OSError:
        return None


def _mtime_ns(path):
    st = _lstat(path)
    return None if st is None else st.st_mtime_ns


def _entries(path, budget):
    """A folder's entries, within what is left of the scan's budget."""
    try:
        with os.scandir(path) as found:
            entries = []
            for entry in found:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                entries.append(entry)
            return entries
    except OSError:
        return []


def _is_dir(entry):
    try:
        return entry.is_dir()  # follows a link, as the shell's glob does
    except OSError:
        return False


def expand(root, pattern, dirs, budget):
    """The paths a shell glob relative to ``root`` may match; each folder looked into
    goes into ``dirs`` with its mtime (one whose entries change can change the matches).
    A superset is fine: gpuctl's listing, not this, decides what a checkpoint is."""
    parts = [part for part in pattern.split("/") if part and part != "."]
    bases = [root]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        found = []
        for base in bases:
            dirs[base] = _mtime_ns(base)
            if not _MAGIC.intersection(part):
                path = os.path.join(base, part)
                if os.path.lexists(path) if last else os.path.isdir(path):
                    found.append(path)
                continue
            for entry in _entries(base, budget):
                if entry.name.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(entry.name, part) and (last or _is_dir(entry)):
                    found.append(entry.path)
        bases = found
    return bases


def folder_stamp(path, budget):
    """(files, total size, newest mtime) of a folder's contents, as the listing sums them."""
    files, size, newest = 0, 0, 0
    pending = [path]
    while pending:
        for entry in _entries(pending.pop(), budget):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            newest = max(newest, st.st_mtime_ns)
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size, newest


class CheckpointWatch:
    """One session's checkpoint globs: stat'ed every ``every_s``, listed when due.

    Args:
        watch_id: the session name (the message's ``id``).
        root: the session's workdir (``~`` expands here, on the pod).
        patterns: its checkpoint globs, relative to ``root``.
        command: the shell command that lists them, exactly as gpuctl runs it over exec.
    """

    def __init__(self, watch_id, root, patterns, command, every_s=CHECKPOINT_CHECK_S,
                 quiet_s=CHECKPOINT_QUIET_S, busy_s=CHECKPOINT_BUSY_S):
        self.id = watch_id
        self.root = os.path.expanduser(root)
        self.patterns = list(patterns)
        self.command = command
        self.every_s = every_s
        self.quiet_s = quiet_s
        self.busy_s = busy_s
        self.listings = 0  # listings started: what a quiet pod must not pay for
        self._dirs = {}  # folders the globs looked into -> mtime_ns
        self._matches = []
        self._next_check = None
        self._seen = None  # the last stamp, and since when it stands
        self._changed_at = None
        self._listed = None  # the stamp the last listing started from
        self._unlisted_since = None  # since when the stats differ from it
        self._proc = None
        self._started_at = None
        self._out = []
        self._size = 0

    # -- stats ----------------------------------------------------------------------

    def _scan(self):
        dirs, matches, budget = {}, [], [MAX_SCAN_ENTRIES]
        for pattern in self.patterns:
            matches.extend(expand(self.root, pattern, dirs, budget))
        self._dirs = dirs
        self._matches = sorted(set(matches))

    def _dirs_moved(self):
        return not self._dirs or any(_mtime_ns(path) != mtime for path, mtime in self._dirs.items())

    def stamp(self, wall=None):
        """Everything the listing's answer depends on, as cheaply as it can be read."""
        if self._dirs_moved():
            self._scan()
        wall = time.time() if wall is None else wall
        budget = [MAX_SCAN_ENTRIES]
        # The folders' own mtimes only tell when to look for matches again: a folder
        # that gains files no glob matches (sample images, logs) costs a rescan, never
        # a listing.
        parts = []
        for path in self._matches:
            st = _lstat(path)
            if st is None or stat.S_ISLNK(st.st_mode):
                parts.append((path, None))
            elif stat.S_ISDIR(st.st_mode):
                young = wall - st.st_mtime < YOUNG_S
                latest = os.path.join(os.path.dirname(path), "latest")
                parts.append((path, st.st_mtime_ns, folder_stamp(path, budget) if young else None,
                              _stat_pair(latest)))
            else:
                parts.append((path, st.st_size, st.st_mtime_ns))
        return tuple(parts)

    # -- when to list -----------------------------------------------------------------

    def check(self, now, wall=None):
        """Stat once when due and start the listing if it is due; returns a message
        only when a listing failed here (see ``pump`` for the others)."""
        if self._proc is not None:
            if now - self._started_at < CHECKPOINT_LISTING_TIMEOUT_S:
                return None
            self.close()
            return self._report(None, None, "the checkpoint listing did not finish within %g s"
                                % CHECKPOINT_LISTING_TIMEOUT_S)
        if self._next_check is not None and now < self._next_check:
            return None
        self._next_check = now + self.every_s
        current = self.stamp(wall)
        if current != self._seen:
            self._seen, self._changed_at = current, now
        if self._listed is None:
            due = True
        elif current == self._listed:
            self._unlisted_since = None
            due = False
        else:
            if self._unlisted_since is None:
                self._unlisted_since = now
            due = now - self._changed_at >= self.quiet_s or now - self._unlisted_since >= self.busy_s
        return self._start(current, now) if due else None

    def _start(self, current, now):
        """Start the listing; a message only when it could not even start."""
        self._listed, self._unlisted_since = current, None
        self.listings += 1
        self._out, self._size = [], 0
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", self.command], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        except OSError as exc:
            return self._report(None, None, "could not run the checkpoint listing: %s" % exc)
        self._started_at = now
        return None

    # -- the running listing --------------------------------------------------------------

    def fileno(self):
        """The running listing's stdout, for the agent's ``select``; None when idle."""
        return None if self._proc is None else self._proc.stdout.fileno()

    def pump(self):
        """Read what the listing printed; its message once it has ended, else None."""
        proc = self._proc
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if chunk:
            self._out.append(chunk)
            self._size += len(chunk)
            if self._size <= CHECKPOINT_LISTING_MAX_BYTES:
                return None
            self.close()
            return self._report(None, None, "the checkpoint listing printed more than %d bytes"
                                % CHECKPOINT_LISTING_MAX_BYTES)
        self._proc = None
        try:
            status = proc.wait(5)
        except subprocess.TimeoutExpired:
            _quietly(proc.kill)
            status = proc.wait()
        errors = proc.stderr.read(4096).decode("utf-8", "replace").strip()
        proc.stdout.close()
        proc.stderr.close()
        # surrogateescape: a name's bytes that are not UTF-8 go back to gpuctl as they
        # are on disk (JSON carries them as lone surrogates), so it can ask for the file.
        listing = b"".join(self._out).decode("utf-8", "surrogateescape")
        self._out = []
        return self._report(listing, status, errors.splitlines()[-1] if errors else None)

    def _report(self, listing, status, error):
        return {
            "kind": "checkpoints", "v": AGENT_PROTOCOL_VERSION, "id": self.id,
            "listing": listing, "exit_status": status, "error": error,
        }

    def close(self):
        """Stop a running listing (the watch is replaced or the agent ends)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _quietly(proc.kill)
            _quietly(proc.wait)
            _quietly(proc.stdout.close)
            _quietly(proc.stderr.close)


def _stat_pair(path):
    st = _lstat(path)
    return None if st is None else (st.st_size, st.st_mtime_ns)
