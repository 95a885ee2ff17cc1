"""The simulated trainer `gpuctl demo` runs in tmux on its pods (standard library only).

It is copied onto each demo pod as ``train.py`` and run by the pod's ``python3``, so it
follows the agent's rules: standard library only, one file, nothing at import time. It
runs past the house ~400 lines because it is shipped as that one file.

What it prints is copied from real frameworks, byte for byte where it matters to a
parser (the captured logs in ``tests/data/logs/`` are the reference):

* ``--format hf``: a Hugging Face Trainer run: ``Map`` bars, the tqdm training bar
  (``\\r`` redraws, EMA it/s, padded to the previous length), ``{'loss': '4.553', ...}``
  dicts printed above the bar (transformers 5 prints values as strings), ``Writing model
  shards`` at each save, the ``train_runtime`` summary. A resumed run's bar jumps from 0
  to the checkpoint's step + 1, as the real one does.
* ``--format torchrun``: karpathy/llm.c's ``train_gpt2.py`` under torchrun:
  ``step  601/5000 | train loss 3.412345 | norm 1.2345 | lr 6.00e-04 | (250.12 ms | 2096128 tok/s)``.
* ``--format lightning``: PyTorch Lightning's TQDMProgressBar: ``Epoch 3:  20%|...| 50/250
  [...it/s, train_loss=1.230]``, validation bars drawn one row down (``\\n ... \\x1b[A``),
  ``Restoring states from the checkpoint path at ...`` on resume.

Checkpoints are named as the frameworks name them and written atomically (written under
a temporary name, then renamed): HF ``checkpoint-N/`` folders with ``trainer_state.json``
(the completion marker) written last, ``step_N.pt`` files, Lightning's
``epoch=E-step=N.ckpt``. Their bytes are deterministic for a seed and step, so a download
can be checked against the pod's file. ``--resume PATH`` reads the step from the
checkpoint's own contents and continues from there: the first step it logs is N + 1.

While it runs it touches a heartbeat file (``$GPUCTL_DEMO_HEARTBEAT``) with its pid,
step and phase, which the demo's GPU simulator reads to heat the simulated GPUs up.
Bars go to stdout with the log lines (real tqdm writes to stderr; in tmux both land in
the same pane), so one redirect captures everything in order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

FORMATS = ("hf", "torchrun", "lightning")
MAGIC = b"GPUCTL-DEMO-CHECKPOINT 1\n"
"""First line of every single-file checkpoint; the second line is a JSON header."""

BAR_CHARS = " \u258f\u258e\u258d\u258c\u258b\u258a\u2589\u2588"
"""tqdm's unicode bar: blank, 1/8 ... 7/8, full."""

DEFAULTS = {
    # format: (step time s, checkpoint every, keep last, checkpoint MiB, steps per epoch)
    "hf": (0.15, 200, 3, 6.0, 1000),
    "torchrun": (0.25, 250, 3, 4.0, None),
    "lightning": (0.08, 250, 1, 2.0, 250),
}


# ------------------------------------------------------------------------ tqdm, as drawn


def format_interval(seconds: float) -> str:
    """tqdm's clock: ``mm:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "%d:%02d:%02d" % (hours, minutes, secs) if hours else "%02d:%02d" % (minutes, secs)


def bar_text(fraction: float, width: int) -> str:
    """The bar itself, with tqdm's eighth-block partial cell."""
    symbols = len(BAR_CHARS) - 1
    filled, part = divmod(int(fraction * width * symbols), symbols)
    text = BAR_CHARS[-1] * filled
    if filled < width:
        text += BAR_CHARS[part] + BAR_CHARS[0] * (width - filled - 1)
    return text


def lightning_number(value: float) -> str:
    """A postfix number as Lightning's Tqdm prints it: tqdm's ``.3g``, padded to 5 chars."""
    text = ("%.3g" % value).replace("+0", "+").replace("-0", "-")
    if "e" not in text:
        if "." not in text and len(text) < 5:
            text += "."
        text += "0" * (5 - len(text))
    return text


class Ema:
    """tqdm's exponential moving average, with its bias correction."""

    def __init__(self, smoothing: float):
        self.alpha = smoothing
        self.last = 0.0
        self.calls = 0

    def __call__(self, value=None):
        beta = 1 - self.alpha
        if value is not None:
            self.last = self.alpha * value + beta * self.last
            self.calls += 1
        return self.last / (1 - beta ** self.calls) if self.calls else self.last


