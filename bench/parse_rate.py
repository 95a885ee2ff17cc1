"""How fast the progress parser reads a log, against a bare regex loop in the same run.

Why: a pod's log can hold millions of bar redraws (tqdm redraws ten times a second for
days), and `gpuctl progress FILE` or a reconnect re-reads it. The parser should cost
at most ~3x the cheapest thing that could work: `for line in f: one_regex.search(line)`.

What it does: builds a mixed log of >= 1,000,000 lines (a line being what text-mode
iteration yields, `\\r` redraws included) by repeating the checked-in captures and
reconstructions in tests/data/logs/, writes it to a temp file, then times, best of
--repeat runs each:

  baseline   `for line in f: rx.search(line)` with one precompiled tqdm regex
  parse_log  read the file, `sessions.progress.parse_log(text)`
  feed       read 64 KiB chunks, `ProgressTracker.feed(chunk, now)` each (the agent path)

Run: .venv/bin/python bench/parse_rate.py [--lines N] [--repeat R]
Not a test: timings depend on the machine and its load; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sessions.progress import ProgressTracker, parse_log  # noqa: E402

LOGS = ROOT / "tests" / "data" / "logs"
BASELINE_RE = re.compile(r"(\d+)/(\d+) \[")
"""The baseline's one regex: a tqdm bar's `n/total [` (what a naive parser would grep)."""


def build_mixed_log(path: Path, min_lines: int) -> int:
    """Write >= min_lines lines of the fixture logs, repeated in turn; return the count."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(LOGS.glob("*.log"))]
    counts = [len(t.splitlines()) for t in texts]
    lines = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        while lines < min_lines:
            for text, n in zip(texts, counts):
                f.write(text if text.endswith(("\n", "\r")) else text + "\n")
                lines += n
    return lines


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run_baseline(path: Path) -> int:
    search = BASELINE_RE.search
    hits = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if search(line) is not None:
                hits += 1
    return hits


def run_parse_log(path: Path):
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return parse_log(f.read())


def run_feed(path: Path):
    tracker = ProgressTracker()
    now = 0.0
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        while chunk := f.read(65536):
            now += 0.5
            tracker.feed(chunk, now)
    return tracker.progress()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    fd, name = tempfile.mkstemp(prefix="gpuctl-bench-", suffix=".log")
    os.close(fd)
    path = Path(name)
    try:
        n = build_mixed_log(path, args.lines)
        size = path.stat().st_size
        print(f"mixed log: {n:,} lines, {size / 1e6:.1f} MB ({path})")
        t_base, hits = best_of(args.repeat, lambda: run_baseline(path))
        t_parse, prog = best_of(args.repeat, lambda: run_parse_log(path))
        t_feed, _ = best_of(args.repeat, lambda: run_feed(path))
        print(f"baseline   {n / t_base:>12,.0f} lines/s  ({t_base:.2f} s, {hits:,} regex hits)")
        print(f"parse_log  {n / t_parse:>12,.0f} lines/s  ({t_parse:.2f} s)  ratio {t_parse / t_base:.2f}x")
        print(f"feed       {n / t_feed:>12,.0f} lines/s  ({t_feed:.2f} s)  ratio {t_feed / t_base:.2f}x")
        print(f"result: {prog.to_json()}")  # type: ignore[union-attr]
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
