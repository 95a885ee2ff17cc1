"""The simple tracker readers: ``TrackerFile`` (one file, re-read only when its stat
stamp moved), HF ``trainer_state.json``, a W&B ``wandb-summary.json``, Lightning's
``metrics.csv`` and an MLflow run's metric files (read from their tail).
"""

from __future__ import annotations

import csv
import json
import os
import struct

from .logs import FileProblem, _problem, open_log
from .tracker_base import MLFLOW_MAX_METRICS, STEP_KEYS, TRACKER_HISTORY, TRACKER_MAX_JSON_BYTES, TRACKER_TAIL_BYTES, _cell_number, _finite, _loss_value, _pick, _read_bounded, _read_tail, _whole, make_reading, pick_loss_key, tracker_error
from .values import _MIB


def read_trainer_state(path, mtime=None):
    """HF ``trainer_state.json``: exact step and total, loss and eval history, best checkpoint."""
    data = _read_bounded(path, TRACKER_MAX_JSON_BYTES)
    if data is None:
        return tracker_error("trainer_state", path, "larger than %d MiB, not read" % (TRACKER_MAX_JSON_BYTES // _MIB))
    state = json.loads(data.decode("utf-8", "replace"))
    if not isinstance(state, dict):
        return tracker_error("trainer_state", path, "not a trainer state (no JSON object)")
    scalars, steps, history = {}, {}, []
    log_history = state.get("log_history")
    for entry in log_history if isinstance(log_history, list) else ():
        if not isinstance(entry, dict):
            continue
        step = _whole(entry.get("step"))
        for key, value in entry.items():
            if key == "step" or _finite(value) is None and _loss_value(value) is None:
                continue
            scalars[key] = value
            if step is not None:
                steps[key] = step
        loss = _loss_value(entry.get("loss"))
        if loss is not None and step is not None:
            history.append((step, loss))
    global_step = _whole(state.get("global_step"))
    if global_step is not None:
        steps["global_step"] = global_step
    epoch = _finite(state.get("epoch"))
    if epoch is not None:
        scalars["epoch"] = epoch
        if global_step is not None:
            steps["epoch"] = global_step
    total = _whole(state.get("max_steps"))
    extra = {
        "best_checkpoint": state.get("best_model_checkpoint") if isinstance(state.get("best_model_checkpoint"), str) else None,
        "best_metric": _finite(state.get("best_metric")),
    }
    # the summary entry a finished run appends (train_runtime, train_loss...) is not a step's loss
    scalars.pop("train_loss", None)
    reading = make_reading("trainer_state", path, mtime, scalars, steps, total if total and total > 0 else None,
                           history=history, extra=extra)
    if global_step is not None:
        reading["step"] = global_step
    return reading


class TrackerFile:
    """One tracker file (or MLflow run) and its latest reading, re-read only on change."""

    def __init__(self, kind, path):
        self.kind = kind
        self.path = path
        self.stamp = None
        self.reading = None

    def _stat_stamp(self):
        st = os.stat(self.path)
        return (st.st_size, st.st_mtime_ns, st.st_ino), st.st_mtime

    def refresh(self):
        """Read again if the file changed; True when the reading may have changed."""
        try:
            stamp, mtime = self._stat_stamp()
        except OSError as exc:
            if self.stamp == "gone":
                return False
            self.stamp = "gone"
            self.reading = tracker_error(self.kind, self.path, str(_problem(exc, self.path)))
            return True
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            self.reading = self.read(round(mtime, 3))
        except (OSError, FileProblem) as exc:
            problem = exc if isinstance(exc, FileProblem) else _problem(exc, self.path)
            self.reading = tracker_error(self.kind, self.path, str(problem))
        except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
            self.reading = tracker_error(self.kind, self.path, "unreadable: %s" % exc)
        return True

    def read(self, mtime):
        if self.kind == "trainer_state":
            return read_trainer_state(self.path, mtime)
        return read_wandb_summary(self.path, mtime)


class CsvFile(TrackerFile):
    """Lightning ``CSVLogger``'s metrics.csv (or any CSV with a step column), read on from
    where the last look stopped: Lightning appends rows, and rewrites the whole file
    only when a new column appears (then the header changed and it is read afresh)."""

    def __init__(self, path):
        TrackerFile.__init__(self, "csv", path)
        self._reset()

    def _reset(self):
        self.offset, self.inode, self.head = None, None, None
        self.header, self.step_col, self.loss_key = None, None, None
        self.scalars, self.steps, self.history = {}, {}, []

    def read(self, mtime):
        fd, st = open_log(self.path)
        try:
            head = os.pread(fd, 4096, 0)
            first = head.split(b"\n", 1)[0]
            if (st.st_ino != self.inode or first != self.head or self.offset is None or self.header is None
                    or st.st_size < self.offset):
                self._reset()
                self.inode, self.head = st.st_ino, first
                data = _read_tail(self.path, TRACKER_TAIL_BYTES, keep_first_line=True)
                complete = data.rfind(b"\n") + 1  # a row still being written waits
                lines = data[:complete].decode("utf-8", "replace").splitlines()
                self.header = next(csv.reader(lines[:1]), None)
                rows = lines[1:]
                self.offset = st.st_size - (len(data) - complete)
            else:
                data = os.pread(fd, min(st.st_size - self.offset, TRACKER_TAIL_BYTES), self.offset)
                complete = data.rfind(b"\n") + 1  # a row still being written waits
                rows = data[:complete].decode("utf-8", "replace").splitlines()
                self.offset += complete
        finally:
            os.close(fd)
        if not self.header:
            return tracker_error("csv", self.path, "empty")
        if self.step_col is None:
            self.step_col = _pick(self.header, ("step", "global_step", "trainer/global_step"))
            self.loss_key = pick_loss_key(self.header)
        self._take(rows)
        steps, history = self.steps, self.history
        if self.step_col == "step":
            # Lightning writes the 0-based index of the batch that logged (the 5th step
            # logs step 4): as steps completed when the value was logged, one more.
            steps = dict((k, v + 1) for k, v in steps.items())
            history = [(s + 1, v) for s, v in history]
        return make_reading("csv", self.path, mtime, self.scalars, steps, history=history)

    def _take(self, rows):
        header, step_col = self.header, self.step_col
        step_at = header.index(step_col) if step_col else None
        for row in csv.reader(rows):
            step = None
            if step_at is not None and step_at < len(row):
                step = _whole(_cell_number(row[step_at]))
            for key, cell in zip(header, row):
                if not cell or key == step_col:
                    continue
                value = _cell_number(cell)
                if value is None:
                    continue
                self.scalars[key] = value
                if step is not None:
                    self.steps[key] = step
                if key == self.loss_key and step is not None:
                    self.history.append((step, value))
        del self.history[:-TRACKER_HISTORY]


def read_wandb_summary(path, mtime=None):
    """A W&B run's ``files/wandb-summary.json``: the latest value of everything logged."""
    data = _read_bounded(path, TRACKER_MAX_JSON_BYTES)
    if data is None:
        return tracker_error("wandb", path, "too large")
    summary = json.loads(data.decode("utf-8", "replace"))
    if not isinstance(summary, dict):
        return tracker_error("wandb", path, "not a summary (no JSON object)")
    scalars = dict((k, v) for k, v in summary.items()
                   if not k.startswith("_") and (_finite(v) is not None or _loss_value(v) is not None))
    step_key = _pick(summary, STEP_KEYS)
    step = _whole(summary.get(step_key)) if step_key else None
    for key in STEP_KEYS:
        scalars.pop(key, None)
    steps = dict((k, step) for k in scalars) if step is not None else {}
    if step is not None:
        steps[step_key] = step
    reading = make_reading("wandb", path, mtime, scalars, steps)
    runtime, stamp = _finite(summary.get("_runtime")), _finite(summary.get("_timestamp"))
    reading["updated"] = stamp
    if step and runtime:
        reading["rate"] = step / runtime
    return reading


def _pick_value(items, keys):
    for key in keys:
        if key in items:
            return items[key]
    return None


class MlflowRun(TrackerFile):
    """An MLflow file-store run: ``<run>/metrics/<key>`` files of "timestamp value step"."""

    def __init__(self, path):
        TrackerFile.__init__(self, "mlflow", path)

    def _metric_files(self):
        """Metric files, keys with '/' being nested folders; at most MLFLOW_MAX_METRICS."""
        files, folders = [], [os.path.join(self.path, "metrics")]
        while folders and len(files) < MLFLOW_MAX_METRICS:
            with os.scandir(folders.pop()) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    else:
                        files.append(entry.path)
        return files[:MLFLOW_MAX_METRICS]

    def _stat_stamp(self):
        files = self._metric_files()
        stamps, newest = [], 0.0
        for path in files:
            st = os.stat(path)
            stamps.append((path, st.st_size, st.st_mtime_ns))
            newest = max(newest, st.st_mtime)
        if not files:
            raise FileNotFoundError(2, "no metrics", os.path.join(self.path, "metrics"))
        self._files = files
        return tuple(stamps), newest

    def read(self, mtime):
        folder = os.path.join(self.path, "metrics")
        scalars, steps, histories, series = {}, {}, {}, []
        for path in self._files:
            key = os.path.relpath(path, folder).replace(os.sep, "/")
            points = []
            for line in _read_tail(path, TRACKER_TAIL_BYTES).decode("utf-8", "replace").splitlines():
                parts = line.split()
                if len(parts) < 2:
                    continue
                stamp, value = _cell_number(parts[0]), _cell_number(parts[1])
                step = _whole(_cell_number(parts[2])) if len(parts) > 2 else 0
                if stamp is None or value is None or step is None:
                    continue
                points.append((stamp / 1000.0, step, value))
            if not points:
                continue
            scalars[key], steps[key] = points[-1][2], points[-1][1]
            histories[key] = points
        loss_key = pick_loss_key(scalars)
        history = [(s, v) for _, s, v in histories.get(loss_key, ())]
        if loss_key:
            series = [(t, s) for t, s, _ in histories[loss_key]][-32:]
        return make_reading("mlflow", self.path, mtime, scalars, steps, series=series,
                            history=history[-TRACKER_HISTORY:])