class Bar:
    """One tqdm bar drawn the way tqdm 4.x draws it: ``\\r`` + line, padded with spaces to
    the previous line's length. ``ncols`` None is what tqdm does when not on a terminal
    (a 10-cell bar); a number fills that width.
    """

    def __init__(self, out, total, desc="", unit="it", ncols=None, smoothing=0.3,
                 invert_rate=True, mininterval=0.1, initial_rate=None):
        self.out = out
        self.total = total
        self.desc = desc
        self.unit = unit
        self.ncols = ncols
        self.smoothing = smoothing
        self.invert_rate = invert_rate
        self.mininterval = mininterval
        self.postfix = ""
        self.n = 0
        self.start = time.monotonic()
        self.last_len = 0
        self._printed_n = 0
        self._printed_t = self.start
        self._dn = Ema(smoothing or 1.0)
        self._dt = Ema(smoothing or 1.0)
        self._fixed_rate = initial_rate

    def reset(self, total=None):
        """Start over (Lightning reuses its main bar for every epoch)."""
        self.n = 0
        self.total = total if total is not None else self.total
        self.start = self._printed_t = time.monotonic()
        self._printed_n = 0
        self._dn = Ema(self.smoothing or 1.0)
        self._dt = Ema(self.smoothing or 1.0)

    def rate(self, now, final=False):
        if self._fixed_rate is not None:
            return self._fixed_rate
        elapsed = now - self.start
        if final or not self.smoothing:
            return self.n / elapsed if elapsed > 0 and self.n else None
        dt = self._dt()
        return self._dn() / dt if dt else None

    def line(self, now=None, final=False):
        now = time.monotonic() if now is None else now
        elapsed = now - self.start
        rate = self.rate(now, final)
        if rate and self.invert_rate and rate < 1:
            rate_text = "%5.2fs/%s" % (1 / rate, self.unit.strip())
        else:
            rate_text = ("%5.2f" % rate if rate else "?") + self.unit + "/s"
        postfix = ", " + self.postfix if self.postfix else ""
        head = self.desc + ": " if self.desc else ""
        if not self.total:  # Lightning's `0/?` bars: an empty bar, no percentage
            left = head + "|"
            right = "| %d/? [%s<?, %s%s]" % (self.n, format_interval(elapsed), rate_text, postfix)
            width = max(1, self._columns() - len(left) - len(right)) if self.ncols else 10
            return left + " " * width + right
        fraction = min(1.0, self.n / self.total)
        remaining = format_interval((self.total - self.n) / rate) if rate else "?"
        left = "%s%3.0f%%|" % (head, fraction * 100)
        right = "| %d/%d [%s<%s, %s%s]" % (self.n, self.total, format_interval(elapsed), remaining, rate_text, postfix)
        width = max(1, self._columns() - len(left) - len(right)) if self.ncols else 10
        return left + bar_text(fraction, width) + right

    def _columns(self):
        """The terminal's width now (tqdm's ``dynamic_ncols``): someone attaching from a
        narrower terminal resizes the tmux window, and a bar wider than it would wrap."""
        try:
            return os.get_terminal_size(self.out.fileno()).columns or self.ncols
        except (OSError, ValueError, AttributeError):
            return self.ncols

    def draw(self, now=None, final=False):
        text = self.line(now, final)
        pad = self.last_len - len(text)
        if self.ncols:  # never past the right edge: that would wrap onto a new row
            pad = min(pad, self._columns() - len(text) - 1)
        self.out.write("\r" + text + " " * max(pad, 0))
        self.last_len = len(text)

    def update_to(self, n, force=False):
        """Advance to ``n``; redraw when ``mininterval`` has passed (or forced, or done)."""
        self.n = n
        now = time.monotonic()
        dt = now - self._printed_t
        if force or dt >= self.mininterval or (self.total and n >= self.total):
            dn = n - self._printed_n
            if self.smoothing and dt > 0 and dn:
                self._dn(dn)
                self._dt(dt)
            self._fixed_rate = None
            self.draw(now)
            self._printed_n, self._printed_t = n, now

    def clear(self):
        """What ``tqdm.write`` does first: blank the bar's line, cursor back at its start."""
        self.out.write("\r" + " " * self.last_len + "\r")
        self.last_len = 0


