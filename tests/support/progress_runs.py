"""The matrix of real runs in tests/data/runs/: captures, their ground truth, replays.

Shared by `tests/test_progress_runs.py` (what `parse_log` reads against the truth) and
`bench/eta_replay.py` (how the ETA follows a run fed at its real arrival times), so that
both judge the same figures the same way.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from sessions.progress.tracker import Progress, ProgressTracker, parse_log

RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"
KINDS = ("tty", "file")


@dataclass(frozen=True)
class Truth:
    """What the run recorded from inside itself (see tests/data/runs/make_runs.py)."""

    total: int | None
    final_step: int
    logged_loss: float | None
    steps: list[list]  # [step, seconds since start, loss]
    ranks: dict | None
    slowest_rank: int | None

    @property
    def mean_rate(self) -> float:
        """Steps per second over the whole run, pauses included (first to last step)."""
        (s0, t0, _), (s1, t1, _) = self.steps[0], self.steps[-1]
        return (s1 - s0) / (t1 - t0)

    @property
    def end_t(self) -> float:
        return self.steps[-1][1]


def captures() -> list[tuple[str, str]]:
    """(scenario, kind) for every capture with a ground truth, in name order."""
    out = []
    for path in sorted(RUNS.glob("*.truth.json")):
        name = path.name[: -len(".truth.json")]
        doc = json.loads(path.read_text())
        out += [(name, kind) for kind in KINDS if doc.get(kind) and (RUNS / f"{name}.{kind}.log").exists()]
    return out


@functools.lru_cache(maxsize=None)
def truth(name: str, kind: str) -> Truth:
    doc = json.loads((RUNS / f"{name}.truth.json").read_text())[kind]
    return Truth(doc["total"], doc["final_step"], doc["logged_loss"], doc["steps"], doc.get("ranks"),
                 doc.get("slowest_rank"))


def text(name: str, kind: str) -> str:
    return (RUNS / f"{name}.{kind}.log").read_bytes().decode("utf-8", errors="replace")


def replay(name: str, fractions: tuple[float, ...]) -> list[tuple[float, float, Progress]]:
    """Feed the terminal capture chunk by chunk at its recorded arrival times, as the
    agent would, and read the tracker (at that moment: `progress(now)`) when the run's
    true step first reaches each fraction of its total.

    Returns:
        (fraction, seconds since start, reading) per fraction reached.
    """
    data = (RUNS / f"{name}.tty.log").read_bytes()
    times = json.loads((RUNS / f"{name}.tty.times.json").read_text())
    tr = truth(name, "tty")
    total = tr.total or tr.final_step
    marks = []
    for f in fractions:
        hit = next((t for s, t, _ in tr.steps if s >= f * total), None)
        if hit is not None:
            marks.append((f, hit))
    tracker = ProgressTracker()
    out: list[tuple[float, float, Progress]] = []
    start, mi = 0, 0
    decode = __import__("codecs").getincrementaldecoder("utf-8")("replace")
    for t, end in times:
        while mi < len(marks) and marks[mi][1] < t:
            out.append((marks[mi][0], marks[mi][1], tracker.progress(marks[mi][1])))
            mi += 1
        tracker.feed(decode.decode(data[start:end]), now=t)
        start = end
    out += [(f, t, tracker.progress(t)) for f, t in marks[mi:]]
    return out


def eta_captures() -> list[str]:
    """Terminal captures an ETA can be judged on: arrival times recorded, a run that went
    all the way to its total (one cut short by a time budget has no true end), and a log
    that says the total (else the ETA is the configured `total_steps:`'s, not the log's)."""
    out = []
    for name, kind in captures():
        if kind == "tty" and (RUNS / f"{name}.tty.times.json").exists():
            tr = truth(name, "tty")
            if tr.total is not None and tr.final_step >= tr.total and parse_log(text(name, "tty")).total:
                out.append(name)
    return out


def eta_samples(name: str, fractions: tuple[float, ...]) -> list[tuple[float, float, float | None, float]]:
    """The ETA read during a replay (see `replay`) against the truth.

    Returns:
        (fraction, seconds since start, ETA read then or None, true seconds left) per
        fraction of the total the run reached.
    """
    tr = truth(name, "tty")
    return [(f, t, p.eta_s, tr.end_t - t) for f, t, p in replay(name, fractions)]


PAUSE_TIMES = 3.0
"""In the truth, a step that took this many times the run's median step is a pause."""

