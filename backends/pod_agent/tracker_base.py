"""Tracker files, the part every reader shares: limits, which metric keys name the loss,
step and learning rate, bounded reads, and the reading's format (``make_reading``).

Tracker files are what the training program records itself (HF trainer_state.json,
TensorBoard events, a W&B run, Lightning's metrics.csv, MLflow's file store). They hold
the exact total, the loss at every logged step and the evaluation history, which a log
may not print. gpuctl merges them with the log (``sessions/progress/trackers.py``).
"""

from __future__ import annotations

import math
import os

from .logs import open_log, read_window


#: How often the search may run again (a new checkpoint's trainer_state.json, a new
#: run): it does only when a folder it listed changed (one stat per folder tells).
TRACKER_RESCAN_S = 10.0
#: How often a session's chosen tracker files are looked at (a stat each). They back the
#: live log up rather than race it, and a live events file changes every step: looking
#: every tick would cost a re-read and a message each tick.
TRACKER_CHECK_S = 2.0
#: Loss points kept per tracker (what the pod screen's loss curve can draw).
TRACKER_HISTORY = 64
#: A JSON tracker file bigger than this is not parsed (trainer_state.json of a very long
#: run with logging_steps=1 is ~15 MB).
TRACKER_MAX_JSON_BYTES = 16 * 1024 * 1024
#: CSV and MLflow metric files are read from at most this far before their end.
TRACKER_TAIL_BYTES = 4 * 1024 * 1024
#: An events file is read from at most this far before its end the first time, and at
#: most this much per look after that.
TFEVENTS_WINDOW = 8 * 1024 * 1024
#: Scalars kept per tracker (name -> latest value); more are dropped, alphabetically last.
TRACKER_MAX_SCALARS = 64
MAX_TRACKER_WATCHES = 256
MLFLOW_MAX_METRICS = 64
#: Keys that name the training loss, best first; past these, any key holding "loss"
#: that is not an evaluation's (see ``_is_eval_key``).
LOSS_KEYS = (
    "train/loss", "train_loss", "loss", "train/loss_step", "train_loss_step", "training_loss",
    "train/train_loss", "loss/train", "train/loss_epoch", "train_loss_epoch",
)
STEP_KEYS = ("train/global_step", "trainer/global_step", "global_step", "step")
LR_KEYS = ("train/learning_rate", "learning_rate", "lr", "train/lr")
EPOCH_KEYS = ("train/epoch", "epoch")


def _is_eval_key(key):
    low = key.lower()
    return any(word in low for word in ("eval", "val_", "val/", "/val", "valid", "test"))


def _is_eval_metric(key):
    """An evaluation's result worth showing (not its runtime or throughput)."""
    low = key.lower()
    return _is_eval_key(key) and "runtime" not in low and "per_second" not in low


def pick_loss_key(keys):
    """The key among ``keys`` that holds the training loss, or None."""
    keys = list(keys)
    for key in LOSS_KEYS:
        if key in keys:
            return key
    lowered = {}
    for key in keys:
        lowered.setdefault(key.lower(), key)
    for key in LOSS_KEYS:
        if key in lowered:
            return lowered[key]
    loose = sorted(k for k in keys if "loss" in k.lower() and not _is_eval_key(k))
    return loose[0] if loose else None


def _pick(keys, wanted):
    for key in wanted:
        if key in keys:
            return key
    return None


def _lr_key(keys):
    found = _pick(keys, LR_KEYS)
    if found is None:  # Lightning's LearningRateMonitor: lr-AdamW, lr-SGD/pg1...
        found = next((k for k in sorted(keys) if k.startswith("lr-")), None)
    return found


def _finite(value):
    """A real number, or None (bools, strings, inf and nan are not figures here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _loss_value(value):
    """A loss: a number, nan included (a nan loss is news), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isinf(value) else value


def _cell_number(text):
    """A number written in a CSV cell or an MLflow line (nan kept, inf dropped), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isinf(value) else value


def _whole(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value if isinstance(value, int) else None


def tracker_kind(path):
    """Which tracker a file is, from its name (and, for MLflow, its folders), or None."""
    name = os.path.basename(path)
    if name == "trainer_state.json":
        return "trainer_state"
    if name.startswith("events.out.tfevents."):
        return "tfevents"
    if name == "wandb-summary.json" or name.endswith(".wandb"):
        return "wandb"
    if name.endswith(".csv"):
        return "csv"
    return None


def _rate_of(series):
    """Steps per second over ``(wall_time, step)`` points, oldest first, or None."""
    if len(series) < 2:
        return None
    (t0, s0), (t1, s1) = series[0], series[-1]
    if t1 - t0 <= 0 or s1 <= s0:
        return None
    return (s1 - s0) / (t1 - t0)


def _bounded_scalars(scalars):
    if len(scalars) <= TRACKER_MAX_SCALARS:
        return scalars
    return dict(sorted(scalars.items())[:TRACKER_MAX_SCALARS])


def make_reading(source, path, mtime, scalars, steps=None, total=None, series=None,
                 history=None, extra=None):
    """The one place a tracker reading's keys are written (the ``trackers`` message).

    Args:
        scalars: name -> latest value of every scalar the file holds.
        steps: name -> the step that value was logged at.
        series: ``(wall_time, step)`` points for the rate, oldest first.
        history: ``(step, loss)`` points, oldest first.
    """
    steps = steps or {}
    keys = list(scalars)
    loss_key = pick_loss_key(keys)
    lr_key, epoch_key = _lr_key(keys), _pick(keys, EPOCH_KEYS)
    evals = dict((k, v) for k, v in sorted(scalars.items()) if _is_eval_metric(k) and _finite(v) is not None)
    eval_steps = [steps[k] for k in evals if steps.get(k) is not None]
    reading = {
        "source": source, "path": path, "mtime": mtime,
        "step": max(steps.values()) if steps else None,
        "total": total, "loss_key": loss_key,
        "loss": _loss_value(scalars.get(loss_key)) if loss_key else None,
        "loss_step": steps.get(loss_key) if loss_key else None,
        "lr": _finite(scalars.get(lr_key)) if lr_key else None,
        "epoch": _finite(scalars.get(epoch_key)) if epoch_key else None,
        "rate": _rate_of(series or ()),
        "updated": series[-1][0] if series else None,
        "history": [list(p) for p in (history or ())][-TRACKER_HISTORY:],
        "eval": dict(list(evals.items())[:8]),
        "eval_step": max(eval_steps) if eval_steps else None,
        "scalars": sorted(_bounded_scalars(scalars)),
        "best_checkpoint": None, "best_metric": None, "error": None,
    }
    if extra:
        reading.update(extra)
    return reading


def tracker_error(source, path, message):
    reading = make_reading(source, path, None, {})
    reading["error"] = message
    return reading


def _read_bounded(path, limit):
    """A file's bytes, or None when it is bigger than ``limit``."""
    fd, st = open_log(path)
    try:
        if st.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_tail(path, limit, keep_first_line=False):
    """The last ``limit`` bytes of a file from a line start (and its first line, if asked)."""
    fd, st = open_log(path)
    try:
        size = st.st_size
        if size <= limit:
            return os.pread(fd, size, 0)
        data, _ = read_window(fd, 0, size, limit)
        if keep_first_line:
            head = os.pread(fd, 65536, 0)
            newline = head.find(b"\n")
            if newline >= 0:
                data = head[:newline + 1] + data
        return data
    finally:
        os.close(fd)
