"""W&B's binary run file for offline runs, which write no ``wandb-summary.json``.

A run's ``run-<id>.wandb`` file is a LevelDB-style log (7-byte file header, 32 KiB blocks,
records framed as crc(4) length(2) type(1)) of ``Record`` protobufs: history=2
(HistoryRecord: item=1 {key=1, nested_key=2, value_json=16}, step=2) and summary=3
(SummaryRecord: update=1, the same items).
"""

from __future__ import annotations

import json
import os

from .logs import open_log
from .tfevents import proto_fields
from .tracker_base import STEP_KEYS, TFEVENTS_WINDOW, TRACKER_HISTORY, _finite, _loss_value, _whole, make_reading, pick_loss_key
from .tracker_files import TrackerFile, _pick_value


WANDB_HEADER = b":W&B"
WANDB_BLOCK = 32768
_WANDB_FULL, _WANDB_FIRST, _WANDB_MIDDLE, _WANDB_LAST = 1, 2, 3, 4


def split_wandb_records(data, base, pending):
    """Whole ``Record`` payloads in ``data`` (which starts at file offset ``base``, a
    record boundary). ``pending`` holds a record begun in an earlier read.

    Returns:
        ``(payloads, used, pending)``: ``used`` bytes were consumed (an incomplete record
        at the end is read again next time).
    """
    payloads, pos, size = [], 0, len(data)
    if base == 0:
        if data[:4] != WANDB_HEADER:
            raise ValueError("not a W&B run file")
        pos = 7
    while True:
        room = WANDB_BLOCK - (base + pos) % WANDB_BLOCK
        if room < 7:  # a block's tail too short for a header is padding
            if pos + room > size:
                break
            pos += room
            continue
        if pos + 7 > size:
            break
        length = data[pos + 4] + (data[pos + 5] << 8)
        kind = data[pos + 6]
        if pos + 7 + length > size:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _WANDB_FULL:
            payloads.append(chunk)
            pending = None
        elif kind == _WANDB_FIRST:
            pending = chunk
        elif kind in (_WANDB_MIDDLE, _WANDB_LAST) and pending is not None:
            pending += chunk
            if kind == _WANDB_LAST:
                payloads.append(pending)
                pending = None
        elif kind == 0 and length == 0:
            pos += room - 7  # zero fill to the block's end
    return payloads, pos, pending


def _wandb_items(buf):
    """``(key, value)`` of a HistoryRecord's items or a SummaryRecord's updates."""
    items = []
    for number, wire, value in proto_fields(buf):
        if number != 1 or wire != 2:
            continue
        key, nested, raw = None, [], None
        for inum, iwire, ival in proto_fields(value):
            if inum == 1 and iwire == 2:
                key = ival.decode("utf-8", "replace")
            elif inum == 2 and iwire == 2:  # wandb-core writes the key here, one part per level
                nested.append(ival.decode("utf-8", "replace"))
            elif inum == 16 and iwire == 2:
                raw = ival
        if not key and nested:
            key = ".".join(nested)
        if key and raw is not None:
            try:
                items.append((key, json.loads(raw.decode("utf-8", "replace"))))
            except ValueError:
                continue
    return items


class WandbRun(TrackerFile):
    """A W&B run file, read on from where the last look stopped (it only grows)."""

    def __init__(self, path):
        TrackerFile.__init__(self, "wandb", path)
        self.offset, self.inode, self.pending = 0, None, None
        self.scalars, self.steps, self.history, self.series = {}, {}, [], []

    def read(self, mtime):
        fd, st = open_log(self.path)
        try:
            if st.st_ino != self.inode or st.st_size < self.offset:
                self.__init__(self.path)
                self.inode = st.st_ino
            if self.offset == 0 and st.st_size > TFEVENTS_WINDOW:  # start at a block boundary near the end
                self.offset = (st.st_size - TFEVENTS_WINDOW) // WANDB_BLOCK * WANDB_BLOCK
                self.pending = b""  # a MIDDLE/LAST tail of a record begun before: dropped
            end = min(st.st_size, self.offset + TFEVENTS_WINDOW)
            data = os.pread(fd, end - self.offset, self.offset)
        finally:
            os.close(fd)
        payloads, used, self.pending = split_wandb_records(data, self.offset, self.pending or None)
        self.offset += used
        if end < st.st_size:
            self.stamp = None
        for payload in payloads:
            self._take(payload)
        reading = make_reading("wandb", self.path, mtime, self.scalars, self.steps,
                               series=self.series, history=self.history[-TRACKER_HISTORY:])
        return reading

    def _take(self, payload):
        for number, wire, value in proto_fields(payload):
            if number == 2 and wire == 2:
                items = dict(_wandb_items(value))
                step = _whole(_pick_value(items, STEP_KEYS + ("_step",)))
                for key, item in items.items():
                    if key.startswith("_") or key in STEP_KEYS or _loss_value(item) is None:
                        continue
                    self.scalars[key] = item
                    if step is not None:
                        self.steps[key] = step
                loss_key = pick_loss_key(self.scalars)
                if step is not None and loss_key in items:
                    self.history.append((step, items[loss_key]))
                    del self.history[:-2 * TRACKER_HISTORY]
                stamp = _finite(items.get("_timestamp"))
                if step is not None and stamp is not None and (not self.series or step > self.series[-1][1]):
                    self.series.append((stamp, step))
                    del self.series[:-32]