PAUSE_MIN_S = 0.25
"""...and at least this long."""


@functools.lru_cache(maxsize=None)
def _step_times(name: str) -> tuple[list[tuple[float, float, float]], float]:
    """([(seconds per step, seconds taken, when it ended)], the median seconds per step)."""
    st = truth(name, "tty").steps
    per = [((b[1] - a[1]) / (b[0] - a[0]), b[1] - a[1], b[1]) for a, b in zip(st, st[1:]) if b[0] > a[0]]
    return per, (sorted(p[0] for p in per)[len(per) // 2] if per else 0.0)


def _is_pause(per_step: float, took: float, usual: float) -> bool:
    return per_step > PAUSE_TIMES * usual and took > PAUSE_MIN_S


def drift_at(name: str, t: float) -> float | None:
    """How the run's own pace changed at `t`, from its truth alone: the mean time of a
    step (pauses left out) after `t` over the mean before it; 1.0 is a steady run.

    Why: no ETA can foresee a machine that gets slower or faster (the tiny runs of the
    matrix were captured on a shared 2-core machine). The ETA rule holds for steady runs,
    and this says, independently of any parser, which points of a capture are steady.
    """
    per, usual = _step_times(name)
    work = [(d, at) for d, took, at in per if not _is_pause(d, took, usual)]
    before = [d for d, at in work if at <= t]
    after = [d for d, at in work if at > t]
    if not before or not after:
        return None
    return (sum(after) / len(after)) / (sum(before) / len(before))


def pauses_seen(name: str, t: float) -> tuple[int, int, float | None]:
    """(pauses before `t`, pauses after it, pause seconds per step after over before)
    in the run's truth: steps that took more than PAUSE_TIMES the median step and
    PAUSE_MIN_S. A pause is only foreseeable once one like it has been seen, and only
    as often as the run had them so far (1.0: as often; None: none before or after)."""
    per, usual = _step_times(name)
    pauses = [(took, at) for d, took, at in per if _is_pause(d, took, usual)]
    before = [took for took, at in pauses if at <= t]
    after = [took for took, at in pauses if at > t]
    n_before = sum(1 for _, _, at in per if at <= t)
    n_after = len(per) - n_before
    ratio = None
    if before and after and n_before and n_after:
        ratio = (sum(after) / n_after) / (sum(before) / n_before)
    return len(before), len(after), ratio


PAUSE_RATIO = 2.0
"""Pauses count as recurring at `t` when their seconds per step after it are within this
factor of those before it (stalls of a loaded machine early in a run are not)."""


def judged(name: str, t: float) -> str | None:
    """Why the ETA rule does not apply at `t`, from the run's truth alone, or None when
    it does: the run's steps changed pace there (`drift_at` beyond STEADY_DRIFT), pauses
    lie ahead and none was seen yet, or they do not recur as often as before."""
    d = drift_at(name, t)
    before, after, ratio = pauses_seen(name, t)
    if d is None or abs(d - 1) > STEADY_DRIFT:
        return f"drift {d:.2f}" if d is not None else "no steps"
    if after and not before:
        return "no pause yet"
    if ratio is not None and not 1 / PAUSE_RATIO <= ratio <= PAUSE_RATIO:
        return f"pauses x{ratio:.1f}"
    return None


STEADY_DRIFT = 0.10
"""A point of a run is steady when its `drift_at` is within this of 1.0."""
