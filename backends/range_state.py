"""Which byte ranges of a `.part` file have landed, kept beside it so a rerun fetches
only the rest (`backends.parallel_transfer`).

A parallel transfer writes a file as ranges, out of order, so the `.part` is not a
clean prefix and its size says nothing (it is created at full size, sparse). What has
landed is recorded in a small sidecar, `<name>.part.ranges` (JSON): the file size,
the range size (a JSON first line), then `OFFSET CRC32` per completed range. Resume checks every recorded
range against the bytes on disk before trusting it: a range that was damaged (or never
reached the disk before a crash) is fetched again. The whole file's SHA-256 on both
ends stays the proof of the copy; the per-range check is what lets one bad range cost
one range, not the file. CRC-32, not SHA-256: it runs on every byte as it arrives, on
the event loop, at a third of SHA-256's CPU, and it only has to catch damage to
bytes already verified once by the SSH transport's MAC, not a forger.

The sidecar is written whole (atomically) when a transfer starts, then one line is
appended per landed range (`Record`): kill -9 loses only the ranges in flight.

A `.part` without a sidecar is a clean prefix (written in order by the sequential
methods, `backends.transfer`): its whole ranges count as landed, checked by the
file's SHA-256 at the end as before. `to_prefix` turns a ranged `.part` back into a
clean prefix for those methods.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = ".ranges"
_VERSION = 1
_READ = 4 * 1024 * 1024


def sidecar(part: Path) -> Path:
    """The range record of `part` (`x.pt.part` -> `x.pt.part.ranges`)."""
    return part.with_name(part.name + SUFFIX)


def crc_file_range(fd: int, offset: int, length: int) -> int | None:
    """CRC-32 of `length` bytes of `fd` from `offset`; None when the file is shorter."""
    crc = 0
    end = offset + length
    while offset < end:
        block = os.pread(fd, min(_READ, end - offset), offset)
        if not block:
            return None
        crc = zlib.crc32(block, crc)
        offset += len(block)
    return crc


@dataclass
class RangeState:
    """The ranges of one file: `chunk` bytes each (the last may be shorter); `done`
    maps a range's offset to its CRC-32 once all of its bytes are written."""

    size: int
    chunk: int
    done: dict[int, int] = field(default_factory=dict)

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of every range, in file order."""
        return [(off, min(self.chunk, self.size - off)) for off in range(0, self.size, self.chunk)] or [(0, 0)]

    def length(self, off: int) -> int:
        return min(self.chunk, self.size - off)

    def missing(self) -> list[tuple[int, int]]:
        return [(off, n) for off, n in self.ranges() if off not in self.done and n]

    def landed_bytes(self) -> int:
        return sum(self.length(off) for off in self.done)

    def prefix(self) -> int:
        """Bytes from the start that are all landed."""
        end = 0
        while end < self.size and end in self.done:
            end += self.length(end)
        return end

    def save(self, part: Path) -> None:
        """Write the whole record atomically (a reader sees the old record or the new);
        `Record.add` then appends each range that lands."""
        path = sidecar(part)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        lines = [json.dumps({"version": _VERSION, "size": self.size, "chunk": self.chunk})]
        lines += [f"{off} {crc}" for off, crc in sorted(self.done.items())]
        try:
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: the ranges will be checked or fetched again

    @classmethod
    def load(cls, part: Path, size: int | None = None) -> "RangeState | None":
        """The recorded state (when it describes a file of `size` bytes), else None.
        A last line cut short (killed while appending) is ignored."""
        try:
            text = sidecar(part).read_text()
            head, *rest = text.split("\n")
            raw = json.loads(head)
            if raw.get("version") != _VERSION or (size is not None and raw["size"] != size):
                return None
            state = cls(int(raw["size"]), int(raw["chunk"]))
            if state.chunk <= 0 or state.size < 0:
                return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        for line in rest[:-1]:  # every complete line (the text ends with a newline)
            try:
                off, crc = (int(x) for x in line.split())
            except ValueError:
                continue
            if 0 <= off < state.size and off % state.chunk == 0:
                state.done[off] = crc
        return state


class Record:
    """The open sidecar of a transfer in progress: one short appended line per landed
    range (no rewrite, no rename: a few microseconds, where an atomic rewrite per
    range cost ~5 ms on a busy disk)."""

    def __init__(self, part: Path, state: RangeState):
        state.save(part)
        self._fd: int | None
        try:
            self._fd = os.open(sidecar(part), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            self._fd = None  # no record: an interruption then costs the ranges, never the copy

    def add(self, off: int, crc: int) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, f"{off} {crc}\n".encode())
            except OSError:
                pass  # a full disk: the range is fetched again after an interruption

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def resume_state(part: Path, fd: int, size: int, chunk: int) -> tuple[RangeState, int]:
    """The ranges of `part` (open as `fd`) that can be kept, and how many recorded ranges
    failed their check (fetched again).

    With a sidecar: every recorded range whose bytes still have its CRC. Without one
    (a sequential method's clean prefix): the whole ranges inside the file's size.
    A file longer than `size` is stale: nothing is kept.
    """
    have = os.fstat(fd).st_size
    recorded = RangeState.load(part, size)
    if have > size:
        return RangeState(size, chunk), 0
    if recorded is None:
        state = RangeState(size, chunk)
        for off, n in state.ranges():
            if n and off + n <= have:
                crc = crc_file_range(fd, off, n)
                if crc is not None:
                    state.done[off] = crc
        return state, 0
    bad = 0
    for off, crc in list(recorded.done.items()):
        n = min(recorded.chunk, size - off)
        if crc_file_range(fd, off, n) != crc:
            del recorded.done[off]
            bad += 1
    return recorded, bad


def to_prefix(part: Path) -> None:
    """Make a ranged `.part` a clean prefix again (for the sequential methods): cut it
    at its landed prefix and drop the sidecar. Nothing to do without a sidecar."""
    path = sidecar(part)
    if not path.exists():
        return
    state = RangeState.load(part)
    keep = state.prefix() if state is not None else 0
    try:
        fd = os.open(part, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        path.unlink(missing_ok=True)
        return
    except OSError:
        return  # left as it is: the sequential writer refuses it (a link) or fails on it
    try:
        if os.fstat(fd).st_size > keep:
            os.ftruncate(fd, keep)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


def discard(part: Path) -> None:
    """Remove the sidecar (the `.part` was renamed into place or deleted)."""
    sidecar(part).unlink(missing_ok=True)
