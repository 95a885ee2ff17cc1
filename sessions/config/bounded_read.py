"""Read a small local file the config names, safely: a regular file, up to a limit.

Opened without blocking and checked on the open descriptor (not by a `stat` before
it, which a rename could outrun): opening a FIFO for reading would wait for a writer
forever, and `/dev/zero` or `/dev/urandom` never end, so "read it all" would hang or
eat all memory. A symlink to a regular file is fine (dotfile managers link configs).
Used for the config file itself, the hostfiles `jobs:` entries name and the SSH config
files SkyPilot generates (`pods import skypilot`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path is a FIFO, device or socket; `kind` says which, in words."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class TooBig(OSError):
    """The file holds more than the limit; `size` is what it holds (at least)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def read_bounded(file: Path, limit: int) -> bytes:
    """The file's bytes.

    Raises:
        IsADirectoryError: a directory.
        NotRegularFile, TooBig: see the classes.
        OSError: what opening or reading raised.
    """
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(file_kind(info.st_mode))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooBig(max(info.st_size, len(data)))
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a named pipe")."""
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((word for test, word in kinds if test(mode)), "something other than a file")
