"""Per-rank output: which rank wrote a line, so that each rank's progress is its own.

Why a module: a multi-process launcher that collects its workers' output into one log
prefixes every line with the rank that wrote it (torchrun `--tee 3`: `[rank1]:`,
older torch `[default1]:`; SkyPilot `(worker1, rank=1, pid=4321, ip=10.0.0.2)`;
OpenMPI `[1,1]<stdout>:`). Read as one stream, two ranks' bars and step lines
interleave and the step jumps back and forth between them; split by rank, each rank
has a reading and the job's pace is the slowest rank's (a job ends when its last rank
does).

The launcher writes whole lines: a tqdm bar's `\\r` redraws inside one of them carry
the prefix only once, at the start. So lines are routed on `\\n` before the tracker
splits redraws.
"""

from __future__ import annotations

import re

RANK_MARKS = ("[rank", "[default", "rank=", "]<std")
"""Literals one of which every supported prefix contains: a chunk without any of them
costs four substring scans in C and nothing else."""

RANK_RE = re.compile(
    r"\[(?:rank|default)(?P<a>\d+)\]:"          # torchrun --tee (2.2+: rank, before: default)
    r"|\((?:worker\d+|head), rank=(?P<b>\d+)[^)]*\) "  # SkyPilot / Ray
    r"|\[\d+,(?P<c>\d+)\]<std(?:out|err)>:"     # OpenMPI --tag-output
)
"""A rank prefix at the very start of a line (ANSI colour codes before it are allowed
by `split`). The group that matched holds the rank."""

MAX_RANKS = 1024
"""Prefixes beyond this many distinct ranks are read as plain text: a bound on memory
for a log that happens to print `[rank12345]:`-looking lines."""


def rank_of(line: str) -> tuple[str | None, int]:
    """(rank, where the line's own text starts) for a line that opens with a rank
    prefix, else (None, 0)."""
    start = 0
    if line.startswith("\x1b"):  # a colour code before the prefix (torchrun colours none, Ray does)
        end = line.find("m")
        if 0 < end < 16:
            start = end + 1
    m = RANK_RE.match(line, start)
    if m is None:
        return None, 0
    rank = m["a"] or m["b"] or m["c"]
    end = m.end()
    if end < len(line) and line[end] == " ":  # torchrun writes `[rank0]:text`, some add a space
        end += 1
    return rank, end


def split(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Lines (without their `\\n`) sorted into those of no rank and those of each rank,
    the prefix removed, order kept within each."""
    plain: list[str] = []
    ranks: dict[str, list[str]] = {}
    for line in lines:
        rank, end = rank_of(line) if line[:1] in "[(\x1b" else (None, 0)
        if rank is None or (rank not in ranks and len(ranks) >= MAX_RANKS):
            plain.append(line)
        else:
            ranks.setdefault(rank, []).append(line[end:])
    return plain, ranks