# --------------------------------------------------------------------- the run's numbers


class Curve:
    """Loss, learning rate and gradient norm as functions of the step.

    Deterministic per (seed, step), so a resumed run prints the very numbers the
    uninterrupted run would have printed.
    """

    SHAPES = {
        "hf": (2.35, 1.02, 900.0, 0.03, 2e-5),
        "torchrun": (10.95, 3.28, 700.0, 0.012, 6e-4),
        "lightning": (2.30, 0.31, 2500.0, 0.05, 1e-3),
    }

    def __init__(self, fmt: str, seed: int, total: int):
        self.start, self.floor, self.tau, self.noise, self.peak_lr = self.SHAPES[fmt]
        self.seed = seed
        self.total = max(1, total)
        self.warmup = max(1, min(200, self.total // 20))

    def _rng(self, step: int, salt: str = "") -> random.Random:
        return random.Random("%d:%d:%s" % (self.seed, step, salt))

    def loss(self, step: int) -> float:
        base = self.floor + (self.start - self.floor) * math.exp(-step / self.tau)
        return max(0.01, base + self._rng(step).gauss(0.0, self.noise * base))

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.peak_lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.peak_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    def grad_norm(self, step: int) -> float:
        return 0.4 + 1.6 * math.exp(-step / (self.tau * 2)) + self._rng(step, "g").uniform(0, 0.3)

    def jitter(self, step: int) -> float:
        """Step-time factor around 1: real steps are never all the same length."""
        return 1.0 + self._rng(step, "t").uniform(-0.08, 0.08)


# --------------------------------------------------------------------------- checkpoints


def _atomic_write(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path) or ".", ".%s.tmp" % os.path.basename(path))
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _payload(seed: int, step: int, size: int) -> bytes:
    """Deterministic bytes standing for weights (the same seed and step give the same file)."""
    return random.Random("%d:%d:weights" % (seed, step)).randbytes(size)


def single_file_checkpoint(header: dict, payload: bytes) -> bytes:
    """``MAGIC``, one JSON line, then the payload."""
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def read_single_file_header(path: str) -> dict:
    """The JSON header of a ``.pt``/``.ckpt`` checkpoint written by ``single_file_checkpoint``.

    Raises:
        ValueError: not one of ours, or truncated.
    """
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head.startswith(MAGIC) or b"\n" not in head[len(MAGIC):]:
        raise ValueError("not a gpuctl demo checkpoint (or truncated)")
    return json.loads(head[len(MAGIC):].split(b"\n", 1)[0])


def safetensors_bytes(payload: bytes) -> bytes:
    """A valid safetensors file holding ``payload`` as one flat F32 tensor (4-byte aligned)."""
    payload = payload[: len(payload) // 4 * 4]
    header = json.dumps({
        "__metadata__": {"format": "pt"},
        "model.weight": {"dtype": "F32", "shape": [len(payload) // 4], "data_offsets": [0, len(payload)]},
    }, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + payload


class Checkpoints:
    """Where checkpoints go, what they are called, and which to keep."""

    def __init__(self, fmt: str, directory: str, seed: int, size: int, keep_last: int, steps_per_epoch):
        self.fmt = fmt
        self.directory = directory
        self.seed = seed
        self.size = size
        self.keep_last = keep_last
        self.steps_per_epoch = steps_per_epoch

    def name(self, step: int) -> str:
        if self.fmt == "hf":
            return "checkpoint-%d" % step
        if self.fmt == "torchrun":
            return "step_%d.pt" % step
        return "epoch=%d-step=%d.ckpt" % ((step - 1) // self.steps_per_epoch, step)

    def save(self, step: int, loss: float, extra: dict) -> str:
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, self.name(step))
        payload = _payload(self.seed, step, self.size)
        if self.fmt == "hf":
            self._save_hf(final, step, loss, extra, payload)
        else:
            header = {"format": self.fmt, "global_step": step, "loss": round(loss, 6), "seed": self.seed}
            header.update(extra)
            _atomic_write(final, single_file_checkpoint(header, payload))
        self._rotate()
        return final

    def _save_hf(self, final: str, step: int, loss: float, extra: dict, payload: bytes) -> None:
        # transformers writes into tmp-checkpoint-N and renames it when complete.
        tmp = os.path.join(self.directory, "tmp-" + os.path.basename(final))
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        files = {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                       "hidden_size": 2048, "num_hidden_layers": 16}, indent=2).encode(),
            "model.safetensors": safetensors_bytes(payload),
            "optimizer.pt": _payload(self.seed, -step, max(1024, self.size // 2)),
            "scheduler.pt": b"scheduler state\n",
            "rng_state.pth": _payload(self.seed, 10 ** 9 + step, 1024),
            "training_args.bin": b"training arguments\n",
        }
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as handle:
                handle.write(data)
        state = {
            "best_global_step": None, "best_metric": None, "best_model_checkpoint": None,
            "epoch": extra.get("epoch"), "eval_steps": 500, "global_step": step,
            "is_hyper_param_search": False, "is_local_process_zero": True, "is_world_process_zero": True,
            "log_history": extra.get("log_history", []), "logging_steps": extra.get("logging_steps", 10),
            "max_steps": extra.get("max_steps"), "num_input_tokens_seen": 0, "num_train_epochs": 1,
            "save_steps": extra.get("save_steps"), "total_flos": float(step) * 3.1e15, "train_batch_size": 8,
            "trial_name": None, "trial_params": None,
        }
        # trainer_state.json last: its presence marks a complete checkpoint.
        with open(os.path.join(tmp, "trainer_state.json"), "w") as handle:
            json.dump(state, handle, indent=2)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.rename(tmp, final)

    def existing(self) -> list:
        """(step, path) of this run's finished checkpoints, oldest first."""
        found = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        for name in names:
            step = step_from_name(name)
            if step is not None and not name.startswith(("tmp-", ".")):
                found.append((step, os.path.join(self.directory, name)))
        return sorted(found)

    def _rotate(self) -> None:
        if self.keep_last <= 0:
            return
        for _, path in self.existing()[: -self.keep_last]:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def step_from_name(name: str):
    """The step in ``checkpoint-N``, ``step_N.pt`` or ``...-step=N.ckpt``, else None."""
    for prefix, suffix in (("checkpoint-", ""), ("step_", ".pt")):
        if name.startswith(prefix) and name.endswith(suffix):
            middle = name[len(prefix): len(name) - len(suffix)]
            if middle.isdigit():
                return int(middle)
    if name.endswith(".ckpt") and "step=" in name:
        middle = name.rsplit("step=", 1)[1][: -len(".ckpt")]
        if middle.isdigit():
            return int(middle)
    return None


def resume_step(fmt: str, path: str) -> dict:
    """What a checkpoint says about where to continue: ``{"step": N, ...}``.

    Raises:
        ValueError: a checkpoint this format cannot resume from, in words.
    """
    if fmt == "hf":
        state_file = os.path.join(path, "trainer_state.json")
        if not os.path.isfile(state_file):
            raise ValueError("%s has no trainer_state.json (not a finished Trainer checkpoint)" % path)
        with open(state_file) as handle:
            state = json.load(handle)
        return {"step": int(state["global_step"]), "log_history": state.get("log_history", [])}
    header = read_single_file_header(path)
    if header.get("format") != fmt:
        raise ValueError("%s was written by a %s run, not %s" % (path, header.get("format"), fmt))
    return {"step": int(header["global_step"]), "epoch": header.get("epoch")}


# ----------------------------------------------------------------------------- the run


class Heartbeat:
    """Tells the demo's GPU simulator that training is on: pid, step, phase (atomic)."""

    def __init__(self, path):
        self.path = path
        self._last = (None, 0.0)

    def beat(self, step: int, phase: str) -> None:
        if not self.path:
            return
        now = time.time()
        if phase == self._last[0] and now - self._last[1] < 0.5:
            return
        self._last = (phase, now)
        try:
            _atomic_write(self.path, json.dumps({"pid": os.getpid(), "step": step, "phase": phase, "t": now}).encode())
        except OSError:
            pass

    def close(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


class Run:
    """State shared by the three formats: arguments, output, pacing, checkpoints."""

    def __init__(self, args, out):
        self.args = args
        self.fmt = args.format
        step_time, every, keep, megabytes, spe = DEFAULTS[self.fmt]
        self.step_time = step_time if args.step_time is None else args.step_time
        self.every = every if args.checkpoint_every is None else args.checkpoint_every
        self.total = args.total_steps
        self.spe = args.steps_per_epoch or spe or args.total_steps
        if self.fmt == "lightning":  # Lightning runs whole epochs
            self.total = max(1, round(self.total / self.spe)) * self.spe
        size = int(1024 * 1024 * (megabytes if args.checkpoint_mb is None else args.checkpoint_mb))
        keep = keep if args.keep_last is None else args.keep_last
        self.checkpoints = Checkpoints(self.fmt, args.checkpoint_dir, args.seed, size, keep, self.spe)
        self.curve = Curve(self.fmt, args.seed, self.total)
        self.heartbeat = Heartbeat(args.heartbeat)
        self.out = out
        self.ncols = shutil.get_terminal_size((120, 40)).columns if out.isatty() else None
        self.start_step = 0
        self.resumed = None
        if args.resume:
            self.resumed = resume_step(self.fmt, args.resume)
            self.start_step = self.resumed["step"]

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def pause(self, step: int, factor: float = 1.0) -> None:
        if self.args.hang_at and self.resumed is None and step >= self.args.hang_at:
            hang()
        time.sleep(max(0.0, self.step_time * factor * self.curve.jitter(step)))

    def save(self, step: int, extra: dict) -> str:
        self.heartbeat.beat(step, "save")
        self.pause(step, 2.0)  # writing a checkpoint takes a moment, GPUs idle meanwhile
        return self.checkpoints.save(step, self.curve.loss(step), extra)


def hang() -> None:
    """`gpuctl demo --fault hang`: what a deadlocked loop looks like from outside: the
    process spins on the CPU, prints nothing and stops its heartbeat (so the simulated
    GPUs go idle), until it is killed. A resumed run never hangs."""
    while True:
        pass


def run_hf(run: Run) -> None:
    """A Hugging Face ``Trainer.train()`` with logging_steps=10 and save_steps=N."""
    write, curve, total = run.write, run.curve, run.total
    run.heartbeat.beat(run.start_step, "setup")
    for rows in (20000, 2400):
        bar = Bar(run.out, rows, desc="Map", unit=" examples", ncols=run.ncols)
        bar.draw()
        time.sleep(min(0.5, run.step_time * 2))
        bar.n = rows
        bar._fixed_rate = rows / random.Random(rows).uniform(0.8, 1.3)
        bar.draw()
        write("\n")
    log_history = list((run.resumed or {}).get("log_history", []))
    bar = Bar(run.out, total, ncols=run.ncols)
    bar.draw()
    started = time.monotonic()
    losses = []
    for step in range(run.start_step + 1, total + 1):
        run.heartbeat.beat(step, "train")
        run.pause(step)
        bar.update_to(step, force=step == run.start_step + 1)
        run.out.flush()
        losses.append(curve.loss(step))
        epoch = step / run.spe
        if step % 10 == 0:
            entry = {"loss": "%.4g" % curve.loss(step), "grad_norm": "%.4g" % curve.grad_norm(step),
                     "learning_rate": "%.4g" % curve.lr(step), "epoch": "%.4g" % epoch}
            log_history.append({"loss": round(curve.loss(step), 4), "learning_rate": curve.lr(step),
                                "epoch": round(epoch, 4), "step": step})
            bar.clear()
            write(str(entry) + "\n")
            bar.draw()
            run.out.flush()
        if run.every and step % run.every == 0:
            run.save(step, {"epoch": round(epoch, 4), "log_history": log_history[-50:], "max_steps": total,
                            "save_steps": run.every, "logging_steps": 10})
            shards = Bar(run.out, 1, desc="Writing model shards", ncols=run.ncols)
            write("\n")
            shards.draw()
            write("\x1b[A")
            shards.n = 1
            shards._fixed_rate = random.Random(step).uniform(400, 900)
            shards.draw()
            write("\n")
            bar.draw()
            run.out.flush()
    runtime = time.monotonic() - started
    done = max(1, total - run.start_step)
    summary = {"train_runtime": "%.4g" % runtime, "train_samples_per_second": "%.4g" % (8 * done / runtime),
               "train_steps_per_second": "%.4g" % (done / runtime),
               "train_loss": "%.4g" % (sum(losses) / max(1, len(losses))), "epoch": "%.4g" % (total / run.spe)}
    bar.clear()
    write(str(summary) + "\n")
    bar.draw(final=True)
    write("\n")


def run_torchrun(run: Run) -> None:
    """karpathy/llm.c ``train_gpt2.py`` launched with torchrun on ``--nproc`` GPUs."""
    write, curve, total, args = run.write, run.curve, run.total, run.args
    if args.nproc > 1:
        now = time.time()
        stamp = time.strftime("W%m%d %H:%M:%S", time.localtime(now)) + ".%06d" % int(now % 1 * 1e6)
        where = "%s %d torch/distributed/run.py:793]" % (stamp, os.getppid())
        write("%s \n%s *****************************************\n" % (where, where))
        write("%s Setting OMP_NUM_THREADS environment variable for each process to be 1 in default, to avoid "
              "your system being overloaded, please further tune the variable for optimal performance in your "
              "application as needed. \n%s *****************************************\n" % (where, where))
    tokens = 524288
    write("total desired batch size: %d\n" % tokens)
    write("=> calculated gradient accumulation steps: %d\n" % max(1, 8 // max(1, args.nproc)))
    write("using regular AdamW\n")
    run.heartbeat.beat(run.start_step, "setup")
    if run.resumed:
        write("resuming from %s (step %d)\n" % (args.resume, run.start_step))
    write("val loss %.6f\n" % (curve.loss(run.start_step) + 0.08))
    for step in range(run.start_step + 1, total + 1):
        run.heartbeat.beat(step, "train")
        t0 = time.monotonic()
        run.pause(step)
        ms = (time.monotonic() - t0) * 1000
        write("step %4d/%d | train loss %.6f | norm %.4f | lr %.2e | (%.2f ms | %.0f tok/s)\n"
              % (step, total, curve.loss(step), curve.grad_norm(step), curve.lr(step), ms, tokens / (ms / 1000)))
        if step % 250 == 0 or step == total:
            run.heartbeat.beat(step, "eval")
            run.pause(step, 3.0)
            write("val loss %.6f\n" % (curve.loss(step) + 0.08))
        if run.every and step % run.every == 0:
            path = os.path.join(args.checkpoint_dir, run.checkpoints.name(step))
            write("saving checkpoint to %s\n" % path)
            run.save(step, {})


def _lightning_preamble(run: Run) -> None:
    write, args = run.write, run.args
    write("GPU available: True (cuda), used: True\nTPU available: False, using: 0 TPU cores\n")
    write("LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [%s]\n" % ",".join(str(i) for i in range(args.nproc)))
    path = os.path.abspath(args.resume) if args.resume else None
    if path:
        write("Restoring states from the checkpoint path at %s\n" % path)
    rows = [("0", "model", "VisionTransformer", "85.8 M", "train"), ("1", "criterion", "CrossEntropyLoss", "0", "train")]
    heads = ("", "Name", "Type", "Params", "Mode")
    widths = [max(len(r[i]) for r in rows + [heads]) for i in range(5)]
    table = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [heads] + rows]
    rule = "-" * len(table[0])
    write("\n".join([table[0], rule] + table[1:] + [rule]) + "\n")
    write("85.8 M    Trainable params\n0         Non-trainable params\n85.8 M    Total params\n"
          "343.230   Total estimated model params size (MB)\n152       Modules in train mode\n"
          "0         Modules in eval mode\n")
    if path:
        write("Restored all states from the checkpoint at %s\n" % path)


def _lightning_eval_bars(run: Run, desc: str, batches: int, step: int) -> None:
    """Validation/sanity bars, drawn one row below the main bar (``\\n`` ... ``\\x1b[A``)."""
    write = run.write
    idle = Bar(run.out, None, desc=desc.split(" DataLoader")[0], ncols=run.ncols, smoothing=0, invert_rate=False)
    for _ in range(2):
        write("\n")
        idle.draw()
        write("\x1b[A")
    bar = Bar(run.out, batches, desc=desc, ncols=run.ncols, smoothing=0, invert_rate=False, mininterval=0)
    write("\n")
    bar.draw()
    write("\x1b[A")
    for n in range(1, batches + 1):
        run.pause(step, 0.25)
        bar.n = n
        write("\n")
        bar.draw()
        write("\x1b[A")
    write("\n\r" + " " * bar.last_len + "\x1b[A")


def run_lightning(run: Run) -> None:
    """``Trainer(max_epochs=E).fit(model, ckpt_path=...)`` with Lightning's TQDMProgressBar."""
    write, curve, spe = run.write, run.curve, run.spe
    run.heartbeat.beat(run.start_step, "setup")
    _lightning_preamble(run)
    sanity = Bar(run.out, None, desc="Sanity Checking", ncols=run.ncols, smoothing=0, invert_rate=False)
    sanity.draw()
    sanity.draw()
    check = Bar(run.out, 2, desc="Sanity Checking DataLoader 0", ncols=run.ncols, smoothing=0, invert_rate=False)
    for n in range(3):
        check.n = n
        check.draw()
        time.sleep(min(0.2, run.step_time))
    check.clear()
    training = Bar(run.out, None, desc="Training", ncols=run.ncols, smoothing=0, invert_rate=False)
    training.draw()
    training.draw()
    bar = Bar(run.out, spe, desc="Epoch %d" % (run.start_step // spe), ncols=run.ncols, smoothing=0,
              invert_rate=False, mininterval=0.02)
    bar.n = run.start_step % spe
    bar.draw()
    epochs = run.total // spe
    val_loss = None
    for step in range(run.start_step + 1, run.total + 1):
        epoch, n = (step - 1) // spe, (step - 1) % spe + 1
        if n == 1 and bar.desc != "Epoch %d" % epoch:  # tqdm reset, then set_description
            bar.reset(spe)
            bar.draw()
            bar.desc = "Epoch %d" % epoch
            bar.draw()
        run.heartbeat.beat(step, "train")
        run.pause(step)
        bar.update_to(n)
        loss = "train_loss=" + lightning_number(curve.loss(step))
        bar.postfix = loss + (", val_loss=" + lightning_number(val_loss) if val_loss is not None else "")
        bar.update_to(n)
        run.out.flush()
        if n == spe:
            bar.draw()
            run.heartbeat.beat(step, "eval")
            _lightning_eval_bars(run, "Validation DataLoader 0", 25, step)
            val_loss = curve.loss(step) * 0.96
            bar.postfix = loss + ", val_loss=" + lightning_number(val_loss)
            bar.draw()
            bar.draw()
            run.out.flush()
        if run.every and step % run.every == 0:
            run.save(step, {"epoch": epoch})
    write("`Trainer.fit` stopped: `max_epochs=%d` reached.\n" % epochs)
    bar.draw()
    write("\n")


RUNNERS = {"hf": run_hf, "torchrun": run_torchrun, "lightning": run_lightning}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="train.py", description="gpuctl demo's simulated training job")
    parser.add_argument("--format", choices=FORMATS, required=True, help="which framework's output to print")
    parser.add_argument("--total-steps", type=int, default=5000, help="optimizer steps in the whole run")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="where checkpoints go")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="save every N steps (0: never)")
    parser.add_argument("--resume", metavar="PATH", help="continue from this checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-time", type=float, default=None, help="seconds per step")
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--keep-last", type=int, default=None, help="checkpoints to keep (0: all)")
    parser.add_argument("--checkpoint-mb", type=float, default=None, help="size of each checkpoint")
    parser.add_argument("--nproc", type=int, default=1, help="GPUs the run says it uses")
    parser.add_argument("--hang-at", type=int, default=None, metavar="STEP",
                        help="hang (spin, print nothing) on reaching this step, unless resumed")
    parser.add_argument("--heartbeat", default=os.environ.get("GPUCTL_DEMO_HEARTBEAT"),
                        help="file touched while training (default $GPUCTL_DEMO_HEARTBEAT)")
    args = parser.parse_args(argv)
    if args.total_steps < 1:
        parser.error("--total-steps must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run = Run(args, sys.stdout)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write("train.py: cannot resume from %s: %s\n" % (args.resume, exc))
        return 1
    if run.start_step >= run.total:
        sys.stderr.write("train.py: %s is at step %d; the run has %d steps, nothing to do\n"
                         % (args.resume, run.start_step, run.total))
        return 0
    try:
        RUNNERS[args.format](run)
    finally:
        run.heartbeat.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
