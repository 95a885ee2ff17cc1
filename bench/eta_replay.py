"""How right gpuctl's ETA is, replaying the matrix of real runs at their arrival times.

Why: an ETA is only worth showing if one can plan by it: within +-15 % of the true
time left after the first 10 % of a run, and not swinging between samples when the run
is steady (issue 14, item 6). The captures in tests/data/runs/ hold when each chunk of
terminal output arrived and, from inside the run, when each step really completed; so
the true time left at any moment is known exactly.

What it does: for each terminal capture (tests/support/progress_runs.replay), feeds
the chunks into a `ProgressTracker` at their arrival times and reads the ETA when the
true step first reaches 10, 15, ... 95 % of the total; prints the relative error
(ETA - true remaining) / true remaining at 10/25/50/75 %, and the largest move between
consecutive samples beyond the time that passed, relative to the true time left.
To compare with another version of the parser, run this file from a copy of that tree
(with tests/support/progress_runs.py and tests/data/runs/ beside it).

Run: .venv/bin/python bench/eta_replay.py
Not a test: the runs are tiny (seconds), so their first pauses weigh more than in a
real run; read it as a comparison between the two ways on the same captures.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import progress_runs as runs  # noqa: E402

FRACTIONS = tuple(round(0.10 + 0.05 * i, 2) for i in range(18))
REPORTED = (0.10, 0.25, 0.50, 0.75)


def measure(name: str) -> tuple[dict[float, float | None], float | None]:
    """({fraction: relative error}, largest swing) for one capture."""
    tr = runs.truth(name, "tty")
    errors: dict[float, float | None] = {}
    swing = None
    prev = None
    for f, t, p in runs.replay(name, FRACTIONS):
        left = tr.end_t - t
        if p.eta_s is None or left <= 0:
            errors[f], prev = None, None
            continue
        errors[f] = (p.eta_s - left) / left
        if prev is not None:
            # a steady ETA falls by the time that passed: anything else is a swing
            moved = abs(p.eta_s - (prev[1] - (t - prev[0]))) / left
            swing = moved if swing is None else max(swing, moved)
        prev = (t, p.eta_s)
    return errors, swing


def main() -> None:
    # A run that stops short of its total (torchrun_ddp: a time budget) has no true time
    # left to the total to compare with.
    names = sorted({n for n, k in runs.captures() if k == "tty" and (runs.RUNS / f"{n}.tty.times.json").exists()
                    and runs.truth(n, "tty").final_step >= (runs.truth(n, "tty").total or 0)})
    head = "".join(f"{int(f * 100):>7}%" for f in REPORTED)
    print(f"{'capture':<24}{head}   max swing   (ETA error vs true time left; + = late)")
    worst, within = [], 0
    total = 0
    for name in names:
        errors, swing = measure(name)
        cells = "".join(f"{errors[f]:>+8.0%}" if errors.get(f) is not None else f"{'-':>8}" for f in REPORTED)
        sw = f"{swing:>9.0%}" if swing is not None else f"{'-':>9}"
        print(f"{name:<24}{cells}   {sw}")
        for f in REPORTED:
            if errors.get(f) is not None:
                total += 1
                within += abs(errors[f]) <= 0.15
                worst.append(abs(errors[f]))
    if total:
        print(f"\n{within}/{total} samples at 10/25/50/75 % within +-15 %; "
              f"median |error| {sorted(worst)[len(worst) // 2]:.0%}, worst {max(worst):.0%}")


if __name__ == "__main__":
    main()
