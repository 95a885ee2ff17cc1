"""The matrix of real runs in tests/data/runs/: captures, their ground truth, replays.

Shared by `tests/test_progress_runs.py` (what `parse_log` reads against the truth) and
`bench/eta_replay.py` (how the ETA follows a run fed at its real arrival times), so that
both judge the same figures the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sessions.progress.tracker import Progress, ProgressTracker

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


def truth(name: str, kind: str) -> Truth:
    doc = json.loads((RUNS / f"{name}.truth.json").read_text())[kind]
    return Truth(doc["total"], doc["final_step"], doc["logged_loss"], doc["steps"], doc.get("ranks"),
                 doc.get("slowest_rank"))


def text(name: str, kind: str) -> str:
    return (RUNS / f"{name}.{kind}.log").read_bytes().decode("utf-8", errors="replace")


def replay(name: str, fractions: tuple[float, ...]) -> list[tuple[float, float, Progress]]:
    """Feed the terminal capture chunk by chunk at its recorded arrival times, as the
    agent would, and read the tracker when the run's true step first reaches each
    fraction of its total.

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
            out.append((marks[mi][0], marks[mi][1], tracker.progress()))
            mi += 1
        tracker.feed(decode.decode(data[start:end]), now=t)
        start = end
    out += [(f, t, tracker.progress()) for f, t in marks[mi:]]
    return out
