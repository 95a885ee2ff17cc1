"""Progress bars drawn by tqdm, Rich and Keras: which one is training, and its step.

Why a module: bars carry most of the judgement in progress parsing. A log holds many
bars (dataset `map`, shard writing, evaluation, Lightning's sanity check) and only one
is the training loop; epoch bars count batches, not steps; a resumed Trainer's bar jumps
and then lies about its pace. `BarReader` is the part of `ProgressTracker` that knows
this; it is a mixin so that the per-redraw hot path stays plain method calls on one
object (a redraw costs one regex search and a few attribute updates).
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING

from sessions.progress import formats as pf
from sessions.progress.rate import PaceClock, derived_rate, jump_pace, printed_rate

RATE_SAMPLES = 5
"""Printed rates kept for the median (see `progress_rate.printed_rate`)."""

CLOCK_FLOOR_S = 0.5
"""What a bar's whole-second clock leaves out, on average: tqdm and Rich print elapsed
time cut to the second (`0:00:03` for 3.9 s), so a sum of epoch clocks gains half a
second per epoch back (8 epochs of 3.x s read 24 s for 28 s of work)."""


class Bar:
    """The training bar's lineage: one bar identity (description, total) over time."""

    __slots__ = ("fmt", "kind", "dkey", "total_s", "total", "epochs", "ep_base", "step", "updates", "rates",
                 "remaining", "clock_eta", "start", "jump", "jump_t", "last_el", "series",
                 "post", "first", "clock", "outer", "outer_at", "ep_now", "clock_base")

    def __init__(self, fmt: str, kind: str, dkey: str, total_s: str | None, total: int | None,
                 epochs: int | None):
        self.fmt = fmt  # the format reported
        self.kind = kind  # which matcher drew it: tqdm, rich, keras
        self.dkey = dkey  # its description, epoch number left out
        self.total_s = total_s  # its total as printed
        self.total = total  # bar total (per epoch for epoch bars)
        self.epochs = epochs  # number of epochs when the log says it
        self.ep_base: int | None = None
        self.step: int | None = None
        self.updates = 0
        self.rates: deque[tuple[str, str]] = deque(maxlen=RATE_SAMPLES)
        self.remaining: str | None = None
        self.clock_eta = True  # the bar's remaining time is the run's
        self.start: tuple[int, str | None] | None = None
        self.jump: tuple[int, str | None] | None = None
        self.jump_t: float | None = None
        self.last_el: str | None = None
        self.series: deque[tuple[float, int]] = deque(maxlen=64)
        self.post = ""
        self.first: tuple[float, int] | None = None  # (arrival time, step) when first seen moving
        self.clock: PaceClock | None = None  # its pace and pauses from `first` on
        self.outer: tuple[str, str | None] | None = None  # the loop this bar is nested in
        self.outer_at: dict[tuple[str, str | None], int] = {}  # outer loops' counts when this began
        self.ep_now: int | None = None  # the epoch an epoch bar is drawing now
        self.clock_base = 0.0  # seconds of the epochs before it, by its own clock

    def restart(self) -> None:
        """The same bar went back: a new run in the same log (a resume after a crash,
        appended to the tmux log). Its pace and resume jump are its own."""
        self.start = self.jump = self.jump_t = self.first = self.clock = None
        self.rates.clear()
        self.series.clear()

    def clock_pace_points(self) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
        """(first, last) `(elapsed s, step)` by the bar's own clock, for a whole file
        (no arrival times): from its second update (the first completed step, or the
        resume jump), else its first. An epoch bar's clock restarts at every epoch's
        first batch (and runs on through its validation): from the first epoch's start,
        the epochs before counting with their last reading (a non-TTY Rich log shows
        only each epoch's end)."""
        if self.start is None or self.step is None:
            return None, None
        t1 = pf.clock_seconds(self.last_el)
        if t1 is None:
            return None, None
        if self.ep_now is not None:  # each epoch's clock starts with its first batch
            return (0.0, 0), (self.clock_base + t1 + CLOCK_FLOOR_S, self.step)
        n0, e0 = self.jump if self.jump is not None else self.start
        t0 = pf.clock_seconds(e0) if e0 else 0.0
        if t0 is None:
            return None, None
        return (t0, n0), (t1, self.step)


