"""Step rates from what a log prints and from steps over time.

Why apart from the tracker: these are the judgement calls about pace (which printed
rate to believe, when a bar's own it/s lies, how to smooth steps over wall time), and
they are easiest to reason about, and to test, as small pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import median

from sessions.progress.formats import rate_steps_per_s

SERIES_WINDOW = 12
"""How many (time, step) points a derived rate spans: enough to smooth the jitter of
log flushing, few enough to follow a real change of pace within a minute or two."""

PACE_MIN_SPAN_S = 2.0
"""A run's pace (`run_pace`) by arrival times needs at least this much time between its
two points: tqdm redraws at most every 0.1 s, so the pace is then within 5 %; until
then the ETA is the bar's own."""

PACE_MIN_STEPS = 5
"""...and at least this many steps between them."""

CLOCK_MIN_SPAN_S = 8.0
"""The span `run_pace` needs on a bar's own whole-second clock (a file has no arrival
times): one second off is then at most 12 %."""

JUMP_FACTOR = 3.0
"""A bar's first move counts as a resume jump when it went this many times faster than
the pace that follows it. A fresh bar's first update is never faster than its pace
(tqdm shows it after `mininterval`), a resumed one jumps by hundreds of steps at once."""


def printed_rate(samples: Iterable[tuple[str, str]]) -> tuple[float | None, str | None]:
    """The robust recent pace from a bar's own printed rates.

    Args:
        samples: the last few `(rate text, unit)` pairs, oldest first, one per step
            advance (a redraw at the same step is not a new sample).

    Returns:
        `(steps per second, unit)`: the median, so that one outlier update (the last
        one after a final save or evaluation, the first one after compilation) does
        not decide it; the unit is how the latest sample was printed (`it/s`/`s/it`).
    """
    values: list[float] = []
    unit = None
    for text, u in samples:
        v = rate_steps_per_s(text, u)
        if v is not None:
            values.append(v)
            unit = "s/it" if u.startswith("s/") else "it/s"
    if not values:
        return None, None
    return median(values), unit


def derived_rate(series: Sequence[tuple[float, int]], since: float | None = None) -> float | None:
    """Steps per second from `(time, step)` points, smoothed over the last window.

    Args:
        series: points oldest first, one per observed step change.
        since: ignore points before this time (a resume jump happened then).

    Returns:
        (last step - first step) / (last time - first time) over at most
        SERIES_WINDOW points, or None without two points that advance in time and step.
    """
    pts = [p for p in series if since is None or p[0] >= since][-SERIES_WINDOW:]
    if len(pts) < 2:
        return None
    (t0, s0), (t1, s1) = pts[0], pts[-1]
    if t1 <= t0 or s1 <= s0:
        return None
    return (s1 - s0) / (t1 - t0)


def jump_pace(
    start: tuple[int, float | None],
    jump: tuple[int, float | None],
    last: tuple[int, float | None],
    after_rate: float | None = None,
) -> float | None:
    """The pace after a resumed bar's jump, when its first move was a jump.

    A resumed Hugging Face run's bar starts at 0 and moves to the resume step in one
    update; tqdm's it/s then counts the skipped steps for a long while. The real pace
    is the steps after the jump over the time after it.

    Args:
        start: `(step, elapsed s)` of the bar's first update.
        jump: `(step, elapsed s)` of its first advancing update.
        last: `(step, elapsed s)` of its latest update.
        after_rate: the pace after the jump measured by arrival times, if known
            (better than the bar's whole-second clock).

    Returns:
        The pace after the jump when the first move was at least JUMP_FACTOR times
        faster than it (a resume), else None (a normal bar: trust its printed rate).
    """
    (n0, e0), (nj, ej), (nl, el) = start, jump, last
    if e0 is None or ej is None or nj - n0 < 2:
        return None
    after = after_rate
    if after is None and el is not None and el - ej >= 1 and nl > nj:
        after = (nl - nj) / (el - ej)
    if after is None or after <= 0:
        return None
    first = (nj - n0) / max(ej - e0, 0.5)
    return after if first > JUMP_FACTOR * after else None


def run_pace(first: tuple[float, int] | None, last: tuple[float, int] | None,
             min_span_s: float = PACE_MIN_SPAN_S) -> float | None:
    """Steps per second from the first step seen to the latest: the pace with every
    pause in it.

    Why this and not the recent pace for an ETA: evaluations, checkpoint saves and epoch
    ends recur through a run, so the time left holds as many of them, in proportion, as
    the time behind. A recent-window pace (or tqdm's own smoothed remaining time) falls
    at every pause and climbs after it, so an ETA built on it swings by the length of
    a pause at every sample, while this one barely moves.

    Args:
        first: `(seconds, step)` when the run (or its resumed part) was first seen.
        last: `(seconds, step)` of its latest advance.

    Returns:
        Steps per second, or None while the two are less than PACE_MIN_SPAN_S or
        PACE_MIN_STEPS apart (`min_span_s`: CLOCK_MIN_SPAN_S for whole-second clocks).
    """
    if first is None or last is None:
        return None
    (t0, s0), (t1, s1) = first, last
    if t1 - t0 < min_span_s or s1 - s0 < PACE_MIN_STEPS:
        return None
    return (s1 - s0) / (t1 - t0)
