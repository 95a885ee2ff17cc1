"""Logs: ``tail -F`` by byte offset, deltas capped per check, never a whole file in memory.

``Follow`` follows one file across truncation and rotation and resumes at an exact byte
offset after a dropped link; ``read_tail`` answers one ``tail`` command.
"""

from __future__ import annotations

import codecs
import os
import stat

from .protocol import AGENT_PROTOCOL_VERSION, make_error
from .tools import _quietly


#: Log following: how often followed files are looked at (its own cadence, not the
#: telemetry interval), the most bytes one file may send per look, and limits.
FOLLOW_INTERVAL_S = 0.25
MIN_FOLLOW_INTERVAL_S = 0.05
MAX_FOLLOW_INTERVAL_S = 60.0
FOLLOW_MAX_BYTES = 256 * 1024
MAX_FOLLOW_MAX_BYTES = 16 * 1024 * 1024
MAX_FOLLOWS = 256
MAX_TAIL_LINES = 1000000
TAIL_BLOCK = 64 * 1024


class FileProblem(Exception):
    """A log file that cannot be read, in plain words (``str(exc)``)."""


def _problem(exc, path):
    """Plain words for an OSError met opening or reading ``path``."""
    if isinstance(exc, FileNotFoundError):
        return FileProblem("no such file: %s" % path)
    if isinstance(exc, PermissionError):
        return FileProblem("permission denied: %s" % path)
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return FileProblem("not a regular file: %s" % path)
    return FileProblem("cannot read %s: %s" % (path, exc.strerror or exc))


