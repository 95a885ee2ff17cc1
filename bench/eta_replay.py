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
consecutive samples (after 10 %) beyond the time that passed, relative to the true time
left. A point where the rule cannot apply is marked, from the truth alone
(`progress_runs.judged`): the run itself changed pace there (`drift`: its mean step
time after the point over before it, beyond +-STEADY_DRIFT; no ETA can foresee a
machine that gets slower), pauses lie ahead and none was seen yet, or the pauses after
it are not like those before (a loaded machine's stalls early in a run).
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


def measure(name: str) -> tuple[dict[float, float | None], float | None, dict[float, str]]:
    """({fraction: relative error}, largest swing, {fraction: why the rule does not
    apply there}) for one capture."""
    errors: dict[float, float | None] = {}
    why_not: dict[float, str] = {}
    swing = None
    prev = None
    for f, t, eta, left in runs.eta_samples(name, FRACTIONS):
        why = runs.judged(name, t)
        if why is not None:
            why_not[f] = why
        if eta is None or left <= 0:
            errors[f], prev = None, None
            continue
        errors[f] = (eta - left) / left
        if prev is not None and f > 0.10:
            # a steady ETA falls by the time that passed: anything else is a swing
            moved = abs(eta - (prev[1] - (t - prev[0]))) / left
            swing = moved if swing is None else max(swing, moved)
        prev = (t, eta)
    return errors, swing, why_not


def main() -> None:
    # A run that stops short of its total (torchrun_ddp: a time budget) has no true time
    # left to the total to compare with (runs.eta_captures).
    names = runs.eta_captures()
    head = "".join(f"{int(f * 100):>7}%" for f in REPORTED)
    print(f"{'capture':<24}{head}   max swing   (ETA error vs true time left; + = late)")
    worst, within, total = [], 0, 0
    s_worst, s_within, s_total = [], 0, 0
    for name in names:
        errors, swing, why_not = measure(name)
        cells = "".join(f"{errors[f]:>+8.0%}" if errors.get(f) is not None else f"{'-':>8}" for f in REPORTED)
        sw = f"{swing:>9.0%}" if swing is not None else f"{'-':>9}"
        notes = [f"{int(f * 100)}%: {why_not[f]}" for f in REPORTED if f in why_not]
        print(f"{name:<24}{cells}   {sw}   {'; '.join(notes)}")
        for f in REPORTED:
            if errors.get(f) is not None:
                err = abs(errors[f])  # type: ignore[arg-type]
                total += 1
                within += err <= 0.15
                worst.append(err)
                if f not in why_not:
                    s_total += 1
                    s_within += err <= 0.15
                    s_worst.append(err)
    if total:
        print(f"\n{within}/{total} samples at 10/25/50/75 % within +-15 %; "
              f"median |error| {sorted(worst)[len(worst) // 2]:.0%}, worst {max(worst):.0%}")
    if s_total:
        print(f"{s_within}/{s_total} of them where the rule applies (the run steady, drift within "
              f"+-{runs.STEADY_DRIFT:.0%}, its pauses seen and recurring); median |error| "
              f"{sorted(s_worst)[len(s_worst) // 2]:.0%}, worst {max(s_worst):.0%}")


if __name__ == "__main__":
    main()