class BarReader:
    """The bar half of `ProgressTracker` (see there for the state it shares)."""

    _bar: Bar | None
    _outer: dict[tuple[str, str | None], tuple[int, int]]
    _desc_info: dict[str, tuple[bool, str, int | None, int | None, str, int]]
    _keras_epoch: tuple[int, int] | None
    _epoch: float | None
    _post_fresh: bool

    if TYPE_CHECKING:  # defined by LineReader, the other half; declared for mypy only
        def _on_loss_line(self, line: str, now: float | None) -> None: ...

    def _describe(self, head: str) -> tuple[bool, str, int | None, int | None, str, int]:
        """What a bar's head (the text before its count, percentage stripped) says:
        (is training, identity without the epoch number, epoch, epoch of, format, epoch
        base). Cached: a log has few distinct heads, and this runs on every redraw."""
        info = self._desc_info.get(head)
        if info is None:
            if len(self._desc_info) > 256:
                self._desc_info.clear()
            desc = pf.bar_description(head)
            em = pf.EPOCH_DESC_RE.search(desc)
            if em is not None:  # Lightning `Epoch 3` (0-based) or a loop's `epoch 2/10`
                ep, ep_of = int(em[1]), int(em[2]) if em[2] else None
                key = desc[: em.start()] + "epoch" + desc[em.end():]
                info = (True, key, ep, ep_of, "lightning" if ep_of is None else "tqdm",
                        0 if ep_of is None or ep == 0 else 1)
            else:
                info = (pf.NON_TRAINING_DESC_RE.search(desc) is None, desc, None, None, "tqdm", 0)
            self._desc_info[head] = info
        return info

    def _on_tqdm(self, line: str, m: re.Match[str], now: float | None) -> None:
        n, total_s, _unit, elapsed, remaining, rate, rate_unit, post = m.groups()
        if rate_unit not in pf.TRAIN_RATE_UNITS:
            return  # dataset map (`examples/s`), downloads (`B/s`) ...
        if post and line[m.end() - 1] != "]":  # cut at the terminal's edge: its last value may be cut too
            k = post.rfind(",")
            post = post[:k] if k > 0 else ""
        start = m.start()
        i = line.find("%|", 0, start)
        head = line[:i].rstrip("0123456789. ") if i >= 0 else line[:start]
        info = self._desc_info.get(head) or self._describe(head)
        if not info[0]:
            return
        bar = self._bar
        if bar is None or bar.kind != "tqdm" or bar.dkey != info[1] or bar.total_s != total_s:
            total = int(total_s) if total_s and total_s != "?" else None
            adopted = self._adopt("tqdm", info[1], total_s, total, info[4], info[3], info[2] is not None)
            if adopted is None:  # a secondary bar: perhaps the outer loop of a nested pair
                self._note_outer(info[1], total_s, total, int(n))
                if bar is not None and bar.outer == (info[1], total_s) and bar.total:
                    # The outer loop advanced: all rounds before it are done, even where
                    # the inner bar (`leave=False`) was cleared before its last redraw.
                    done = int(n) * bar.total
                    if bar.step is not None and done > bar.step:
                        bar.step = done
                        bar.updates += 1
                return
            bar = adopted
        if info[2] is not None:
            self._bar_update(bar, int(n), info[2], info[5], rate, rate_unit, elapsed, remaining,
                             post, now)
            return
        if bar.outer is not None:
            self._bar_update(bar, int(n), self._outer[bar.outer][1], 0, rate, rate_unit, elapsed,
                             remaining, post, now)
            return
        # `_bar_update` inlined for a plain bar: this runs on most lines of a busy log
        step = int(n)
        bar.updates += 1
        if step != bar.step:
            if bar.step is not None and step < bar.step:
                if self._nests(bar):
                    self._bar_update(bar, step, self._outer[bar.outer][1], 0, rate,  # type: ignore[index]
                                     rate_unit, elapsed, remaining, post, now)
                    return
                bar.restart()
            if bar.start is None:
                bar.start = (step, elapsed)
            elif bar.jump is None:
                bar.jump, bar.jump_t = (step, elapsed), now
            if rate != "?":
                bar.rates.append((rate, rate_unit))
            bar.step = step
        bar.last_el = elapsed
        bar.remaining = remaining
        if post:
            bar.post = post
            self._post_fresh = True

    def _adopt(self, kind: str, dkey: str, total_s: str | None, total: int | None, fmt: str,
               epochs: int | None, epoch_bar: bool) -> Bar | None:
        """The training bar for this update, or None for a secondary bar.

        The first training-looking bar is adopted. Another one replaces it only when it
        is an epoch bar (Lightning, Keras), or has a larger total: an evaluation bar
        drawn mid-run (no description, a smaller total) must not take the step.
        """
        bar = self._bar
        if bar is not None and bar.kind == kind and bar.dkey == dkey and bar.total_s == total_s:
            return bar
        if bar is not None and not epoch_bar and (total is None or (bar.total is not None and total <= bar.total)):
            return None
        new = Bar(fmt, kind, dkey, total_s, total, epochs)
        if bar is not None and bar.kind == "tqdm" == kind and not epoch_bar:
            # The bar it replaces may be the loop around it (`for epoch in trange(3)`
            # around `for batch in tqdm(loader)`): say so from the start when its
            # description says epoch, else once this bar restarts as it advances.
            self._note_outer(bar.dkey, bar.total_s, bar.total, bar.step or 0)
            if bar.step == 0 and bar.total and "epoch" in bar.dkey.lower():
                new.outer, new.epochs = (bar.dkey, bar.total_s), bar.total
        new.outer_at = {k: v[1] for k, v in self._outer.items()}
        self._bar = new
        return new

    def _note_outer(self, dkey: str, total_s: str | None, total: int | None, n: int) -> None:
        """Remember a secondary training-looking bar's count: it may be an outer loop."""
        if total:
            if len(self._outer) > 16:
                self._outer.clear()
            self._outer[(dkey, total_s)] = (total, n)

    def _nests(self, bar: Bar) -> bool:
        """Whether the training bar, going back to 0, is an inner loop starting its next
        round: it had finished a round, and exactly one other bar advanced by one since
        it began (an evaluation bar jumps by its whole total; a crash and rerun
        restarts an unfinished bar). Then its count is within that loop's."""
        if bar.total is None or bar.step is None or bar.step < bar.total:
            return False
        for key, (total, n) in self._outer.items():
            if key != (bar.dkey, bar.total_s) and n == bar.outer_at.get(key, 0) + 1:
                bar.outer, bar.epochs = key, total
                bar.step = (n - 1) * bar.total + bar.step  # the rounds so far, in global steps
                return True
        return False

    def _bar_update(self, bar: Bar, n: int, ep: int | None, base: int, rate: str | None,
                    unit: str | None, elapsed: str | None, remaining: str | None, post: str,
                    now: float | None) -> None:
        if ep is not None:
            if bar.ep_base is None or ep < bar.ep_base:
                bar.ep_base = min(base, ep)
            step = (ep - bar.ep_base) * bar.total + n if bar.total else n
            if n == 0 and ep == bar.ep_now and bar.step is not None and step < bar.step:
                return  # Lightning resets its bar, drawn once more under the old epoch, before the next
            bar.clock_eta = False  # the bar's clock is this epoch's, not the run's
            if ep != bar.ep_now:
                if bar.ep_now is not None and bar.last_el and ep > bar.ep_now:
                    bar.clock_base += (pf.clock_seconds(bar.last_el) or 0.0) + CLOCK_FLOOR_S
                bar.ep_now = ep
            self._epoch = ep - bar.ep_base + (n / bar.total if bar.total else 0.0)
        else:
            step = n
        bar.updates += 1
        if step != bar.step:
            if bar.step is not None and step < bar.step:
                bar.restart()
            if bar.start is None:
                bar.start = (step, elapsed)
            elif bar.jump is None:
                bar.jump, bar.jump_t = (step, elapsed), now
            if rate and rate != "?":
                bar.rates.append((rate, unit or ""))
            bar.step = step
        bar.last_el = elapsed
        bar.remaining = remaining
        if post:
            bar.post = post
            self._post_fresh = True

    def _on_drawn_bar(self, line: str, now: float | None) -> None:
        """Rich (Lightning's RichProgressBar), Keras bars and Keras's `Epoch k/K`."""
        km = pf.KERAS_RE.match(line)
        if km is not None:
            self._on_keras(km, now)
            return
        em = pf.KERAS_EPOCH_RE.match(line)
        if em is not None:
            self._keras_epoch = (int(em["e"]), int(em["of"]))
            return
        rm = pf.RICH_RE.match(line)
        if rm is None:  # `Epoch [2/10], Step [100/600], Loss: 0.12` and other plain lines
            self._on_loss_line(line, now)
            return
        train, key, ep, ep_of, _fmt, _base = self._describe(rm["desc"].strip())
        if not train:
            return
        total = int(rm["total"]) if rm["total"] != "?" else None
        # Lightning's Rich bar says `Epoch k/K` with K = max_epochs - 1, from 0.
        epochs = ep_of + 1 if ep_of is not None else None
        bar = self._adopt("rich", key, rm["total"], total, "rich", epochs, ep is not None)
        if bar is not None:
            self._bar_update(bar, int(rm["n"]), ep, 0, rm["rate"], rm["rate_unit"],
                             rm["elapsed"], rm["remaining"], rm["postfix"], now)

    def _on_keras(self, km: re.Match[str], now: float | None) -> None:
        rest = km["rest"]
        per = pf.KERAS_PER_STEP_RE.search(rest) if "/step" in rest else None
        if per is None and "ETA" not in rest and " - " not in rest:
            return  # some other `a/b ...` line
        total = int(km["total"])
        e, of = self._keras_epoch or (None, None)
        bar = self._adopt("keras", "", km["total"], total, "keras", of, e is not None)
        if bar is None:
            return
        rate = unit = None
        if per is not None:
            secs = float(per["v"]) * {"s": 1.0, "ms": 1e-3}.get(per["u"], 1e-6)
            rate, unit = repr(secs), "s/it"
        self._bar_update(bar, int(km["n"]), e, 1, rate, unit, None, None, rest, now)

    def _bar_rate(self, bar: Bar) -> tuple[float | None, str | None, float | None]:
        """(rate, unit, eta from the bar's clock) for the training bar."""
        if bar.start is not None and bar.jump is not None and bar.step is not None:
            after = derived_rate(bar.series, since=bar.jump_t) if bar.jump_t is not None else None
            pace = jump_pace(
                (bar.start[0], pf.clock_seconds(bar.start[1]) if bar.start[1] else 0.0),
                (bar.jump[0], pf.clock_seconds(bar.jump[1]) if bar.jump[1] else None),
                (bar.step, pf.clock_seconds(bar.last_el)),
                after,
            )
            if pace is not None:
                return pace, "derived", None
        rate, unit = printed_rate(bar.rates)
        if rate is None:
            rate = derived_rate(bar.series)
            unit = "derived" if rate is not None else None
        eta = pf.clock_seconds(bar.remaining) if bar.clock_eta else None
        return rate, unit, eta
