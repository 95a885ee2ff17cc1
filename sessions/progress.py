"""Training progress from log text: step, total, rate, loss, lr, tokens/s, epoch, ETA.

Pure functions and one stateful tracker, no I/O: the agent streams log deltas, the
tracker is fed them as they arrive, and `gpuctl progress FILE` parses a whole file.

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

import re
from collections import deque
from dataclasses import dataclass, fields
from typing import Any

from sessions import progress_formats as pf
from sessions.progress_rate import derived_rate, jump_pace, printed_rate

RATE_SAMPLES = 5
"""Printed rates kept for the median (see `progress_rate.printed_rate`)."""

PARSE_CHUNK = 1 << 16
"""`parse_log` feeds a file in pieces of this many characters, as the agent would."""

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

    def to_json(self) -> dict[str, Any]:
        """The `gpuctl progress --json` object: exactly these ten keys, None as null."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Bar:
    """The training bar's lineage: one bar identity (description, total) over time."""

    __slots__ = ("fmt", "kind", "dkey", "total_s", "total", "epochs", "ep_base", "step", "updates", "rates",
                 "remaining", "clock_eta", "start", "jump", "jump_t", "last_el", "series",
                 "post")

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


class ProgressTracker:
    """Incremental progress parser for one session's log.

    Args:
        user_pattern: the session's `progress` regex from config, with named groups
            among `step`, `total`, `loss`, `rate` (steps/s). A line it matches is read
            with it alone, ahead of the built-in formats.

    Feed it log deltas in order with `feed(text, now)`; ask `progress()` at any time.
    """

    def __init__(self, user_pattern: str | None = None) -> None:
        self._user = re.compile(user_pattern) if user_pattern else None
        self._pending = ""
        self._bar: _Bar | None = None
        self._desc_info: dict[str, tuple[bool, str, int | None, int | None]] = {}
        self._keras_epoch: tuple[int, int] | None = None
        # the line family (key/value, JSON lines) and the user pattern
        self._k_fmt: str | None = None
        self._k_step: int | None = None
        self._k_total: int | None = None
        self._k_zero: bool | None = None
        self._k_updates = 0
        self._k_rates: deque[tuple[str, str]] = deque(maxlen=RATE_SAMPLES)
        self._k_series: deque[tuple[float, int]] = deque(maxlen=64)
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
        data = self._pending + text if self._pending else text
        if not data:
            return
        data = pf.strip_controls(data)
        lines = data.splitlines()
        if lines and data[-1] not in "\r\n":
            pending = lines.pop()
            self._pending = pending[-MAX_PENDING:]
        else:
            pending = self._pending = ""
        self._lines(lines, now)
        if pending:
            # The newest bar state usually sits unterminated until the next redraw;
            # a tqdm match needs its closing `]`, so a half-written one is not read.
            m = pf.TQDM_RE.search(pending)
            if m is not None and (self._user is None or not self._user.search(pending)):
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
            self._bar.series.append((now, step))  # type: ignore[union-attr]
        elif fam == "kv":
            self._k_series.append((now, step))

    def _lines(self, lines: list[str], now: float | None) -> None:
        # The hot loop: most lines of a busy log are tqdm redraws, so those cost one
        # substring test and one regex; everything else one literal-only prefilter.
        tqdm_search = pf.TQDM_RE.search
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
                # a bar's `n/total unit` sits right before its ` [`: start there
                m = tqdm_search(line, i - 40 if i > 40 else 0)
                if m is not None:
                    self._on_tqdm(line, m, now)
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
        start = m.start()
        i = line.find("%|", 0, start)
        head = line[:i].rstrip("0123456789. ") if i >= 0 else line[:start]
        info = self._desc_info.get(head) or self._describe(head)
        if not info[0]:
            return
        bar = self._bar
        if bar is None or bar.kind != "tqdm" or bar.dkey != info[1] or bar.total_s != total_s:
            total = int(total_s) if total_s and total_s != "?" else None
            bar = self._adopt("tqdm", info[1], total_s, total, info[4], info[3], info[2] is not None)
            if bar is None:
                return
        self._bar_update(bar, int(n), info[2], info[5], rate, rate_unit, elapsed, remaining,
                         post, now)

    def _adopt(self, kind: str, dkey: str, total_s: str | None, total: int | None, fmt: str,
               epochs: int | None, epoch_bar: bool) -> _Bar | None:
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
        self._bar = _Bar(fmt, kind, dkey, total_s, total, epochs)
        return self._bar

    def _bar_update(self, bar: _Bar, n: int, ep: int | None, base: int, rate: str | None,
                    unit: str | None, elapsed: str | None, remaining: str | None, post: str,
                    now: float | None) -> None:
        if ep is not None:
            if bar.ep_base is None or ep < bar.ep_base:
                bar.ep_base = min(base, ep)
            step = (ep - bar.ep_base) * bar.total + n if bar.total else n
            bar.clock_eta = False  # the bar's clock is this epoch's, not the run's
            self._epoch = ep - bar.ep_base + (n / bar.total if bar.total else 0.0)
        else:
            step = n
        bar.updates += 1
        if step != bar.step:
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
        if rm is None:
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
        per = pf.KERAS_PER_STEP_RE.search(rest)
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

    # ------------------------------------------------------------------- lines

    def _on_kv(self, line: str, now: float | None) -> None:
        """torchrun-style `step N | loss X | lr Y | tok/s Z`, nanoGPT, DeepSpeed, Megatron."""
        low = line.lower()
        sm = pf.step_match(low)
        if sm is None:
            km = pf.KERAS_RE.match(line)  # Keras verbose=2: `16/16 - 1s - 37ms/step - ...`
            if km is not None:
                self._on_keras(km, now)
            return
        if pf.is_eval_line(low):
            return
        loss, lr, tok, rate, epoch = pf.line_metrics(low)
        if loss is None and lr is None and tok is None and rate is None:
            return  # `Total optimization steps = 40`, a config dump: not a step report
        key = sm["key"]
        if key.startswith("iter") and "mfu" in low:
            fmt = "nanogpt"
        elif "samples/sec" in low or "skipped=" in low:
            fmt = "deepspeed"
        elif key == "iteration" and "consumed" in low:
            fmt = "megatron"
        else:
            fmt = "torchrun"
        self._materialize_post()
        self._apply_metrics(loss, lr, tok, epoch)
        if rate is not None:
            self._k_rates.append(rate)
        total = int(sm["total"]) if sm["total"] else None
        self._k_step_update(fmt, int(sm["step"]), total, line, now)

    def _on_loss_line(self, line: str, now: float | None) -> None:
        """A line that logs a loss and no step (DeepSpeedExamples' `[Rank 0] Loss: X`)."""
        low = line.lower()
        if pf.step_match(low) is not None:
            self._on_kv(line, now)
            return
        m = pf.LOSS_RE.search(low)
        if m is not None and not pf.is_eval_line(low):
            self._materialize_post()
            self._loss = pf.to_float(m["v"])

    def _k_step_update(self, fmt: str, step: int, total: int | None, line: str,
                       now: float | None) -> None:
        if self._k_zero is None:
            self._k_zero = fmt == "nanogpt" or step == 0
        elif step == 0:
            self._k_zero = True
        self._k_fmt = fmt
        done = step + 1 if self._k_zero else step
        if now is None and done != self._k_step:
            ts = pf.TIMESTAMP_RE.match(line)
            if ts is not None:
                self._k_series.append((pf.timestamp_seconds(ts), done))
        self._k_step = done
        if total is not None:
            self._k_total = total
        self._k_updates += 1

    def _on_dict(self, line: str, now: float | None) -> None:
        """Trainer/Axolotl/TRL `{'loss': .., 'learning_rate': .., 'epoch': ..}` dicts
        and JSON-lines metrics."""
        items = pf.dict_items(line)
        if not items:
            return
        self._materialize_post()
        epoch = pf.first(items, pf.EPOCH_KEYS)
        if epoch is not None:
            self._epoch = pf.to_float(epoch)
        if "train_runtime" in items:  # the Trainer's closing summary: averages, not latest
            self._rate_hint = pf.to_float(items.get("train_steps_per_second"))
            self._hf = True
            return
        step = pf.first(items, pf.STEP_KEYS)
        for keys, attr in ((pf.LOSS_KEYS, "_loss"), (pf.LR_KEYS, "_lr"), (pf.TOKENS_KEYS, "_tokens")):
            v = pf.to_float(pf.first(items, keys))
            if v is not None:
                setattr(self, attr, v)
        if step is None:
            self._hf = self._hf or "loss" in items or "eval_loss" in items or "learning_rate" in items
            return
        st = pf.to_float(pf.first(items, pf.STEP_TIME_KEYS))
        if st:
            self._k_rates.append((repr(st), "s/it"))
        total = pf.to_float(pf.first(items, pf.TOTAL_KEYS))
        step_f = pf.to_float(step)
        if step_f is not None:
            self._k_step_update("jsonl", int(step_f), int(total) if total else None, line, now)

    def _on_user(self, um: re.Match[str]) -> None:
        g = um.groupdict()
        if g.get("step") is not None:
            self._u_step = int(pf.to_float(g["step"]) or 0)
        if g.get("total") is not None:
            self._u_total = int(pf.to_float(g["total"]) or 0)
        if g.get("loss") is not None:
            self._materialize_post()
            self._loss = pf.to_float(g["loss"])
        if g.get("rate") is not None:
            self._u_rate = pf.to_float(g["rate"])

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

    def stalled(self, now: float, after_s: float) -> bool:
        """Whether the step has not advanced for `after_s` seconds at `now`.

        False while no step has been seen: a log without progress is unknown, not stalled.
        """
        return self._advanced_at is not None and now - self._advanced_at >= after_s

    def progress(self) -> Progress:
        """The current reading; cheap enough to call after every chunk."""
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
        if rate is None and self._rate_hint is not None and step is not None:
            rate, unit = self._rate_hint, "it/s"
        if eta is None and total is not None and step is not None and rate:
            eta = max(total - step, 0) / rate
        return Progress(fmt, step, total, rate, unit, self._loss, self._lr, self._tokens,
                        self._epoch, eta)

    def _bar_rate(self, bar: _Bar) -> tuple[float | None, str | None, float | None]:
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


def parse_log(text: str) -> Progress:
    """What a whole log file says (for `gpuctl progress FILE`).

    There is no arrival time in a file: rates are the ones the log prints (the median
    of the last few updates, so a finished run shows its recent pace, not its last
    outlier), or derived from the lines' own timestamps; else rate is None.
    """
    tracker = ProgressTracker()
    for i in range(0, len(text), PARSE_CHUNK):  # chunks keep copies of a big file small
        tracker._feed(text[i:i + PARSE_CHUNK], None)
    if tracker._pending:
        tracker._lines([tracker._pending], None)
        tracker._pending = ""
    return tracker.progress()