def open_log(path):
    """Open a regular file for reading; returns ``(fd, os.stat_result)``.

    Raises:
        FileNotFoundError: nothing at ``path`` (a state when following: "missing").
        FileProblem: anything else that stops reading it (permissions, a directory...).
    """
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the agent in open(). (+ rather
        # than |, which the 3.8 AST check bans; the flags are distinct bits.)
        fd = os.open(path, os.O_RDONLY + getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _problem(exc, path) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem("not a regular file: %s" % path)
    return fd, st


def tail_start(fd, size, lines, limit):
    """Where the last ``lines`` lines of the file end at ``size`` begin.

    Reads backwards in blocks from the end and never further than ``limit`` bytes, so a
    2 GB log (or a sparse file) costs a few small reads. A last line without its newline
    counts as a line, as with ``tail -n``.

    Returns:
        ``(offset, capped)``; ``capped`` is True when the lines reach past ``limit``:
        then ``offset`` is ``size - limit`` and the caller moves it to a line start.
    """
    if lines <= 0 or size <= 0:
        return size, False
    floor = max(0, size - limit)
    pos, needed = size, lines
    while pos > floor:
        block = min(TAIL_BLOCK, pos - floor)
        pos -= block
        data = os.pread(fd, block, pos)
        stop = len(data)
        if pos + stop == size and data.endswith(b"\n"):
            stop -= 1  # the last line's own newline does not start a line
        while True:
            newline = data.rfind(b"\n", 0, stop)
            if newline < 0:
                break
            needed -= 1
            if needed == 0:
                return pos + newline + 1, False
            stop = newline
    return (0, False) if floor == 0 else (floor, True)


def read_window(fd, start, end, cap, align=False):
    """Read ``[start, end)`` but at most its newest ``cap`` bytes.

    When that cuts the front off (or ``align`` says ``start`` may be mid-line), the data
    begins after the first newline inside the window, so text never starts mid-line
    (or mid-character); a window without a newline is kept whole.

    Returns:
        ``(data, data_start)``; ``data_start - start`` bytes were skipped.
    """
    if end - start > cap:
        start, align = end - cap, True
    if end <= start:
        return b"", start
    if not align or start == 0:
        return os.pread(fd, end - start, start), start
    data = os.pread(fd, end - start + 1, start - 1)  # one byte more: is start a line start?
    if data[:1] == b"\n":
        return data[1:], start
    newline = data.find(b"\n", 1)
    if newline < 0 or newline == len(data) - 1:
        return data[1:], start
    return data[newline + 1:], start - 1 + newline + 1


def _new_decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def make_log(follow, data, offset, skipped, event):
    return {
        "kind": "log", "v": AGENT_PROTOCOL_VERSION, "id": follow.id, "path": follow.path,
        "data": data, "offset": offset, "skipped": skipped, "event": event,
    }


class Follow:
    """One followed file, ``tail -F`` style: by path, surviving rotation and truncation.

    Attributes:
        id: the client's name for this follow, echoed in every message.
        path: the path as the client gave it (``~`` expanded only for opening).
        max_bytes: most bytes read per check; more pending skips to the newest ones.
    """

    def __init__(self, follow_id, path, max_bytes):
        self.id = follow_id
        self.path = path
        self.real = os.path.abspath(os.path.expanduser(path))
        self.max_bytes = max_bytes
        self.fd = None
        self.ident = None  # (st_dev, st_ino) of the open file
        self.offset = 0  # bytes consumed from the open file
        self.decoder = _new_decoder()
        self.missing = False
        self.problem = None  # the last FileProblem reported, so it is said once

    def start(self, tail_lines=0, from_offset=None):
        """Open the file and return the first message (tail, or data from an offset).

        Raises:
            FileProblem: the file exists but cannot be followed.
        """
        try:
            self._open()
        except FileNotFoundError:
            self.missing = True
            return make_log(self, "", 0, 0, "missing")
        size = os.fstat(self.fd).st_size
        if from_offset is not None:
            if from_offset > size:  # shorter than when the client last read it
                return self._delta(size, "truncated")
            self.offset = from_offset
            return self._delta(size, "opened")
        start, capped = tail_start(self.fd, size, tail_lines, self.max_bytes)
        data, start = read_window(self.fd, start, size, self.max_bytes, align=capped)
        self.offset = start + len(data)
        return make_log(self, self._decode(data), self._reported_offset(), 0, "opened")

    def check(self):
        """Look at the file once; return the messages to send (often none).

        Raises:
            FileProblem: the file can no longer be read (said once per problem).
        """
        try:
            st = os.stat(self.real)
        except OSError:
            st = None
        if self.fd is None:
            return self._reopen(st, "opened")
        if st is None or (st.st_dev, st.st_ino) != self.ident:
            # Renamed or removed: what was written to the old file before it went still
            # belongs to the log, then the path's new file (if any) is read from its start.
            messages = self._drain_old()
            self.close()
            if st is None:
                self.missing = True
                return messages + [make_log(self, "", 0, 0, "missing")]
            try:
                return messages + self._reopen(st, "rotated")
            except FileProblem as exc:  # the new file is unreadable: still send the old tail
                return messages + [make_error(str(exc), self.id)]
        if st.st_size < self.offset:
            self.offset = 0
            self.decoder = _new_decoder()
            return [self._delta(st.st_size, "truncated")]
        if st.st_size > self.offset:
            message = self._delta(st.st_size, None)
            if message["data"] or message["skipped"]:
                return [message]
        return []

    def _reopen(self, st, event):
        if st is None:
            return []
        try:
            opened = self._open()
        except FileNotFoundError:  # gone again between stat and open
            if self.missing:
                return []
            self.missing = True
            return [make_log(self, "", 0, 0, "missing")]
        if not opened:
            return []
        if self.missing:
            event = "opened"
        self.missing = False
        return [self._delta(os.fstat(self.fd).st_size, event)]

    def _open(self):
        """Open the path; False if it failed for a reason already reported.

        Raises:
            FileNotFoundError: nothing at the path.
            FileProblem: a new reason it cannot be read (reported once by the caller).
        """
        try:
            self.fd, st = open_log(self.real)
        except FileProblem as exc:
            if self.problem == str(exc):
                return False
            self.problem = str(exc)
            raise
        self.problem = None
        self.ident = (st.st_dev, st.st_ino)
        self.offset = 0
        self.decoder = _new_decoder()
        return True

    def _drain_old(self):
        try:
            size = os.fstat(self.fd).st_size
        except OSError:
            return []
        if size <= self.offset:
            return []
        message = self._delta(size, None)
        return [message] if message["data"] or message["skipped"] else []

    def _delta(self, size, event):
        """Read from ``offset`` to ``size`` (capped) and build the message."""
        data, start = read_window(self.fd, self.offset, size, self.max_bytes)
        skipped = start - self.offset
        if skipped:
            self.decoder = _new_decoder()  # bytes of a split character were skipped too
        self.offset = start + len(data)
        return make_log(self, self._decode(data), self._reported_offset(), skipped, event)

    def _decode(self, data):
        return self.decoder.decode(data)

    def _reported_offset(self):
        """Bytes consumed, less a character's first bytes the decoder still holds: the
        offset a client resumes from (``from_offset``) then re-reads that character whole."""
        return self.offset - len(self.decoder.getstate()[0])

    def close(self):
        if self.fd is not None:
            _quietly(lambda: os.close(self.fd))
            self.fd = None
            self.ident = None


def read_tail(path, lines, max_bytes):
    """One-shot tail: ``(data, size)``.

    Raises:
        FileProblem: missing or unreadable, in plain words.
    """
    real = os.path.abspath(os.path.expanduser(path))
    try:
        fd, st = open_log(real)
    except FileNotFoundError as exc:
        raise _problem(exc, path) from exc
    try:
        start, capped = tail_start(fd, st.st_size, lines, max_bytes)
        data, _ = read_window(fd, start, st.st_size, max_bytes, align=capped)
    except OSError as exc:
        raise _problem(exc, path) from exc
    finally:
        os.close(fd)
    # A character cut at the very end (being written right now) is left out, not garbled.
    return _new_decoder().decode(data), st.st_size
