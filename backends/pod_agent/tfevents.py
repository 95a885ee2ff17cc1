"""TensorBoard events files without TensorBoard: TFRecord framing with masked CRC32C, the
few protobuf fields a scalar needs, and ``TfeventsFile``, which reads on from where the
last look stopped (an events file only grows).
"""

from __future__ import annotations

import os
import struct

from .logs import open_log
from .tracker_base import TFEVENTS_WINDOW, TRACKER_HISTORY, TRACKER_MAX_SCALARS, _is_eval_key, make_reading, pick_loss_key
from .tracker_files import TrackerFile


_CRC32C_TABLE: list[int] = []  # a string (future annotations): 3.8 never evaluates it


def crc32c(data):
    """CRC-32C (Castagnoli), as TFRecord frames use it; table-driven, pure Python."""
    table = _CRC32C_TABLE
    if not table:
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            table.append(crc)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant (the two shifted
    halves share no bit, so + is the rotation's |)."""
    crc = crc32c(data)
    return (((crc >> 15) + ((crc << 17) & 0xFFFFFFFF)) + 0xA282EAD8) & 0xFFFFFFFF


def _u32(data, pos):
    return data[pos] + (data[pos + 1] << 8) + (data[pos + 2] << 16) + (data[pos + 3] << 24)


def _u64(data, pos):
    return _u32(data, pos) + (_u32(data, pos + 4) << 32)


def _record_header_at(data, pos):
    """The payload length of a valid record header at ``pos``, else None."""
    if pos + 12 > len(data):
        return None
    if masked_crc32c(data[pos:pos + 8]) != _u32(data, pos + 8):
        return None
    return _u64(data, pos)


def split_records(data, pos=0, resync=False):
    """TFRecord payloads in ``data`` from ``pos``.

    Args:
        resync: ``pos`` may be mid-record (a window cut into a big file): skip ahead to
            the first offset where a header's CRC holds.

    Returns:
        ``(payloads, end, corrupt)``: ``end`` is where an incomplete last record starts
        (read on from there once the file grows); ``corrupt`` counts records dropped for
        a bad CRC.
    """
    payloads, corrupt, size = [], 0, len(data)
    if resync:
        while pos + 12 <= size and _record_header_at(data, pos) is None:
            pos += 1
    while pos + 12 <= size:
        length = _record_header_at(data, pos)
        if length is None:  # a torn frame: find the next good header
            corrupt += 1
            pos += 1
            while pos + 12 <= size and _record_header_at(data, pos) is None:
                pos += 1
            continue
        end = pos + 12 + length + 4
        if end > size:
            break
        payload = data[pos + 12:pos + 12 + length]
        if masked_crc32c(payload) == _u32(data, end - 4):
            payloads.append(payload)
        else:
            corrupt += 1
        pos = end
    return payloads, pos, corrupt


def _varint(buf, pos):
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result += (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def proto_fields(buf):
    """``(field number, wire type, value)`` of a protobuf message, in order.

    Varints come as ints, fixed64/fixed32 as their bytes, length-delimited as bytes.
    """
    pos, size = 0, len(buf)
    while pos < size:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        if pos > size:
            raise ValueError("truncated field")
        yield number, wire, value


# TensorProto dtypes with a scalar we can read: DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_HALF... no half.
_TENSOR_FORMATS = {1: ("<f", 4), 2: ("<d", 8), 3: ("<i", 4), 9: ("<q", 8)}


def _tensor_scalar(buf):
    """The first number of a TensorProto (dtype=1, tensor_content=4, float_val=5,
    double_val=6, int_val=7, int64_val=10), or None."""
    dtype, content = None, None
    for number, wire, value in proto_fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:
            if wire == 5:
                return struct.unpack("<f", value)[0]
            if wire == 2 and len(value) >= 4:
                return struct.unpack("<f", value[:4])[0]
        elif number == 6:
            if wire == 1:
                return struct.unpack("<d", value)[0]
            if wire == 2 and len(value) >= 8:
                return struct.unpack("<d", value[:8])[0]
        elif number in (7, 10):
            if wire == 0:
                return value
            if wire == 2 and value:
                return _varint(value, 0)[0]
    fmt = _TENSOR_FORMATS.get(dtype)
    if content and fmt and len(content) >= fmt[1]:
        return struct.unpack(fmt[0], content[:fmt[1]])[0]
    return None


def parse_event(payload):
    """An Event protobuf -> ``(wall_time, step, [(tag, value), ...])``.

    Event: wall_time=1 (double), step=2 (int64), summary=5; Summary.value=1 (repeated);
    Value: tag=1, simple_value=2 (float), tensor=8 (TensorProto). Images, histograms
    and the rest are skipped.
    """
    wall, step, values = None, 0, []
    for number, wire, value in proto_fields(payload):
        if number == 1 and wire == 1:
            wall = struct.unpack("<d", value)[0]
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= (1 << 63) else value
        elif number == 5 and wire == 2:
            for snum, swire, sval in proto_fields(value):
                if snum != 1 or swire != 2:
                    continue
                tag, scalar = None, None
                for vnum, vwire, vval in proto_fields(sval):
                    if vnum == 1 and vwire == 2:
                        tag = vval.decode("utf-8", "replace")
                    elif vnum == 2 and vwire == 5:
                        scalar = struct.unpack("<f", vval)[0]
                    elif vnum == 8 and vwire == 2:
                        scalar = _tensor_scalar(vval)
                if tag is not None and scalar is not None:
                    values.append((tag, scalar))
    return wall, step, values


class TfeventsFile(TrackerFile):
    """An events file, read on from where the last look stopped (it only grows)."""

    def __init__(self, path):
        TrackerFile.__init__(self, "tfevents", path)
        self._reset()

    def _reset(self):
        self.offset = None
        self.inode = None
        self.scalars, self.steps = {}, {}
        self.histories = {}  # loss-like tag -> [(step, value)]
        self.series = []
        self.corrupt = 0

    def read(self, mtime):
        fd, st = open_log(self.path)
        try:
            if st.st_ino != self.inode or (self.offset is not None and st.st_size < self.offset):
                self._reset()
                self.inode = st.st_ino
            resync = False
            if self.offset is None:
                self.offset = max(0, st.st_size - TFEVENTS_WINDOW)
                resync = self.offset > 0
            end = min(st.st_size, self.offset + TFEVENTS_WINDOW)
            data = os.pread(fd, end - self.offset, self.offset)
        finally:
            os.close(fd)
        payloads, used, corrupt = split_records(data, 0, resync=resync)
        self.offset += used
        self.corrupt += corrupt
        if end < st.st_size:
            self.stamp = None  # more to read: look again next tick
        for payload in payloads:
            try:
                wall, step, values = parse_event(payload)
            except (ValueError, IndexError, struct.error):
                self.corrupt += 1
                continue
            for tag, value in values:
                if tag not in self.scalars and len(self.scalars) >= TRACKER_MAX_SCALARS * 2:
                    continue
                self.scalars[tag] = value
                self.steps[tag] = step
                if "loss" in tag.lower() and not _is_eval_key(tag):
                    points = self.histories.setdefault(tag, [])
                    points.append((step, value))
                    if len(points) > 2 * TRACKER_HISTORY:
                        del points[:-TRACKER_HISTORY]
            if values and wall is not None:
                if not self.series or step > self.series[-1][1]:
                    self.series.append((wall, step))
                    del self.series[:-32]
        history = self.histories.get(pick_loss_key(self.scalars), [])
        reading = make_reading("tfevents", self.path, mtime, self.scalars, self.steps,
                               series=self.series, history=history)
        if self.corrupt:
            reading["error"] = "%d damaged records skipped" % self.corrupt
        return reading
