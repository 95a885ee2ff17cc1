"""nvidia-smi: the query the agent and the no-python shell fallback both send, the parsers
of its CSV (shared with ``backends/shell_probe.py``), and ``SmiLoop``, one resident
``nvidia-smi -lms`` whose batches are read as they arrive.

Resident because an exec of nvidia-smi pays NVML's start every time (tens of ms on a GPU
box), which would be most of a tick's cost.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

from .tools import _decode, _quietly
from .values import _clean, _first_words, _to_float, _to_int


#: Fields asked of nvidia-smi, in the order ``parse_nvidia_smi_csv`` expects them.
NVIDIA_SMI_FIELDS = (
    "index", "uuid", "name", "temperature.gpu", "utilization.gpu",
    "memory.used", "memory.total", "power.draw", "power.limit",
)
#: Arguments after ``nvidia-smi``; the shell fallback sends the very same query.
NVIDIA_SMI_QUERY_ARGS = (
    "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS),
    "--format=csv,noheader,nounits",
)
#: Loop mode asks for ``count`` too, after the usual fields: every row then says how many
#: rows make one batch, so a batch is known complete the moment its last row arrives.
NVIDIA_SMI_LOOP_FIELDS = NVIDIA_SMI_FIELDS + ("count",)
# Messages on which nvidia-smi / tmux say "nothing here", which is a state, not an error.
_NO_GPU_MARKERS = ("No devices were found",)


def parse_nvidia_smi_row(line: str, trailing: int = 0):
    """Parse one CSV row of ``NVIDIA_SMI_FIELDS`` followed by ``trailing`` more cells.

    Returns:
        ``(gpu, extra_cells)``, or None for a header, warning or truncated line.
    """
    cells = line.split(",")
    width = len(NVIDIA_SMI_FIELDS) + trailing
    if len(cells) < width or cells[0].strip() == "index":
        return None
    # nvidia-smi does not quote: a name holding a comma spans several cells.
    extra = len(cells) - width
    name = ",".join(cells[2:3 + extra])
    rest = cells[3 + extra:]
    gpu = {
        "index": _to_int(cells[0]),
        "uuid": _clean(cells[1]),
        "name": _clean(name),
        "temp_c": _to_int(rest[0]),
        "util_pct": _to_int(rest[1]),
        "mem_used_mib": _to_int(rest[2]),
        "mem_total_mib": _to_int(rest[3]),
        "power_w": _to_float(rest[4]),
        "power_limit_w": _to_float(rest[5]),
    }
    return gpu, rest[6:]


def parse_nvidia_smi_csv(text: str) -> list:
    """Parse the output of ``nvidia-smi`` with ``NVIDIA_SMI_QUERY_ARGS``.

    Tolerates a header line, units (``97 %``) and stray warning lines, because the
    shell fallback merges stderr in and users run other nvidia-smi builds. A row with
    the wrong number of cells is skipped rather than failing the whole tick.

    Args:
        text: nvidia-smi's stdout.

    Returns:
        One dict per GPU with the protocol's keys; unknown values are None.
    """
    rows = (parse_nvidia_smi_row(line) for line in text.splitlines())
    return [row[0] for row in rows if row is not None]


def classify_nvidia_smi_result(returncode: int, stdout: str, stderr: str = "") -> tuple:
    """Turn one nvidia-smi run into ``(gpu_status, gpu_error, gpus)``.

    "No devices were found" (exit 6) is a machine without GPUs: status "none". Any
    other failure (exit 9 when the driver is unreachable, 18 on a driver/library
    mismatch, ...) is "error" with nvidia-smi's own words, which users can search for.
    """
    combined = stdout + "\n" + stderr
    if any(marker in combined for marker in _NO_GPU_MARKERS):
        return "none", None, []
    if returncode == 0:
        return "ok", None, parse_nvidia_smi_csv(stdout)
    return "error", _first_words(combined) or "nvidia-smi exited with status %d" % returncode, []


def nvidia_smi_loop_args(interval):
    """Arguments after ``nvidia-smi`` for loop mode: query every ``interval`` seconds."""
    return (
        "--query-gpu=" + ",".join(NVIDIA_SMI_LOOP_FIELDS), NVIDIA_SMI_QUERY_ARGS[1],
        "-lms", str(max(1, int(round(interval * 1000)))),
    )


class SmiLoop:
    """One resident ``nvidia-smi ... -lms N``: it re-queries by itself, we read its lines.

    An exec per tick pays nvidia-smi's start (NVML init: tens of ms on a real GPU box) every
    tick; a resident one pays it once. Its stdout is non-blocking: ``pump`` takes whatever
    is there (the agent calls it when ``select`` says the fd is readable, and before each
    tick) and ``batch`` is the newest complete batch, one row per GPU. A batch is complete
    when it holds ``count`` rows (the extra last column), or, should ``count`` be unknown,
    when the index sequence restarts.

    No orphan is left on the pod: ``close`` (on every agent exit path) terminates it, and
    if the agent is killed outright the loop's next write fails (EPIPE, or SIGPIPE, whose
    default action ``subprocess`` restores in the child) because the agent held the pipe's
    only read end (``close_fds``: no other child inherits it).
    """

    def __init__(self, path, interval):
        self.interval = interval
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [path] + list(nvidia_smi_loop_args(interval)), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.batch = None  # (monotonic time, gpus) of the newest complete batch
        self.eof = False
        self._partial = b""
        self._rows = []
        self._expected = None

    def pump(self):
        """Read everything nvidia-smi has printed so far, without blocking."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                return
            self._feed(chunk)

    def _feed(self, chunk):
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > 65536:  # not nvidia-smi's CSV; do not let it grow
            self._partial = b""
        for line in lines:
            row = parse_nvidia_smi_row(_decode(line), trailing=1)
            if row is None:
                continue  # a warning line; an error that ends the loop shows as EOF
            gpu, (count,) = row
            last = self._rows[-1]["index"] if self._rows else None
            if last is not None and gpu["index"] is not None and gpu["index"] <= last:
                self._finish()  # the index restarted: the previous batch is complete
            if not self._rows:
                self._expected = _to_int(count)
            self._rows.append(gpu)
            if self._expected is not None and len(self._rows) >= self._expected:
                self._finish()

    def _finish(self):
        if self._rows:
            self.batch = (time.monotonic(), self._rows)
        self._rows = []

    def wait_for_batch(self, deadline):
        """Block until a first batch arrives, the loop ends, or ``deadline`` passes."""
        while self.batch is None and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([self.fd], [], [], left)
            self.pump()

    def alive(self):
        return not self.eof and self.proc.poll() is None

    def close(self):
        """Stop nvidia-smi and reap it; safe to call twice."""
        if self.proc.poll() is None:
            _quietly(self.proc.terminate)
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                _quietly(self.proc.kill)
                _quietly(self.proc.wait)
        _quietly(self.proc.stdout.close)
        self.eof = True
