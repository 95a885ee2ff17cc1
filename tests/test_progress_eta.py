"""An ETA one can plan by (issue 14, item 6): pauses that recur are counted, not swung with.

Two levels: `PaceClock` on made-up step times whose true end is known exactly, and the
tracker replayed on the real runs of tests/data/runs/ at their recorded arrival times
(deterministic: the captures' own timestamps, never the wall clock), against the time
each run really took. The rule is for steady runs whose pauses can be foreseen: a point
where the run itself changed pace, or where pauses lie ahead and none was seen yet, is
left out (the truth alone says so, `progress_runs.judged`): no ETA foresees a machine
that gets slower, or a first evaluation.
"""

from __future__ import annotations

import pytest

from sessions.progress.rate import PAUSES_KEPT, PaceClock
from tests.support import progress_runs as runs


def _run(total: int, step_s: float, pause_every: int, pause_s: float) -> list[tuple[float, int]]:
    """(time step n completed, n) for a run that pauses after every `pause_every` steps."""
    t, out = 0.0, []
    for n in range(1, total + 1):
        t += step_s
        out.append((t, n))
        if n % pause_every == 0 and n < total:
            t += pause_s
    return out


def test_recurring_pauses_are_counted_ahead_and_the_eta_falls_with_time():
    points = _run(400, 0.5, 40, 5.0)
    end = points[-1][0]
    clock = PaceClock(*points[0])
    prev = None
    for t, n in points[1:]:
        clock.add(t, n)
        if n < 100:
            continue
        eta = clock.eta(400)
        assert eta == pytest.approx(end - t, rel=0.02), n
        if prev is not None:  # steady: falls by the time that passed, across pauses too
            assert eta == pytest.approx(prev[1] - (t - prev[0]), abs=0.05 * (end - t) + 1e-9), n
        prev = (t, eta)


def test_before_the_period_is_known_pauses_count_in_proportion():
    points = _run(400, 0.5, 40, 5.0)
    clock = PaceClock(*points[0])
    for t, n in points[1:60]:  # one pause seen (after step 40), no period yet
        clock.add(t, n)
    t, n = clock.last
    assert len(clock.pauses) == 1 and clock.period() is None
    # the whole run's pace, pauses in proportion
    assert clock.eta(400) == pytest.approx((400 - n) * (t - points[0][0]) / (n - 1), rel=1e-6)


def test_irregular_pauses_are_not_taken_for_a_period():
    clock = PaceClock(0.0, 0)
    t = 0.0
    for n in range(1, 200):
        t += 0.5 + (4.0 if n in (20, 33, 90, 97) else 0.0)
        clock.add(t, n)
    assert len(clock.pauses) == 4 and clock.period() is None


def test_the_eta_counts_down_between_lines_but_not_below_the_steps_left():
    points = _run(400, 0.5, 40, 5.0)
    clock = PaceClock(*points[0])
    for t, n in points[1:200]:
        clock.add(t, n)
    t, n = clock.last
    at_line = clock.eta(400)
    assert clock.eta(400, now=t + 0.3) == pytest.approx(at_line - 0.3)
    # far past every pause foreseen: the steps left still take their time
    assert clock.eta(400, now=t + 1e6) == pytest.approx((400 - n) * 0.5, rel=0.01)


def test_a_followed_log_reads_an_eta_that_counts_down_at_the_time_asked():
    from sessions.progress.tracker import ProgressTracker

    tracker = ProgressTracker()
    for n in range(1, 41):  # a step line every 2 s, 100 steps in all
        tracker.feed(f"step {n}/100 | loss 0.5\n", now=2.0 * n)
    at_line = tracker.progress().eta_s
    assert at_line == pytest.approx(120.0)
    assert tracker.progress(now=81.5).eta_s == pytest.approx(118.5)  # 1.5 s after the last line
    assert tracker.progress(now=500.0).eta_s == pytest.approx(118.0)  # a stop: held, not eaten


def test_memory_is_bounded_on_a_long_run():
    clock = PaceClock(0.0, 0)
    for t, n in _run(20000, 0.1, 10, 2.0):
        clock.add(t, n)
    assert len(clock.pauses) == PAUSES_KEPT and clock.period() is not None


# ------------------------------------------------------------------ the real runs

ETA_POINTS = (0.25, 0.50, 0.75)
EXPECTED_STEADY = {"hf_ckpt40", "accelerate_ckpt", "lightning_val_epochs"}
"""The long runs of the matrix made for this rule (recurring checkpoint saves,
evaluations, epoch-end validation); the test fails if they are missing or unsteady."""


def _steady_points(name: str) -> list[tuple[float, float, float | None, float]]:
    return [s for s in runs.eta_samples(name, ETA_POINTS) if runs.judged(name, s[1]) is None]


NO_STEP_WHILE_RUNNING = {"hf_notqdm"}
"""`disable_tqdm=True`: the log says no step until the run's final summary, so it has no
ETA to judge while running (the agent's trainer_state.json reading gives one)."""


@pytest.mark.parametrize("name", sorted(set(runs.eta_captures()) - NO_STEP_WHILE_RUNNING))
def test_eta_within_15_percent_of_the_true_time_left(name):
    for f, _t, eta, left in _steady_points(name):
        assert eta is not None, f
        assert abs(eta - left) / left <= 0.15, (f, eta, left)


def test_the_long_runs_are_there_and_steady():
    names = set(runs.eta_captures())
    assert EXPECTED_STEADY <= names
    for name in EXPECTED_STEADY:
        assert len(_steady_points(name)) == len(ETA_POINTS), name


SWING_POINTS = tuple(round(0.10 + 0.05 * i, 2) for i in range(17))
"""Every 5 % from 10 % to 90 % of the run (past that the time left is seconds, and one
second is a large share of it)."""


@pytest.mark.parametrize("name", sorted(EXPECTED_STEADY))
def test_eta_does_not_swing_between_samples_of_a_steady_run(name):
    # a steady ETA falls by the time that passed, pause or not; it moves by no more than
    # 15 % of the true time left beyond that
    prev = None
    for f, t, eta, left in runs.eta_samples(name, SWING_POINTS):
        if eta is None or runs.judged(name, t) is not None:
            prev = None
            continue
        if prev is not None:
            assert abs(eta - (prev[1] - (t - prev[0]))) / left <= 0.15, (f, eta, prev, left)
        prev = (t, eta)
