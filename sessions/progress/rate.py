"""Step rates from what a log prints and from steps over time.

Why apart from the tracker: these are the judgement calls about pace (which printed
rate to believe, when a bar's own it/s lies, how to smooth steps over wall time), and
they are easiest to reason about, and to test, as small pure functions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from statistics import median

from sessions.progress.formats import rate_steps_per_s

SERIES_WINDOW = 12
"""How many (time, step) points a derived rate spans: enough to smooth the jitter of
log flushing, few enough to follow a real change of pace within a minute or two."""

PACE_MIN_SPAN_S = 1.0
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


PAUSE_FACTOR = 3.0
"""An interval between two step advances is a pause when the time it took beyond its
steps' usual pace is more than this many times that pace (and PAUSE_MIN_S): redraws
come every 0.1 s or more, a few steps each, and a checkpoint save or an evaluation stops
them for many step-times."""

PAUSE_MIN_S = 0.25
"""...and at least this long: shorter stops are the jitter of log flushing."""

PAUSE_BASIS = 5
"""How many ordinary intervals the usual pace needs before anything counts as a pause."""

PACE_WINDOW = 15
"""The usual per-step time is the median of this many recent ordinary intervals."""

MARKS_KEPT = 64
"""Points kept across the run to measure its later half from (one every 1/32 of it)."""

PAUSES_KEPT = 16
"""Pauses remembered for their period and length (a run's recurring pauses repeat)."""

RECENT_ADVANCES = 16
"""How many step advances `PaceClock.recent` spans: a rank's pace now, whatever the run's
length (a whole-run pace names a rank that halved its speed after 10 good hours only ~20 h
later). At the agent's 0.25 s follow interval that is a few seconds of a fast log; at a
line a minute, a quarter of an hour."""


class PaceClock:
    """A run's pace split into steps and recurring pauses, for an ETA one can plan by.

    Why: evaluations, checkpoint saves and epoch ends stop the steps for a while, again
    and again. An ETA from the recent pace forgets them and swings at every one; an ETA
    from the whole run's pace (`run_pace`) counts them in proportion, which is right on
    average but a whole pause off near each one. Here each pause is seen as such (an
    interval far longer than its steps' usual time), its excess is kept apart from the
    time per step, and once pauses recur at a steady step period the time left holds
    exactly the pauses still ahead: `eta` then falls by the time that passes, pause or
    not, instead of jumping after each one.

    Fed `(arrival time, step)` points as the step advances (one per log chunk that moved
    it); memory is bounded whatever the run's length.
    """

    __slots__ = ("first", "last", "_per", "_gaps", "pauses", "pause_s", "_marks", "_recent")

    def __init__(self, t: float, step: int) -> None:
        self.first = self.last = (t, step)
        self._per: deque[float] = deque(maxlen=PACE_WINDOW)  # recent seconds per step
        self._gaps: deque[float] = deque(maxlen=PACE_WINDOW)  # recent seconds between advances
        self.pauses: deque[tuple[int, int, float]] = deque(maxlen=PAUSES_KEPT)  # (step before, after, excess s)
        self.pause_s = 0.0  # every pause's excess, all run long
        # (time, step, pause_s then), spread over the run: where its later half began
        self._marks: deque[tuple[float, int, float]] = deque([(t, step, 0.0)], maxlen=MARKS_KEPT)
        # the latest advances (time, step, the pause excess of the interval ending there)
        self._recent: deque[tuple[float, int, float]] = deque([(t, step, 0.0)], maxlen=RECENT_ADVANCES + 1)

    def add(self, t: float, step: int) -> None:
        """The step reached `step` at time `t` (a point that does not advance is ignored)."""
        t0, s0 = self.last
        if step <= s0 or t <= t0:
            return
        ds, dt = step - s0, t - t0
        self.last = (t, step)
        if step - self._marks[-1][1] >= (step - self.first[1]) / (MARKS_KEPT // 2):
            self._marks.append((t0, s0, self.pause_s))
        if len(self._per) >= PAUSE_BASIS:
            usual = ds * median(self._per)
            excess = dt - usual
            if excess > PAUSE_MIN_S and excess > PAUSE_FACTOR * usual:
                self.pauses.append((s0, step, excess))
                self.pause_s += excess
                self._recent.append((t, step, excess))
                return
        self._per.append(dt / ds)
        self._gaps.append(dt)
        self._recent.append((t, step, 0.0))

    def recent(self) -> float | None:
        """Steps per second over the last RECENT_ADVANCES advances, their pauses left out:
        how fast the run goes now (a straggler is judged by it; `pace` stays the rate
        shown and the ETA's, which must count the pauses ahead). None until the window
        spans PACE_MIN_STEPS and PACE_MIN_SPAN_S of work.

        A pause is one long interval among ordinary ones (an evaluation, a save); when
        the latest PAUSE_BASIS intervals or more all read as pauses, the run itself went
        that slow (the usual time per step was learnt before it slowed past
        PAUSE_FACTOR), so they count as work: a rank turned five times slower is slow,
        not pausing for ever.
        """
        pts = self._recent
        (t0, s0, _), (t1, s1, _) = pts[0], pts[-1]
        excess = [e for _, _, e in pts][1:]
        trailing = len(excess)
        while trailing and excess[trailing - 1] > 0:
            trailing -= 1
        if len(excess) - trailing >= PAUSE_BASIS:
            excess = excess[:trailing]
        work = t1 - t0 - sum(excess)
        if s1 - s0 < PACE_MIN_STEPS or work < PACE_MIN_SPAN_S:
            return None
        return (s1 - s0) / work

    def _work(self) -> float:
        """Seconds per step outside pauses over the later half of the run seen: recent
        enough to follow a machine that slowed down or sped up, long enough to be calm."""
        t1, s1 = self.last
        half = s1 - (s1 - self.first[1]) / 2
        tm, sm, pm = next((m for m in self._marks if m[1] >= half), self._marks[-1])
        if s1 - sm < PACE_MIN_STEPS:
            tm, sm, pm = self._marks[0]
        return max(t1 - tm - (self.pause_s - pm), 0.0) / (s1 - sm)

    def pace(self, min_span_s: float = PACE_MIN_SPAN_S) -> float | None:
        """Steps per second from the first point to the latest, pauses included
        (`run_pace`): the rate to show."""
        return run_pace(self.first, self.last, min_span_s)

    def period(self) -> tuple[float, float] | None:
        """`(step period, step of the latest pause)` when the pauses seen recur at one
        step period (at least two of them, every gap between them consistent with one
        value given where each pause may lie between its two points), else None."""
        if len(self.pauses) < 2:
            return None
        lo, hi = 0.0, float("inf")
        for (a0, a1, _), (b0, b1, _) in zip(self.pauses, list(self.pauses)[1:]):
            # a pause lies after a step in [before, after - 1]
            lo, hi = max(lo, b0 - (a1 - 1)), min(hi, (b1 - 1) - a0)
        if lo > hi or hi < PACE_MIN_STEPS:
            return None
        last0, last1, _ = self.pauses[-1]
        return max((lo + hi) / 2, float(PACE_MIN_STEPS)), (last0 + last1 - 1) / 2

    def eta(self, total: int, now: float | None = None, min_span_s: float = PACE_MIN_SPAN_S) -> float | None:
        """Seconds until `total`: the steps left at the time per step outside pauses,
        plus the pauses still ahead (those of the period before `total` when they recur
        at one, else as many as the run so far had per step). None while `pace` is.

        With `now`, the time since the latest advance is taken off (the ETA counts down
        between log lines and through the pauses it foresaw), up to the usual wait for
        the next line plus those pauses: an unforeseen stop holds the ETA, it does not
        eat it.
        """
        (_, s0), (t1, s1) = self.first, self.last
        if run_pace(self.first, self.last, min_span_s) is None:
            return None
        done, left = s1 - s0, max(total - s1, 0)
        work = self._work()
        per = self.period()
        if per is None:
            pauses = left * self.pause_s / done
        else:
            every, at = per
            # pauses after steps `at + k * every` (k >= 1) from the current step on, before the last
            first_k = max(1, math.ceil((s1 - at) / every))
            last_k = math.ceil((total - at) / every) - 1
            pauses = max(0, last_k - first_k + 1) * median(p[2] for p in self.pauses)
        est = left * work + pauses
        if now is not None and now > t1 and left:
            # counts down through the usual wait for the next line and the pauses foreseen
            gap = median(self._gaps) if self._gaps else 0.0
            est -= min(now - t1, gap + pauses)
        return est
