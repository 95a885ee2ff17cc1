"""Progress from plain log lines: key/value step reports, Trainer dicts, JSON lines.

Why a module: these formats say `step N` in words (torchrun-style loops, nanoGPT,
DeepSpeed, Megatron, torchtitan) or in dicts (Trainer, JSON lines), each with its own
way of giving loss, lr, throughput and time per step, and its own numbering (nanoGPT's
`iter 0` is one completed step). `LineReader` is the part of `ProgressTracker` that
reads them; a mixin, like `progress_bars.BarReader`, to keep one object's state.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING

from sessions.progress import formats as pf
from sessions.progress.rate import PaceClock


DICT_FIGURES = ((pf.LOSS_KEYS, "_loss"), (pf.LR_KEYS, "_lr"), (pf.TOKENS_KEYS, "_tokens"),
                (pf.EPOCH_KEYS, "_epoch"))
"""Which keys of a metrics dict give which figure (the first of them present)."""


class LineReader:
    """The line half of `ProgressTracker` (see there for the state it shares)."""

    _k_fmt: str | None
    _k_step: int | None
    _k_total: int | None
    _k_zero: bool | None
    _k_ep_base: int | None
    _k_updates: int
    _k_rates: deque[tuple[str, str]]
    _k_series: deque[tuple[float, int]]
    _k_clock: PaceClock | None
    _u_step: int | None
    _u_total: int | None
    _u_rate: float | None
    _loss: float | None
    _hf: bool
    _epoch: float | None
    _rate_hint: float | None
    _summary_steps: int | None

    if TYPE_CHECKING:  # defined by the other halves of ProgressTracker; declared for mypy only,
        # so at run time the MRO finds the real ones (BarReader, ProgressTracker)
        def _on_keras(self, km: re.Match[str], now: float | None) -> None: ...
        def _materialize_post(self) -> None: ...
        def _apply_metrics(self, loss: float | None, lr: float | None, tok: float | None,
                           epoch: float | None) -> None: ...

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
        step, total = int(sm["step"]), int(sm["total"]) if sm["total"] else None
        if total and "epoch" in low:  # `Epoch [2/10], Step [100/600]`: steps per epoch
            em = pf.key_match(low, "epoch", pf.EPOCH_OF_RE)
            if em is not None:
                e, of = int(em["e"]), int(em["of"])
                if self._k_ep_base is None or e < self._k_ep_base:
                    self._k_ep_base = min(e, 1)  # 1-based, unless an epoch 0 shows
                self._epoch = e - self._k_ep_base + step / total
                step, total = (e - self._k_ep_base) * total + step, of * total
        self._k_step_update(fmt, step, total, line, now)

    def _on_loss_line(self, line: str, now: float | None) -> None:
        """A line that logs a loss and no step (DeepSpeedExamples' `[Rank 0] Loss: X`)."""
        low = line.lower()
        if pf.step_match(low) is not None:
            self._on_kv(line, now)
            return
        loss = pf.loss_value(low)
        if loss is not None and not pf.is_eval_line(low):
            self._materialize_post()
            self._loss = loss

    def _k_step_update(self, fmt: str, step: int, total: int | None, line: str,
                       now: float | None) -> None:
        if fmt == "deepspeed":
            pass  # its engine reports `step=0` once at start, before any step: 1-based all the same
        elif self._k_zero is None:
            self._k_zero = fmt == "nanogpt" or step == 0
        elif step == 0:
            self._k_zero = True
        self._k_fmt = fmt
        done = step + 1 if self._k_zero else step
        if now is None and done != self._k_step:
            ts = pf.TIMESTAMP_RE.match(line)
            if ts is not None:
                point = (pf.timestamp_seconds(ts), done)
                self._k_series.append(point)
                if self._k_clock is None:
                    self._k_clock = PaceClock(*point)
                else:
                    self._k_clock.add(*point)
        self._k_step = done
        if total is not None:
            self._k_total = total
        self._k_updates += 1

    def _on_dict(self, line: str, now: float | None) -> None:
        """Trainer/Axolotl/TRL `{'loss': .., 'learning_rate': .., 'epoch': ..}` dicts
        and JSON-lines metrics: a line that is one flat dict."""
        head = line.lstrip()[:2]
        if head not in ("{'", '{"'):
            self._on_loss_line(line, now)  # a dict quoted inside prose: read as plain text
            return
        items = pf.dict_items(line)
        first, to_float = pf.first, pf.to_float
        found: dict[str, float] = {}
        for keys, attr in DICT_FIGURES:
            v = to_float(first(items, keys))
            if v is not None:
                found[attr] = v
        # The Trainer's closing summary (run averages); `include_num_input_tokens_seen`
        # puts train_runtime in every step's dict too, beside its loss.
        summary = "train_steps_per_second" in items or ("train_runtime" in items and "loss" not in items)
        if not found and not summary and pf.to_float(items.get("eval_loss")) is None:
            return  # a config dump or some other dict
        self._materialize_post()
        if summary:
            self._rate_hint = pf.to_float(items.get("train_steps_per_second"))
            runtime = pf.to_float(items.get("train_runtime"))
            if runtime and self._rate_hint:
                # The run's only count of steps when `disable_tqdm=True` leaves no bar:
                # its runtime times its steps/s (both printed to 4 digits: within one
                # step up to thousands of steps).
                self._summary_steps = round(runtime * self._rate_hint)
            found = {"_epoch": found["_epoch"]} if "_epoch" in found else {}
        for attr, v in found.items():
            setattr(self, attr, v)
        step = pf.to_float(pf.first(items, pf.STEP_KEYS))
        if step is None:
            self._hf = self._hf or head == "{'"  # a Python dict repr: the Trainer's log
            return
        st = pf.to_float(pf.first(items, pf.STEP_TIME_KEYS))
        if st:
            self._k_rates.append((repr(st), "s/it"))
        total = pf.to_float(pf.first(items, pf.TOTAL_KEYS))
        self._k_step_update("jsonl", int(step), int(total) if total else None, line, now)

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
