"""Training progress from log text: step, total, rate, loss, lr, tokens/s, epoch, ETA.

One stateful tracker and pure helpers, no I/O (but `parse_file`, which only reads):
the agent streams log deltas and the tracker is fed them as they arrive; `gpuctl
progress FILE` parses a whole file.

Real logs are messier than their formats, and that is what the state here is for:

* tqdm redraws a bar with `\\r`; a chunk may end mid-line; the bar's latest state is
  often the unterminated tail of the log.
* Several bars share a log: dataset `map`, shard writing, evaluation and validation
  loops. Only one is the training loop; the others never set the step.
* Lightning's and Keras's bars count batches within an epoch: the global step is
  epochs done x batches per epoch + batch.
* A resumed run's bar jumps from 0 to the resume step, and its printed it/s counts the
  skipped steps: the pace comes from step deltas over time instead.
* Some loops print 0-based steps (nanoGPT's `iter 0` is one completed step).
* Plain `step N | loss X` lines may print no rate: it is derived from steps over the
  chunks' arrival times (or the lines' own timestamps, for a whole file).

Format families: *bars* (tqdm, Lightning's tqdm and Rich bars, Keras) and *lines*
(torchrun-style key/values, nanoGPT, DeepSpeed, Megatron, JSON lines). When a log has
both, the family with more step updates sets the step; a user pattern always wins.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any

from sessions.progress import formats as pf
from sessions.progress import ranks as progress_ranks
from sessions.progress.bars import RATE_SAMPLES, Bar, BarReader
from sessions.progress.lines import LineReader
from sessions.progress.rate import (
    CLOCK_MIN_SPAN_S,
    PaceClock,
    derived_rate,
    printed_rate,
    run_pace,
)

PARSE_CHUNK = 1 << 16
"""`parse_log` and `parse_file` feed a file in pieces of this many characters, as the
agent would: small pieces stay in the CPU cache, and a big file is never copied whole."""

LINE_HEAD = 256
"""How much of the line under way is kept to find a rank prefix cut across chunks."""

RANK_SCAN_LIMIT = 8 << 20
"""Rank prefixes are looked for in this many characters of a log, then no longer: a
launcher prefixes its workers' lines from their first, and the four substring scans per
chunk were the largest cost this added to a long log (bench/parse_rate.py)."""

MAX_PENDING = 65536
"""An unterminated tail longer than this is dropped: a log that never ends a line is
not progress output, and must not grow memory without bound."""


@dataclass(frozen=True)
class Progress:
    """What a log says about a training run; None where it says nothing.

    Attributes:
        format: which output it was read from (`tqdm`, `hf_trainer`, `lightning`,
            `rich`, `keras`, `torchrun`, `nanogpt`, `deepspeed`, `megatron`,
            `jsonl`, `user`), or None.
        step: the last completed optimizer step (global, across epochs).
        total: the total number of steps, when the log tells it.
        rate: steps per second, always (a log that prints `s/it` is converted).
        rate_unit: how the log expressed the rate: `it/s`, `s/it`, or `derived`
            (computed from steps over time).
        loss: the most recently logged training loss.
        lr: the most recently logged learning rate.
        tokens_per_s: the most recently logged token throughput.
        epoch: epochs done, fractional where the log allows (`2.45`).
        eta_s: seconds to `total`, from the bar's remaining time or (total-step)/rate.
        slowest_rank: for a log whose lines carry rank prefixes (torchrun `--tee`,
            SkyPilot, OpenMPI), the rank whose reading this is: the one furthest
            behind, since a job ends when its last rank does. None otherwise.
        ranks: each rank's own reading, `(rank, Progress)` in rank order, or None.
        recent_rate: steps per second over the latest few advances, pauses left out
            (`PaceClock.recent`), when the log is followed live: how fast it goes now,
            what a job's straggler is judged by, where `rate` is the whole run's pace
            (the ETA's). None for a whole file.
    """

    format: str | None = None
    step: int | None = None
    total: int | None = None
    rate: float | None = None
    rate_unit: str | None = None
    loss: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    epoch: float | None = None
    eta_s: float | None = None
    slowest_rank: str | None = None
    ranks: tuple[tuple[str, Progress], ...] | None = None
    recent_rate: float | None = None

    def __post_init__(self) -> None:
        # `Progress(**p.to_json())` must give `p` back (readers merge readings that
        # way): `ranks` comes back from JSON as `{rank: reading}`.
        if isinstance(self.ranks, dict):
            object.__setattr__(self, "ranks", tuple(
                (str(r), Progress(**v) if isinstance(v, dict) else v) for r, v in self.ranks.items()))

    @property
    def rate_now(self) -> float | None:
        """The rate a slowdown is judged by (a straggler, a `slow` run): the recent one,
        else (a reading not followed live, a window not yet filled) the run's. After
        hours at one speed the run's average barely moves when the speed halves."""
        return self.recent_rate if self.recent_rate is not None else self.rate

    def to_json(self) -> dict[str, Any]:
        """The `gpuctl progress --json` object: one key per field, None as null;
        `ranks` as `{rank: reading}` (each reading without ranks of its own)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.ranks is not None:
            doc["ranks"] = {r: p.to_json() for r, p in self.ranks}
        return doc


class ProgressTracker(BarReader, LineReader):
    """Incremental progress parser for one session's log.

    Args:
        user_pattern: the session's `progress` regex from config, with named groups
            among `step`, `total`, `loss`, `rate` (steps/s). A line it matches is read
            with it alone, ahead of the built-in formats.

    Feed it log deltas in order with `feed(text, now)`; ask `progress()` at any time.
    """

    def __init__(self, user_pattern: str | None = None, *, split_ranks: bool = True) -> None:
        self._user_pattern = user_pattern
        self._user = re.compile(user_pattern) if user_pattern else None
        # per-rank output (progress_ranks): None until a line with a rank prefix shows
        self._split_ranks = split_ranks
        self._ranks: dict[str, ProgressTracker] | None = None
        self._rank_buf = ""
        self._rank_cur: str | None = None
        self._rank_open = False  # a line is under way and `_rank_cur` is its rank
        self._line_head = ""  # the start of the line under way, until ranks are found
        self._rank_scan = 0  # characters looked through for a rank prefix
        self._line_whole = True  # ... and whether that is all of it so far
        self._pending = ""
        self._bar: Bar | None = None
        self._desc_info: dict[str, tuple[bool, str, int | None, int | None, str, int]] = {}
        self._keras_epoch: tuple[int, int] | None = None
        self._outer: dict[tuple[str, str | None], tuple[int, int]] = {}  # (desc, total) -> (total, n)
        # the line family (key/value, JSON lines) and the user pattern
        self._k_fmt: str | None = None
        self._k_step: int | None = None
        self._k_total: int | None = None
        self._k_zero: bool | None = None
        self._k_ep_base: int | None = None
        self._k_updates = 0
        self._k_rates: deque[tuple[str, str]] = deque(maxlen=RATE_SAMPLES)
        self._k_series: deque[tuple[float, int]] = deque(maxlen=64)
        self._k_clock: PaceClock | None = None  # pace and pauses from the first step seen
        self._u_step: int | None = None
        self._u_total: int | None = None
        self._u_rate: float | None = None
        # metrics, latest wins; a bar's postfix is parsed only when asked (`_post_fresh`)
        self._loss: float | None = None
        self._lr: float | None = None
        self._tokens: float | None = None
        self._epoch: float | None = None
        self._post_fresh = False
        self._hf = False
        self._rate_hint: float | None = None
        self._summary_steps: int | None = None
        self._advanced_at: float | None = None
        self._chunk_step: int | None = None

    # ------------------------------------------------------------------ feeding

    def feed(self, text: str, now: float) -> None:
        """Take the next delta of the log.

        Args:
            text: the new text, as it arrived (may end mid-line; `\\r` separates bar
                redraws; ANSI codes are dropped here).
            now: wall-clock seconds when it arrived: the clock for rates derived from
                step deltas, resumed bars' pace and `stalled`.
        """
        self._feed(text, now)

    def _feed(self, text: str, now: float | None) -> None:
        if self._ranks is None and self._split_ranks and text and self._rank_scan < RANK_SCAN_LIMIT:
            self._rank_scan += len(text)
            # The start of the line under way is kept (a prefix may arrive cut in two);
            # once a line opens with a rank prefix, that line is read again from its
            # start by its rank, and every later line is routed.
            det = self._line_head + text if self._line_head else text
            if any(m in det for m in progress_ranks.RANK_MARKS) and self._starts_ranked(det):
                self._ranks = {}
                if self._line_whole:
                    self._pending, text = "", det
                else:  # a very long line under way: its rest goes where its prefix says
                    self._rank_cur, self._rank_open = progress_ranks.rank_of(self._line_head)[0], True
            else:
                j = text.rfind("\n")
                tail = text[j + 1:] if j >= 0 else det
                self._line_whole = len(tail) <= LINE_HEAD
                self._line_head = tail[:LINE_HEAD]
        if self._ranks is not None:
            text = self._route(text, now)
        self._feed_plain(text, now)

    def _starts_ranked(self, text: str) -> bool:
        """Whether a line of `text` opens with a rank prefix (a mark inside a line,
        `world_size=2, rank=0` in a config dump, is not one)."""
        for mark in progress_ranks.RANK_MARKS:
            i, seen = text.find(mark), 0
            while i >= 0 and seen < 8:
                start = text.rfind("\n", 0, i) + 1
                if progress_ranks.rank_of(text[start:start + 200])[0] is not None:
                    return True
                i, seen = text.find(mark, i + 1), seen + 1
        return False

    def _route(self, text: str, now: float | None) -> str:
        """Send each rank's lines to its own tracker; return the text of no rank.

        A line's rank is decided at its start (the prefix) and holds until its `\n`,
        across chunks; a line start too short to tell waits for more text.
        """
        assert self._ranks is not None
        buf = self._rank_buf + text if self._rank_buf else text
        self._rank_buf = ""
        plain: list[str] = []
        per: dict[str | None, list[str]] = {}
        pos, n = 0, len(buf)
        while pos < n:
            if not self._rank_open:
                nl = buf.find("\n", pos)
                head = buf[pos:nl if nl >= 0 else n]
                if head[:1] in "[(\x1b":
                    if nl < 0 and len(head) < 64:
                        self._rank_buf = head  # `[ran`: wait for the rest of the prefix
                        break
                    rank, skip = progress_ranks.rank_of(head)
                    if rank is not None and rank not in self._ranks and len(self._ranks) >= progress_ranks.MAX_RANKS:
                        rank, skip = None, 0
                else:
                    rank, skip = None, 0
                self._rank_cur, self._rank_open = rank, True
                pos += skip
            nl = buf.find("\n", pos)
            stop = nl + 1 if nl >= 0 else n
            (plain if self._rank_cur is None else per.setdefault(self._rank_cur, [])).append(buf[pos:stop])
            pos = stop
            if nl >= 0:
                self._rank_open = False
        for rank, parts in per.items():
            tracker = self._ranks.get(rank)  # type: ignore[arg-type]
            if tracker is None:
                tracker = self._ranks[rank] = ProgressTracker(self._user_pattern, split_ranks=False)  # type: ignore[index]
            tracker._feed("".join(parts), now)
        return "".join(plain)

    def _feed_plain(self, text: str, now: float | None) -> None:
        data = self._pending + text if self._pending else text
        if not data:
            return
        lines = data.splitlines()
        if lines and data[-1] not in "\r\n":
            pending = lines.pop()
            self._pending = pending[-MAX_PENDING:]
        else:
            pending = self._pending = ""
        if "\x1b" in data:
            # Escapes go line by line, only from lines that have one: a log of plain
            # lines with a coloured one here and there pays for those alone (no escape
            # sequence holds a line break, so splitting first cuts none in two).
            strip = pf.strip_controls
            lines = [strip(line) if "\x1b" in line else line for line in lines]
            pending = strip(pending)
        self._lines(lines, now)
        if pending:
            # The newest bar state usually sits unterminated until the next redraw;
            # a tqdm match needs its closing `]`, so a half-written one is not read.
            m = pf.TQDM_RE.search(pending)
            if m is not None and m.group()[-1] == "]" and (self._user is None or not self._user.search(pending)):
                self._on_tqdm(pending, m, now)
        if now is not None:
            self._tick(now)

    def _tick(self, now: float) -> None:
        """Chunk bookkeeping: when the step last moved, and points for derived rates."""
        step = self._step_now()
        if step is None or step == self._chunk_step:
            return
        self._chunk_step = step
        self._advanced_at = now
        fam = self._family()
        if fam == "bar":
            bar = self._bar
            assert bar is not None
            bar.series.append((now, step))
            if bar.first is None or bar.first[1] == bar.start[0] or (  # type: ignore[index]
                    bar.jump_t is not None and bar.first[0] < bar.jump_t):
                # From the first step that completed (a bar drawn at 0 waits out the
                # model's warm-up, not a step), and afresh after a resume jump.
                bar.first = (now, step)
                bar.clock = PaceClock(now, step)
            elif bar.clock is not None:
                bar.clock.add(now, step)
        elif fam == "kv":
            self._k_series.append((now, step))
            if self._k_clock is None:
                self._k_clock = PaceClock(now, step)
            else:
                self._k_clock.add(now, step)

    def _lines(self, lines: list[str], now: float | None) -> None:
        # The hot loop: most lines of a busy log are tqdm redraws, so those cost one
        # substring test and one regex; everything else one literal-only prefilter.
        tqdm_match, tqdm_meter = pf.TQDM_RE.match, pf.tqdm_meter
        pre_search = pf.PREFILTER_RE.search
        kinds = pf.PREFILTER_KIND
        user = self._user.search if self._user is not None else None
        for line in lines:
            if user is not None:
                um = user(line)
                if um is not None:
                    self._on_user(um)
                    continue
            i = line.find(" [")
            if i >= 0:
                # A bar's `n/total unit` is the word right before its ` [`: try there
                # first, one regex attempt; else the word before each later ` [`.
                m = tqdm_match(line, line.rfind(" ", 0, i) + 1)
                if m is None:
                    m = tqdm_meter(line, i)
                if m is not None:
                    self._on_tqdm(line, m, now)
                    if line[-1] != "]" and m.end() < len(line) and not line[m.end():].isspace():
                        # A line printed while a bar is drawn lands right after its last
                        # redraw, with no line break between (a Trainer's dict to a
                        # block-buffered stdout, `accelerator.print` on a terminal).
                        self._lines([line[m.end():]], now)
                    continue
            p = pre_search(line)
            if p is None:
                continue
            kind = kinds[line[p.start()]]
            if kind == "kv":
                self._on_kv(line, now)
            elif kind == "dict":
                self._on_dict(line, now)
            elif kind == "loss":
                self._on_loss_line(line, now)
            else:  # Rich and Keras bars, Keras's `Epoch k/K`
                self._on_drawn_bar(line, now)

    # -------------------------------------------------------------------- bars

    def _materialize_post(self) -> None:
        """Apply the training bar's latest postfix metrics before a newer source's."""
        if self._post_fresh and self._bar is not None:
            self._apply_post(self._bar.post)
        self._post_fresh = False

    def _apply_post(self, post: str) -> None:
        loss, lr, tok, _rate, _epoch = pf.line_metrics(post.lower())
        self._apply_metrics(loss, lr, tok, None)

    def _apply_metrics(self, loss: float | None, lr: float | None, tok: float | None,
                       epoch: float | None) -> None:
        if loss is not None:
            self._loss = loss
        if lr is not None:
            self._lr = lr
        if tok is not None:
            self._tokens = tok
        if epoch is not None:
            self._epoch = epoch

    # ----------------------------------------------------------------- reading

    def _family(self) -> str | None:
        if self._u_step is not None:
            return "user"
        bar = self._bar
        if bar is not None and bar.step is not None and bar.updates >= self._k_updates:
            return "bar"
        if self._k_step is not None:
            return "kv"
        return None

    def _step_now(self) -> int | None:
        fam = self._family()
        if fam == "user":
            return self._u_step
        if fam == "bar":
            return self._bar.step  # type: ignore[union-attr]
        return self._k_step if fam == "kv" else None

    def _finish(self) -> Progress:
        """The reading at the end of a whole file: its unterminated tail is a line."""
        if self._rank_buf:
            buf, self._rank_buf = self._rank_buf, ""
            self._feed_plain(buf, None)
        for tracker in (self._ranks or {}).values():
            tracker._finish()
        if self._pending:
            self._lines([pf.strip_controls(self._pending)], None)
            self._pending = ""
        return self.progress()

    def stalled(self, now: float, after_s: float) -> bool:
        """Whether the step has not advanced for `after_s` seconds at `now`.

        False while no step has been seen (a log without progress is unknown, not
        stalled) and once the step reached the total (a finished run is not stuck).
        """
        return self.stuck_since(now, after_s) is not None

    def stuck_since(self, now: float, after_s: float) -> float | None:
        """When the step last advanced, if it has not for `after_s` seconds at `now`
        (see `stalled`), else None: the one "stuck since" clock, which the stall alert
        reads from the session's snapshot instead of keeping its own."""
        if self._ranks:  # one hung rank hangs the job: the longest stuck one says since when
            stuck = [t.stuck_since(now, after_s) for t in self._ranks.values()]
            known = [s for s in stuck if s is not None]
            return min(known) if known else None
        if self._advanced_at is None or now - self._advanced_at < after_s:
            return None
        p = self.progress()
        return None if (p.total is not None and p.step is not None and p.step >= p.total) else self._advanced_at

    def progress(self, now: float | None = None) -> Progress:
        """The current reading; cheap enough to call after every chunk.

        Args:
            now: the time of the reading, on the clock `feed` was given: the ETA then
                counts down from the latest step line (`PaceClock.eta`). Without it,
                the ETA is as of the latest step line.

        With rank prefixes in the log, the reading of the rank furthest behind (lowest
        step), with every rank's reading in `ranks`."""
        own = self._own_progress(now)
        if not self._ranks:
            return own
        readings = tuple(sorted(((r, t._own_progress(now)) for r, t in self._ranks.items()),
                                key=lambda rp: int(rp[0])))
        stepped = [rp for rp in readings if rp[1].step is not None]
        if not stepped:
            return replace(own, ranks=readings)
        rank, slow = min(stepped, key=lambda rp: rp[1].step)  # type: ignore[arg-type, return-value]
        return replace(slow, slowest_rank=rank, ranks=readings)

    def _own_progress(self, now: float | None = None) -> Progress:
        if self._post_fresh and self._bar is not None:
            self._apply_post(self._bar.post)  # idempotent: the postfix is still the latest
        fam = self._family()
        fmt = step = total = rate = unit = eta = None
        if fam == "user":
            fmt, step, total = "user", self._u_step, self._u_total
            rate, unit = self._u_rate, "it/s" if self._u_rate is not None else None
        elif fam == "bar":
            bar = self._bar
            assert bar is not None
            fmt, step = bar.fmt, bar.step
            if bar.clock_eta:
                total = bar.total
            else:  # an epoch bar: its total is per epoch
                total = bar.total * bar.epochs if bar.total and bar.epochs else None
            rate, unit, eta = self._bar_rate(bar)
            if fmt == "tqdm" and self._hf:
                fmt = "hf_trainer"
        elif fam == "kv":
            fmt, step, total = self._k_fmt, self._k_step, self._k_total
            rate, unit = printed_rate(self._k_rates)
            if rate is None:
                rate = derived_rate(self._k_series)
                unit = "derived" if rate is not None else None
        elif self._hf:
            fmt = "hf_trainer"
            if self._summary_steps is not None:  # a finished run that drew no bar
                step = total = self._summary_steps
        if rate is None and self._rate_hint is not None and step is not None:
            rate, unit = self._rate_hint, "it/s"
        clock = self._clock(fam) if step is not None else None
        pace = clock.pace() if clock is not None else None
        if clock is None and step is not None and fam == "bar":  # a whole file: the bar's own clock
            assert self._bar is not None
            first, last = self._bar.clock_pace_points()
            pace = run_pace(first, last, min_span_s=CLOCK_MIN_SPAN_S)
        if pace:
            # The pace with the run's recurring pauses in it (see run_pace): what the
            # time left will really be spent at, where a bar's it/s leaves pauses out.
            rate, unit = pace, "derived"
        if total is not None and step is not None and rate and (pace or eta is None):
            # followed live, the time left counts the pauses still ahead (PaceClock)
            left = clock.eta(total, now) if clock is not None and pace else None
            eta = left if left is not None else max(total - step, 0) / rate
        return Progress(fmt, step, total, rate, unit, self._loss, self._lr, self._tokens,
                        self._epoch, eta, recent_rate=clock.recent() if clock is not None else None)

    def _clock(self, fam: str | None) -> PaceClock | None:
        """The run's pace and pauses by arrival times, when it is followed live."""
        if fam == "bar":
            bar = self._bar
            assert bar is not None
            return bar.clock if bar.first is not None and bar.series else None
        return self._k_clock if fam == "kv" else None


def parse_log(text: str) -> Progress:
    """What a whole log says (for `gpuctl progress FILE`).

    There is no arrival time in a file: rates are the ones the log prints (the median
    of the last few updates, so a finished run shows its recent pace, not its last
    outlier), or derived from the lines' own timestamps; else rate is None.
    """
    tracker = ProgressTracker()
    for i in range(0, len(text), PARSE_CHUNK):  # chunks keep copies of a big file small
        tracker._feed(text[i:i + PARSE_CHUNK], None)
    return tracker._finish()


def parse_file(path: str | os.PathLike[str]) -> Progress:
    """`parse_log` of a file on disk, read in pieces: a multi-gigabyte log never sits in
    memory whole (one emoji in it would make a whole-file `str` four bytes a character).

    Raises:
        OSError: the file cannot be read.
    """
    tracker = ProgressTracker()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        while chunk := f.read(PARSE_CHUNK):
            tracker._feed(chunk, None)
    return tracker._finish()
