"""gpuctl's remote agent: one long-lived process per pod that streams JSON lines.

gpuctl sends this file's source at connect time (``agent_command.build_agent_command``)
and runs it with ``python3 -u -c``; nothing is installed on the pod. Hence the rules:
standard library only, any python3 >= 3.8 (no ``X | Y`` at runtime, no ``match``, no
3.9+ APIs), and importing it does nothing (the local backend calls ``collect_sample`` in a
thread, the no-python shell fallback reuses the parsers). It is one file, longer than the
house ~400 lines, because it is shipped to the pod as one source string.

Protocol v1 (stdout, one JSON object per line, flushed):

* ``{"kind": "hello", "v": 1, "python", "hostname", "pid", "gpu_source"}`` once, first;
* ``{"kind": "sample", ...}`` every tick, see ``make_sample`` for the keys; each entry
  of ``tmux`` is ``{"name", "created", "attached", "windows", "state", "exit_status",
  "pid"}`` (see ``parse_tmux_sessions``);
* ``{"kind": "log", "v": 1, "id", "path", "data", "offset", "skipped", "event"}`` for a
  followed file: ``data`` is text (UTF-8, errors replaced, ``\\r`` and ANSI untouched),
  ``offset`` the byte offset just after it (resume there with ``from_offset``),
  ``skipped`` the bytes dropped to honour ``max_bytes`` (0 normally), ``event`` null or
  "opened" (the first message, or the file appeared), "missing", "truncated", "rotated";
* ``{"kind": "tail", "v": 1, "id", "path", "data", "size", "error"}`` answers ``tail``;
* ``{"kind": "trackers", "v": 1, "id", "roots", "trackers", "current", "search"}`` after
  a tick in which a watched session's tracker files changed: the changed readings (see
  ``make_reading``) and the sources that stand (see ``TrackerWatch.check``);
* ``{"kind": "error", "v": 1, "message"}`` (plus ``"id"`` when the command had one)
  when a command on stdin is wrong or failed.

Commands arrive on stdin as JSON lines, dispatched through ``COMMANDS``:
``{"cmd": "interval", "seconds": 2.0}``, ``{"cmd": "sample"}``,
``{"cmd": "follow", "id", "path", "tail_lines"?: 0, "from_offset"?, "max_bytes"?: 262144}``,
``{"cmd": "unfollow", "id"}``, ``{"cmd": "follow_interval", "seconds"}`` (default 0.25,
independent of the telemetry interval), ``{"cmd": "tail", "id", "path", "lines",
"max_bytes"?}`` and ``{"cmd": "trackers", "id", "roots": [dir or file, ...], "every_s"?: 2.0}``
(an empty list stops watching). The agent exits when stdin reaches EOF or stdout breaks: the SSH
channel is gone and no orphan may stay behind.

Options (the one JSON argument): ``interval`` (s), ``disk_path``, ``tmux`` (bool),
``gpu_loop`` (bool, default true: one resident ``nvidia-smi -lms`` instead of an exec per
tick), ``gpu_loop_retry_s`` (first wait before loop mode is retried after a failure) and
``tmux_refresh_s`` (the longest an unchanged tmux listing is reused; 0: list every tick).

Cost per tick is the point of the design: an exec of nvidia-smi costs NVML's start every
time (tens of ms on a GPU box), so nvidia-smi stays resident in loop mode; tmux is exec'd
only while its server's socket exists, once (``list-panes -a``) for everything, and only
when the server's state may have changed (``TmuxReader``).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

AGENT_PROTOCOL_VERSION = 1

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
#: One row per pane, tab-separated (session names may hold spaces; tmux escapes tabs in
#: names). ``parse_tmux_sessions`` folds the panes into one entry per session. One
#: ``list-panes -a`` gives what ``list-sessions`` gave plus whether each pane's program
#: still runs, its exit status (kept by ``remain-on-exit``) and its pid.
TMUX_FIELDS = (
    "session_name", "session_created", "session_attached", "session_windows",
    "window_index", "pane_index", "pane_dead", "pane_dead_status", "pane_pid",
)
TMUX_FORMAT = "\t".join("#{%s}" % field for field in TMUX_FIELDS)
#: ``-u``: a tmux client whose locale is not UTF-8 prints the format's tabs as ``_``,
#: and an SSH exec channel usually has no LANG at all; -u makes the output verbatim.
TMUX_LIST_ARGS = ("-u", "list-panes", "-a", "-F", TMUX_FORMAT)
#: gpuctl's launch wrapper records each session's exit status here. tmux sometimes
#: never reaps an exited pane's program (seen with tmux 3.3a, tmux/tmux#311), leaving
#: ``#{pane_dead_status}`` empty; the file still knows.
EXIT_FILE = "~/.gpuctl/sessions/%s.exit"

NVIDIA_SMI_TIMEOUT_S = 5.0
TMUX_TIMEOUT_S = 5.0
#: With a tmux server up, its sessions are listed again (one exec, ~2 ms of CPU, the
#: biggest cost of a tick once nvidia-smi is resident) only when something the listing
#: reports may have changed (see ``TmuxReader``), or at least this often, for what no
#: cheap signal shows (a session renamed, a second client attached).
TMUX_REFRESH_S = 5.0
#: A hung nvidia-smi is not asked again for this long, so the agent stays responsive.
NVIDIA_SMI_BACKOFF_S = 15.0
#: After the resident nvidia-smi (loop mode) failed, exec per tick and try the loop again
#: after this long, doubling per consecutive failure up to ``NVIDIA_SMI_LOOP_RETRY_MAX_S``.
NVIDIA_SMI_LOOP_RETRY_S = 30.0
NVIDIA_SMI_LOOP_RETRY_MAX_S = 600.0
#: Above this interval the agent execs nvidia-smi per tick instead of keeping one resident:
#: an exec every 10 s or more costs little, and a resident nvidia-smi orphaned by a
#: SIGKILLed agent dies on its next write (EPIPE), so it outlives the agent at most this long.
NVIDIA_SMI_LOOP_MAX_INTERVAL_S = 10.0
#: A loop that printed no complete batch for this many intervals (and at least
#: ``NVIDIA_SMI_LOOP_STALL_MIN_S``) has stalled: it is killed and the agent falls back.
NVIDIA_SMI_LOOP_STALL_INTERVALS = 3
NVIDIA_SMI_LOOP_STALL_MIN_S = 3.0
#: A tool missing from PATH is looked for again this often (it may get installed).
WHICH_RECHECK_S = 30.0
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0
MAX_COMMAND_BYTES = 1 << 20
#: Log following: how often followed files are looked at (its own cadence, not the
#: telemetry interval), the most bytes one file may send per look, and limits.
FOLLOW_INTERVAL_S = 0.25
MIN_FOLLOW_INTERVAL_S = 0.05
MAX_FOLLOW_INTERVAL_S = 60.0
FOLLOW_MAX_BYTES = 256 * 1024
MAX_FOLLOW_MAX_BYTES = 16 * 1024 * 1024
MAX_FOLLOWS = 256
MAX_TAIL_LINES = 1000000
TAIL_BLOCK = 64 * 1024

_MIB = 1024 * 1024
_NVML_TEMPERATURE_GPU = 0  # pynvml.NVML_TEMPERATURE_GPU, the only sensor NVML defines
# Messages on which nvidia-smi / tmux say "nothing here", which is a state, not an error.
_NO_GPU_MARKERS = ("No devices were found",)
_NO_TMUX_SERVER_MARKERS = (
    "no server running", "no sessions", "error connecting to", "server exited unexpectedly",
)


# ---------------------------------------------------------------------------------------
# Value parsing: unknown ("[N/A]", "[Not Supported]", ...) becomes None, never an error.


def _clean(text):
    """Strip a CSV cell and map nvidia-smi's bracketed placeholders to None."""
    value = text.strip()
    if not value or value == "N/A" or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def _number(text):
    """Parse '97', '97 %', '312.50 W' or '61234 MiB' as a finite float, else None."""
    value = _clean(text)
    if value is None:
        return None
    head = value.split(" ", 1)[0]
    try:
        number = float(head)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _to_int(text):
    number = _number(text)
    return None if number is None else int(round(number))


def _to_float(text):
    number = _number(text)
    return None if number is None else round(number, 2)


# ---------------------------------------------------------------------------------------
# Parsers shared with the shell fallback.


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


def parse_tmux_sessions(text: str) -> list:
    """Parse ``tmux list-panes -a -F TMUX_FORMAT`` into one entry per session.

    Each entry has ``name``, ``created``, ``attached``, ``windows``, then ``state``
    ("running" while any pane's program runs, else "exited": only ``remain-on-exit``
    keeps a session whose panes all died), ``exit_status`` (the exited session's status,
    taken from its first window's first pane; None while running, or when a signal
    ended it) and ``pid`` (the first pane's). Sessions keep tmux's order; malformed
    rows are skipped.
    """
    panes: dict[str, dict] = {}
    for line in text.splitlines():
        cells = line.rsplit("\t", len(TMUX_FIELDS) - 1)
        if len(cells) != len(TMUX_FIELDS) or not cells[0]:
            continue
        created, attached, windows, window, pane = (_to_int(cell) for cell in cells[1:6])
        # Unknown indexes sort last; the first pane is the lowest (window, pane).
        where = (_INF if window is None else window, _INF if pane is None else pane)
        session = panes.setdefault(cells[0], {"head": (created, attached, windows), "panes": []})
        session["panes"].append((where, cells[6].strip() == "1", _to_int(cells[7]), _to_int(cells[8])))
    sessions = []
    for name, session in panes.items():
        created, attached, windows = session["head"]
        _, first_dead, first_status, first_pid = min(session["panes"], key=lambda p: p[0])
        running = not all(dead for _, dead, _, _ in session["panes"])
        sessions.append({
            "name": name, "created": created, "attached": attached, "windows": windows,
            "state": "running" if running else "exited",
            "exit_status": None if running or not first_dead else first_status,
            "pid": first_pid,
        })
    return sessions


_INF = float("inf")


def classify_tmux_result(returncode: int, stdout: str, stderr: str = "") -> tuple:
    """Turn one ``tmux list-panes`` run into ``(tmux_status, tmux_error, sessions)``.

    No tmux server (or a stale socket) means no sessions: "ok" with an empty list.
    """
    if returncode == 0:
        return "ok", None, parse_tmux_sessions(stdout)
    combined = stdout + "\n" + stderr
    if any(marker in combined for marker in _NO_TMUX_SERVER_MARKERS):
        return "ok", None, []
    return "error", _first_words(combined) or "tmux exited with status %d" % returncode, []


def parse_uptime(text: str):
    """First number of /proc/uptime (seconds since boot), or None."""
    fields = text.split()
    return _to_float(fields[0]) if fields else None


def _first_words(text, limit=300):
    """The first non-empty lines of a tool's output, joined, for an error message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:limit] or None


# ---------------------------------------------------------------------------------------
# Readers. Each returns plain data and never raises for an expected failure.


def run_command(argv, timeout):
    """Run a tool, return ``(returncode, stdout, stderr)`` decoded leniently.

    Raises:
        subprocess.TimeoutExpired: the tool did not finish (it has been killed).
        OSError: the tool could not be started.
    """
    done = subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=timeout,
    )
    return done.returncode, _decode(done.stdout), _decode(done.stderr)


def _decode(data):
    """Tools print in the pod's locale; a stray byte must not cost the tick."""
    return data.decode("utf-8", "replace")


class ToolLocator:
    """Caches ``shutil.which(name)``; looks again for a missing tool only now and then.

    Scanning PATH every tick for 200 followed pods is waste; a tool that appears later
    (installed mid-run) is still found within ``recheck_s``.
    """

    def __init__(self, name, recheck_s=WHICH_RECHECK_S):
        self.name = name
        self.recheck_s = recheck_s
        self._path = None
        self._checked_at = None

    def get(self, now):
        """Return the tool's path or None, looking PATH up only when due."""
        due = self._checked_at is None or now - self._checked_at >= self.recheck_s
        if self._path is None and due:
            self._path = shutil.which(self.name)
            self._checked_at = now
        return self._path

    def forget(self, now):
        """The cached path stopped working: treat the tool as missing until rechecked."""
        self._path = None
        self._checked_at = now


class NvmlReader:
    """Reads GPUs through pynvml, initialised once, with handles kept between ticks.

    Any error on one field (``NVMLError_NotSupported`` on consumer cards, lost GPUs)
    makes that field None, the way nvitop turns NVML errors into N/A at the edge.
    """

    def __init__(self, nvml):
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        # Name and UUID never change; ask once.
        self._static = [
            (_text(self._field(nvml.nvmlDeviceGetUUID, h)), _text(self._field(nvml.nvmlDeviceGetName, h)))
            for h in self._handles
        ]

    @classmethod
    def open(cls):
        """Return a reader, or None when pynvml is absent or NVML will not start."""
        try:
            import pynvml
            pynvml.nvmlInit()
        except Exception:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return None
        try:
            return cls(pynvml)
        except Exception:
            _quietly(pynvml.nvmlShutdown)
            return None

    @staticmethod
    def _field(getter, *args):
        try:
            return getter(*args)
        except Exception:  # one bad field must not cost the tick
            return None

    def read(self):
        """One dict per GPU, same keys as ``parse_nvidia_smi_csv``."""
        nvml, field = self._nvml, self._field
        gpus = []
        for index, handle in enumerate(self._handles):
            uuid, name = self._static[index]
            memory = field(nvml.nvmlDeviceGetMemoryInfo, handle)
            util = field(nvml.nvmlDeviceGetUtilizationRates, handle)
            power = field(nvml.nvmlDeviceGetPowerUsage, handle)
            limit = field(nvml.nvmlDeviceGetPowerManagementLimit, handle)
            gpus.append({
                "index": index,
                "uuid": uuid,
                "name": name,
                "temp_c": field(nvml.nvmlDeviceGetTemperature, handle, _NVML_TEMPERATURE_GPU),
                "util_pct": getattr(util, "gpu", None),
                "mem_used_mib": _mib(getattr(memory, "used", None)),
                "mem_total_mib": _mib(getattr(memory, "total", None)),
                "power_w": None if power is None else round(power / 1000.0, 2),
                "power_limit_w": None if limit is None else round(limit / 1000.0, 2),
            })
        return gpus

    def close(self):
        _quietly(self._nvml.nvmlShutdown)


def _text(value):
    """pynvml < 11 returns bytes for names and UUIDs; newer ones return str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _mib(value):
    return None if value is None else int(value // _MIB)


def _quietly(fn):
    try:
        fn()
    except Exception:
        pass


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


class GpuReader:
    """Chooses pynvml when usable, else nvidia-smi, else reports "no GPU".

    With nvidia-smi, loop mode is the default: one resident ``nvidia-smi -lms`` (see
    ``SmiLoop``), restarted when the interval changes. When it fails (exits, prints an
    error such as a driver failure or "No devices were found", or stalls) the reader falls
    back to one exec per tick, which reports the failure exactly as before, and tries loop
    mode again later with backoff.

    Args:
        use_nvml: try pynvml first. Tests and pods with a broken pynvml turn it off.
        timeout: seconds before an nvidia-smi call counts as hung.
        loop: use loop mode (False: one exec per tick, always).
        interval: seconds between ticks, the loop's period (see ``set_interval``).
        loop_retry_s: first wait before loop mode is tried again after a failure.
    """

    def __init__(self, use_nvml=True, timeout=NVIDIA_SMI_TIMEOUT_S, loop=True, interval=1.0,
                 loop_retry_s=NVIDIA_SMI_LOOP_RETRY_S):
        self.nvml = NvmlReader.open() if use_nvml else None
        self.timeout = timeout
        self.loop_enabled = bool(loop)
        self.interval = interval
        self.loop_retry_s = loop_retry_s
        self._smi = ToolLocator("nvidia-smi")
        self._backoff_until = None
        self._loop = None
        self._latest = None  # (monotonic time, gpus) of the newest batch from any loop
        self._loop_failures = 0
        self._loop_retry_at = None
        self._smi.get(time.monotonic())

    @property
    def source(self):
        """The protocol's ``gpu_source``: "pynvml", "nvidia-smi" or None."""
        if self.nvml is not None:
            return "pynvml"
        return "nvidia-smi" if self._smi.get(time.monotonic()) else None

    @property
    def mode(self):
        """How GPUs are read right now: "pynvml", "loop", "exec" or None (no tool)."""
        if self.nvml is not None:
            return "pynvml"
        if self._loop is not None and self._loop.alive():
            return "loop"
        return "exec" if self._smi.get(time.monotonic()) else None

    def set_interval(self, seconds):
        """New tick period: a running loop is restarted at the next read."""
        self.interval = seconds
        if self._loop is not None and self._loop.interval != seconds:
            self._loop.close()
            self._loop = None

    def fileno(self):
        """The loop's stdout while it may still print (for the agent's select), else None."""
        if self._loop is None or self._loop.eof:
            return None
        return self._loop.fd

    def pump(self):
        """Drain the loop's output now (its fd was readable)."""
        if self._loop is not None:
            self._loop.pump()

    def read(self):
        """Return ``(gpu_status, gpu_error, gpus)`` for this tick."""
        if self.nvml is not None:
            gpus = self.nvml.read()
            return ("ok", None, gpus) if gpus else ("none", None, [])
        now = time.monotonic()
        if self._backoff_until is not None and now < self._backoff_until:
            return "error", self._hung_message(), []
        path = self._smi.get(now)
        if path is None:
            self._stop_loop()
            return "none", None, []
        if self._loop_wanted(now):
            result = self._read_loop(path)
            if result is not None:
                return result
        return self._read_exec(path, time.monotonic())

    def _loop_wanted(self, now):
        if not self.loop_enabled or self.interval > NVIDIA_SMI_LOOP_MAX_INTERVAL_S:
            self._stop_loop()
            return False
        return self._loop_retry_at is None or now >= self._loop_retry_at

    def _read_loop(self, path):
        """The newest batch from the loop, or None to exec this tick instead."""
        if self._loop is None:
            try:
                self._loop = SmiLoop(path, self.interval)
            except OSError:
                self._loop_failed()
                return None
        loop = self._loop
        loop.pump()
        stall = max(NVIDIA_SMI_LOOP_STALL_MIN_S, NVIDIA_SMI_LOOP_STALL_INTERVALS * self.interval)
        if loop.batch is None and not self._fresh(self._latest, stall):
            # A new loop: wait for its first batch as long as an exec would be waited for.
            loop.wait_for_batch(loop.started + self.timeout)
            if loop.batch is None and loop.alive():
                self._loop_failed()
                self._backoff_until = time.monotonic() + NVIDIA_SMI_BACKOFF_S
                return "error", self._hung_message(), []
        if loop.batch is not None:
            self._latest = loop.batch
            self._loop_failures = 0
        since = loop.batch[0] if loop.batch is not None else loop.started
        if not loop.alive() or time.monotonic() - since > stall:
            # It ended (a driver failure, "No devices were found", killed) or stalled:
            # the exec this tick reports why, in nvidia-smi's own words, as it always did.
            self._loop_failed()
            return None
        return "ok", None, self._latest[1]

    @staticmethod
    def _fresh(batch, limit):
        return batch is not None and time.monotonic() - batch[0] <= limit

    def _loop_failed(self):
        self._stop_loop()
        self._latest = None
        self._loop_failures += 1
        wait = self.loop_retry_s * (2 ** min(self._loop_failures - 1, 10))
        self._loop_retry_at = time.monotonic() + min(NVIDIA_SMI_LOOP_RETRY_MAX_S, wait)

    def _stop_loop(self):
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _read_exec(self, path, now):
        """One nvidia-smi run for this tick (the pre-loop way, and the fallback)."""
        try:
            result = run_command((path,) + NVIDIA_SMI_QUERY_ARGS, self.timeout)
        except subprocess.TimeoutExpired:
            self._backoff_until = time.monotonic() + NVIDIA_SMI_BACKOFF_S
            return "error", self._hung_message(), []
        except FileNotFoundError:
            self._smi.forget(now)
            return "none", None, []
        except OSError as exc:
            return "error", "could not run nvidia-smi: %s" % exc, []
        self._backoff_until = None
        return classify_nvidia_smi_result(*result)

    def _hung_message(self):
        return "nvidia-smi did not answer within %g s" % self.timeout

    def close(self):
        """Stop the loop and release NVML; the agent calls this on every exit path."""
        self._stop_loop()
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None


def tmux_socket_path(environ=None):
    """Where tmux's default server listens, found the way the tmux client finds it.

    ``$TMUX`` (set inside a tmux session) names the socket before its first comma;
    otherwise it is ``$TMUX_TMPDIR`` (or ``/tmp``) ``/tmux-<uid>/default``.
    """
    environ = os.environ if environ is None else environ
    inside = environ.get("TMUX", "")
    if inside and not inside.startswith(","):
        return inside.split(",", 1)[0]
    base = environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(base, "tmux-%d" % os.getuid(), "default")


def _list_tmux(locator, path, now, timeout):
    try:
        result = run_command((path,) + TMUX_LIST_ARGS, timeout)
    except subprocess.TimeoutExpired:
        return "error", "tmux did not answer within %g s" % timeout, []
    except FileNotFoundError:
        locator.forget(now)
        return "none", None, []
    except OSError as exc:
        return "error", "could not run tmux: %s" % exc, []
    status, error, sessions = classify_tmux_result(*result)
    return status, error, fill_exit_status(sessions)


def fill_exit_status(sessions: list) -> list:
    """Take an exited session's status from gpuctl's exit file where tmux lost it.

    The launch wrapper deletes the file when a run starts, so a file next to an
    exited session is that run's.
    """
    for session in sessions:
        if session.get("state") == "exited" and session.get("exit_status") is None:
            text = _read_text(os.path.expanduser(EXIT_FILE % session["name"]))
            session["exit_status"] = _to_int(text.strip()) if text else None
    return sessions


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def _parent_pid(pid):
    stat_line = _read_text("/proc/%d/stat" % pid)
    if not stat_line:
        return None
    fields = stat_line[stat_line.rfind(")") + 2:].split()
    return _to_int(fields[1]) if len(fields) > 1 else None


class TmuxReader:
    """Lists tmux sessions with as few tmux execs as the answer allows.

    No server socket: no sessions, no exec. A server up: one ``list-panes -a`` exec,
    repeated only when the server's state may have changed. Every pane's program is a
    child of the tmux server, so the server's child list (``/proc/PID/task/PID/children``)
    changes when a session, window or pane is created or killed, the counters of
    reaped children in ``/proc/PID/stat`` move when a pane's program exits, even one
    that came and went between two ticks, and the server's open fds (``/proc/PID/fd``)
    change when it sees a pane's pty close, which may come after the reaping, or when a
    client attaches or detaches; tmux also chmods its socket when the first
    client attaches or the last detaches (which moves the socket's ctime). While that
    signature holds the last listing is reused, for at most ``refresh_s``: what moves no
    process (a rename, a second client attaching, killing a session whose programs had
    all exited already) shows within that time, or at once on a ``sample`` command.
    Without those /proc files (another OS) it lists every tick.

    Args:
        refresh_s: the longest a listing is reused while the signature holds.
    """

    def __init__(self, refresh_s=TMUX_REFRESH_S, timeout=TMUX_TIMEOUT_S):
        self.locator = ToolLocator("tmux")
        self.refresh_s = refresh_s
        self.timeout = timeout
        self.execs = 0  # how many listings ran: for tests and the bench
        self._cached = None
        self._listed_at = None
        self._signature = None
        self._server_pid = None

    def read(self, now, force=False):
        """``(tmux_status, tmux_error, sessions)``; ``force`` lists even if nothing changed."""
        path = self.locator.get(now)
        if path is None:
            self._forget()
            return "none", None, []
        try:
            socket_stat = os.stat(tmux_socket_path())
        except OSError:
            self._forget()
            return "ok", None, []
        signature = self._signature_of(socket_stat)
        if (not force and signature is not None and signature == self._signature
                and self._cached is not None and now - self._listed_at < self.refresh_s):
            return self._cached
        # The signature is taken before listing: a change during the exec shows next tick.
        self.execs += 1
        result = _list_tmux(self.locator, path, now, self.timeout)
        self._cached = result if result[0] == "ok" else None
        self._listed_at = now
        self._signature = signature
        # A server learned just now leaves the stored signature None: the next tick
        # takes a real one, lists once more to match it, and from then on reuses.
        self._server_pid = self._find_server(result[2]) if result[0] == "ok" else None
        return result

    def _signature_of(self, socket_stat):
        if self._server_pid is None:
            return None
        pid = self._server_pid
        children = _read_text("/proc/%d/task/%d/children" % (pid, pid))
        stat_line = _read_text("/proc/%d/stat" % pid)
        try:
            fds = tuple(sorted(os.listdir("/proc/%d/fd" % pid)))
        except OSError:
            fds = None
        if children is None or not stat_line or fds is None:
            return None
        # cminflt/cmajflt grow whenever the server reaps a child: a pane whose program
        # started and exited between two ticks leaves the child list as it was.
        reaped = tuple(stat_line[stat_line.rfind(")") + 2:].split()[8:11:2])
        return (socket_stat.st_ino, socket_stat.st_mode, socket_stat.st_ctime_ns, children, reaped, fds)

    @staticmethod
    def _find_server(sessions):
        """The server's pid: the parent of a live pane's program."""
        for session in sessions:
            pid = session.get("pid")
            if pid and session.get("state") == "running":
                parent = _parent_pid(pid)
                if parent and parent > 1:
                    return parent
        return None

    def _forget(self):
        self._cached = self._signature = self._server_pid = None


def read_disk(path):
    """Used and total bytes of the filesystem holding ``path`` (home if it is missing).

    The reported path is the one actually measured, so a fallback to home is visible.
    """
    for candidate in (path, os.path.expanduser("~")):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return {
            "path": candidate,
            "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "total_bytes": st.f_blocks * st.f_frsize,
        }
    return None


def read_load():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def read_uptime():
    try:
        with open("/proc/uptime") as handle:
            return parse_uptime(handle.read())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Logs: tail -F by byte offset, deltas capped per check, never a whole file in memory.


class FileProblem(Exception):
    """A log file that cannot be read, in plain words (``str(exc)``)."""


def _problem(exc, path):
    """Plain words for an OSError met opening or reading ``path``."""
    if isinstance(exc, FileNotFoundError):
        return FileProblem("no such file: %s" % path)
    if isinstance(exc, PermissionError):
        return FileProblem("permission denied: %s" % path)
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return FileProblem("not a regular file: %s" % path)
    return FileProblem("cannot read %s: %s" % (path, exc.strerror or exc))


def open_log(path):
    """Open a regular file for reading; returns ``(fd, os.stat_result)``.

    Raises:
        FileNotFoundError: nothing at ``path`` (a state when following: "missing").
        FileProblem: anything else that stops reading it (permissions, a directory...).
    """
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the agent in open(). (+ rather
        # than |, which the 3.8 AST check bans; the flags are distinct bits.)
        fd = os.open(path, os.O_RDONLY + getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _problem(exc, path) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem("not a regular file: %s" % path)
    return fd, st


def tail_start(fd, size, lines, limit):
    """Where the last ``lines`` lines of the file end at ``size`` begin.

    Reads backwards in blocks from the end and never further than ``limit`` bytes, so a
    2 GB log (or a sparse file) costs a few small reads. A last line without its newline
    counts as a line, as with ``tail -n``.

    Returns:
        ``(offset, capped)``; ``capped`` is True when the lines reach past ``limit``:
        then ``offset`` is ``size - limit`` and the caller moves it to a line start.
    """
    if lines <= 0 or size <= 0:
        return size, False
    floor = max(0, size - limit)
    pos, needed = size, lines
    while pos > floor:
        block = min(TAIL_BLOCK, pos - floor)
        pos -= block
        data = os.pread(fd, block, pos)
        stop = len(data)
        if pos + stop == size and data.endswith(b"\n"):
            stop -= 1  # the last line's own newline does not start a line
        while True:
            newline = data.rfind(b"\n", 0, stop)
            if newline < 0:
                break
            needed -= 1
            if needed == 0:
                return pos + newline + 1, False
            stop = newline
    return (0, False) if floor == 0 else (floor, True)


def read_window(fd, start, end, cap, align=False):
    """Read ``[start, end)`` but at most its newest ``cap`` bytes.

    When that cuts the front off (or ``align`` says ``start`` may be mid-line), the data
    begins after the first newline inside the window, so text never starts mid-line
    (or mid-character); a window without a newline is kept whole.

    Returns:
        ``(data, data_start)``; ``data_start - start`` bytes were skipped.
    """
    if end - start > cap:
        start, align = end - cap, True
    if end <= start:
        return b"", start
    if not align or start == 0:
        return os.pread(fd, end - start, start), start
    data = os.pread(fd, end - start + 1, start - 1)  # one byte more: is start a line start?
    if data[:1] == b"\n":
        return data[1:], start
    newline = data.find(b"\n", 1)
    if newline < 0 or newline == len(data) - 1:
        return data[1:], start
    return data[newline + 1:], start - 1 + newline + 1


def _new_decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def make_log(follow, data, offset, skipped, event):
    return {
        "kind": "log", "v": AGENT_PROTOCOL_VERSION, "id": follow.id, "path": follow.path,
        "data": data, "offset": offset, "skipped": skipped, "event": event,
    }


class Follow:
    """One followed file, ``tail -F`` style: by path, surviving rotation and truncation.

    Attributes:
        id: the client's name for this follow, echoed in every message.
        path: the path as the client gave it (``~`` expanded only for opening).
        max_bytes: most bytes read per check; more pending skips to the newest ones.
    """

    def __init__(self, follow_id, path, max_bytes):
        self.id = follow_id
        self.path = path
        self.real = os.path.abspath(os.path.expanduser(path))
        self.max_bytes = max_bytes
        self.fd = None
        self.ident = None  # (st_dev, st_ino) of the open file
        self.offset = 0  # bytes consumed from the open file
        self.decoder = _new_decoder()
        self.missing = False
        self.problem = None  # the last FileProblem reported, so it is said once

    def start(self, tail_lines=0, from_offset=None):
        """Open the file and return the first message (tail, or data from an offset).

        Raises:
            FileProblem: the file exists but cannot be followed.
        """
        try:
            self._open()
        except FileNotFoundError:
            self.missing = True
            return make_log(self, "", 0, 0, "missing")
        size = os.fstat(self.fd).st_size
        if from_offset is not None:
            if from_offset > size:  # shorter than when the client last read it
                return self._delta(size, "truncated")
            self.offset = from_offset
            return self._delta(size, "opened")
        start, capped = tail_start(self.fd, size, tail_lines, self.max_bytes)
        data, start = read_window(self.fd, start, size, self.max_bytes, align=capped)
        self.offset = start + len(data)
        return make_log(self, self._decode(data), self._reported_offset(), 0, "opened")

    def check(self):
        """Look at the file once; return the messages to send (often none).

        Raises:
            FileProblem: the file can no longer be read (said once per problem).
        """
        try:
            st = os.stat(self.real)
        except OSError:
            st = None
        if self.fd is None:
            return self._reopen(st, "opened")
        if st is None or (st.st_dev, st.st_ino) != self.ident:
            # Renamed or removed: what was written to the old file before it went still
            # belongs to the log, then the path's new file (if any) is read from its start.
            messages = self._drain_old()
            self.close()
            if st is None:
                self.missing = True
                return messages + [make_log(self, "", 0, 0, "missing")]
            try:
                return messages + self._reopen(st, "rotated")
            except FileProblem as exc:  # the new file is unreadable: still send the old tail
                return messages + [make_error(str(exc), self.id)]
        if st.st_size < self.offset:
            self.offset = 0
            self.decoder = _new_decoder()
            return [self._delta(st.st_size, "truncated")]
        if st.st_size > self.offset:
            message = self._delta(st.st_size, None)
            if message["data"] or message["skipped"]:
                return [message]
        return []

    def _reopen(self, st, event):
        if st is None:
            return []
        try:
            opened = self._open()
        except FileNotFoundError:  # gone again between stat and open
            if self.missing:
                return []
            self.missing = True
            return [make_log(self, "", 0, 0, "missing")]
        if not opened:
            return []
        if self.missing:
            event = "opened"
        self.missing = False
        return [self._delta(os.fstat(self.fd).st_size, event)]

    def _open(self):
        """Open the path; False if it failed for a reason already reported.

        Raises:
            FileNotFoundError: nothing at the path.
            FileProblem: a new reason it cannot be read (reported once by the caller).
        """
        try:
            self.fd, st = open_log(self.real)
        except FileProblem as exc:
            if self.problem == str(exc):
                return False
            self.problem = str(exc)
            raise
        self.problem = None
        self.ident = (st.st_dev, st.st_ino)
        self.offset = 0
        self.decoder = _new_decoder()
        return True

    def _drain_old(self):
        try:
            size = os.fstat(self.fd).st_size
        except OSError:
            return []
        if size <= self.offset:
            return []
        message = self._delta(size, None)
        return [message] if message["data"] or message["skipped"] else []

    def _delta(self, size, event):
        """Read from ``offset`` to ``size`` (capped) and build the message."""
        data, start = read_window(self.fd, self.offset, size, self.max_bytes)
        skipped = start - self.offset
        if skipped:
            self.decoder = _new_decoder()  # bytes of a split character were skipped too
        self.offset = start + len(data)
        return make_log(self, self._decode(data), self._reported_offset(), skipped, event)

    def _decode(self, data):
        return self.decoder.decode(data)

    def _reported_offset(self):
        """Bytes consumed, less a character's first bytes the decoder still holds: the
        offset a client resumes from (``from_offset``) then re-reads that character whole."""
        return self.offset - len(self.decoder.getstate()[0])

    def close(self):
        if self.fd is not None:
            _quietly(lambda: os.close(self.fd))
            self.fd = None
            self.ident = None


def read_tail(path, lines, max_bytes):
    """One-shot tail: ``(data, size)``.

    Raises:
        FileProblem: missing or unreadable, in plain words.
    """
    real = os.path.abspath(os.path.expanduser(path))
    try:
        fd, st = open_log(real)
    except FileNotFoundError as exc:
        raise _problem(exc, path) from exc
    try:
        start, capped = tail_start(fd, st.st_size, lines, max_bytes)
        data, _ = read_window(fd, start, st.st_size, max_bytes, align=capped)
    except OSError as exc:
        raise _problem(exc, path) from exc
    finally:
        os.close(fd)
    # A character cut at the very end (being written right now) is left out, not garbled.
    return _new_decoder().decode(data), st.st_size


# ---------------------------------------------------------------------------------------
# Tracker files: what the training program records itself (HF trainer_state.json,
# TensorBoard events, a W&B run's summary, Lightning's metrics.csv, MLflow's file store).
# They hold the exact total, the loss at every logged step and the evaluation history,
# which a log may not print. Found under a session's workdir by a bounded search (or at
# paths config names), and re-read only when a file's size or mtime moved: a tick with
# nothing new costs one stat per chosen file.

#: Sources in the order their figures are trusted when several agree on a step.
TRACKER_SOURCES = ("trainer_state", "tfevents", "mlflow", "csv", "wandb")
#: The search looks this many directories deep (``mlruns/<exp>/<run>/metrics`` is 4).
TRACKER_MAX_DEPTH = 5
#: Directory entries one search may look at; past it the search stops (``truncated``).
TRACKER_MAX_ENTRIES = 5000
#: A directory with more entries than this holds data (images, shards), not a run: skipped.
TRACKER_MAX_DIR_ENTRIES = 1000
#: Never descended into: version control, environments, caches, wandb's per-run
#: folders (``latest-run`` is read directly) and MLflow's artifacts.
TRACKER_SKIP_DIRS = frozenset((
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "env",
    "site-packages", "dist-packages", ".cache", ".ipynb_checkpoints", "artifacts",
))
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


# --- TensorBoard: TFRecord framing (length, masked CRC32C) around Event protobufs.

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


# --- W&B: a run's ``run-<id>.wandb`` file is a LevelDB-style log (7-byte file header,
# 32 KiB blocks, records framed as crc(4) length(2) type(1)) of ``Record`` protobufs:
# history=2 (HistoryRecord: item=1 {key=1, nested_key=2, value_json=16}, step=2) and
# summary=3 (SummaryRecord: update=1, the same items). Offline runs write no
# wandb-summary.json, so this is where their figures are.

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


def _natural(path):
    """A path's sort key with its numbers as numbers: checkpoint-100 after checkpoint-20."""
    key, number = [], ""
    for char in path:
        if char.isdigit():
            number += char
            continue
        if number:
            key.append((1, int(number), ""))
            number = ""
        key.append((0, 0, char))
    if number:
        key.append((1, int(number), ""))
    return key


def _newer(found, kind, path, mtime):
    """Keep the newest file of each kind; on equal mtimes (checkpoints saved within one
    second, a filesystem with coarse times), the higher-numbered path."""
    best = found.get(kind)
    if best is None or (mtime, _natural(path)) > (best[1], _natural(best[0])):
        found[kind] = (path, mtime)


def _mlflow_runs(folder, found, budget):
    """``mlruns/<experiment>/<run>/metrics``: the run whose metrics changed last."""
    for exp in _listdir_entries(folder, budget):
        if not _is_dir(exp) or exp.name in TRACKER_SKIP_DIRS or exp.name.startswith("."):
            continue
        for run in _listdir_entries(exp.path, budget):
            if not _is_dir(run):
                continue
            try:
                metrics = _listdir_entries(os.path.join(run.path, "metrics"), budget)
            except OSError:
                continue
            newest = None
            for metric in metrics[:MLFLOW_MAX_METRICS]:
                try:
                    mtime = metric.stat().st_mtime
                except OSError:
                    continue
                newest = mtime if newest is None else max(newest, mtime)
            if newest is not None:
                _newer(found, "mlflow", run.path, newest)


def _is_dir(entry):
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _listdir_entries(path, budget):
    """A directory's entries, counted against the search's budget; a huge one is skipped.
    Its mtime goes into ``budget["dirs"]``: the search's signature (see ``TrackerWatch``)."""
    entries = []
    dirs = budget.get("dirs")
    if dirs is not None:
        dirs[path] = os.stat(path).st_mtime_ns  # before listing: a change after it shows next time
    with os.scandir(path) as it:
        for entry in it:
            entries.append(entry)
            if len(entries) > TRACKER_MAX_DIR_ENTRIES:
                budget["skipped"] += 1
                return []
    budget["left"] -= len(entries)
    return entries


def _special_dir(name, path, found, budget):
    """W&B keeps one folder per run (only ``latest-run`` counts); MLflow has its layout."""
    try:
        if name == "wandb":
            latest = os.path.join(path, "latest-run")
            if budget.get("dirs") is not None:  # a new run moves the link; its file appears in latest
                budget["dirs"][path] = os.stat(path).st_mtime_ns
                budget["dirs"][latest] = os.stat(latest).st_mtime_ns
            runs = sorted(n for n in os.listdir(latest) if n.endswith(".wandb"))
            if runs:  # the run's own record log: history, and the only record of an offline run
                run = os.path.join(latest, runs[-1])
            else:
                run = os.path.join(latest, "files", "wandb-summary.json")
            _newer(found, "wandb", run, os.stat(run).st_mtime)
        else:
            _mlflow_runs(path, found, budget)
    except OSError:
        pass


def find_trackers(roots, max_depth=TRACKER_MAX_DEPTH, dirs=None):
    """The newest tracker file of each kind under ``roots`` (a bounded search).

    Args:
        dirs: filled with ``path -> mtime_ns`` of every folder listed (and each root),
            so a caller can tell later whether a new search could find anything new.

    Returns:
        ``(found, info)``: ``found`` maps a kind to ``(path, mtime)``; ``info`` says how
        many entries were looked at and whether the search stopped at its limit.
    """
    found = {}
    budget = {"left": TRACKER_MAX_ENTRIES, "skipped": 0, "dirs": dirs}
    stack = []
    for root in roots:
        root = os.path.expanduser(root)
        if dirs is not None:
            dirs[root] = _mtime_ns(root)
        if os.path.isdir(root):
            name = os.path.basename(os.path.normpath(root))
            if name == "mlruns" or (name == "wandb" and os.path.isdir(os.path.join(root, "latest-run"))):
                _special_dir(name, root, found, budget)
            else:
                stack.append((root, 0))
        else:
            kind = tracker_kind(root)
            try:
                mtime = os.stat(root).st_mtime
            except OSError:
                continue
            if kind:
                _newer(found, kind, root, mtime)
    truncated = False
    while stack:
        if budget["left"] <= 0:
            truncated = True
            break
        path, depth = stack.pop()
        try:
            entries = _listdir_entries(path, budget)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if _is_dir(entry):
                if name in TRACKER_SKIP_DIRS or depth + 1 > max_depth:
                    continue
                if name in ("wandb", "mlruns"):
                    _special_dir(name, entry.path, found, budget)
                    continue
                stack.append((entry.path, depth + 1))
                continue
            kind = tracker_kind(name)
            if kind is None or (kind == "csv" and name != "metrics.csv"):
                continue
            try:
                if entry.is_file():
                    _newer(found, kind, entry.path, entry.stat().st_mtime)
            except OSError:
                continue
    info = {"entries": TRACKER_MAX_ENTRIES - budget["left"], "truncated": truncated,
            "skipped_dirs": budget["skipped"]}
    return found, info


def _mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _tracker_file(kind, path):
    if kind == "tfevents":
        return TfeventsFile(path)
    if kind == "mlflow":
        return MlflowRun(path)
    if kind == "wandb" and path.endswith(".wandb"):
        return WandbRun(path)
    if kind == "csv":
        return CsvFile(path)
    return TrackerFile(kind, path)


class TrackerWatch:
    """One session's tracker files: found, chosen (the newest of each kind), re-read
    when they change; ``check`` answers a ``trackers`` message only when a reading did.

    Args:
        watch_id: the session name (the message's ``id``).
        roots: directories to search and files to read (``~`` expands here, on the pod).
    """

    def __init__(self, watch_id, roots, rescan_s=TRACKER_RESCAN_S, every_s=TRACKER_CHECK_S):
        self.id = watch_id
        self.roots = list(roots)
        self.rescan_s = rescan_s
        self.every_s = every_s
        self.files = {}  # kind -> TrackerFile
        self.info = None
        self._dirs = {}  # the last search's folders -> mtime_ns
        self._next_scan = None
        self._next_check = None
        self._sent = None

    def _dirs_unchanged(self):
        """Whether no folder the last search listed gained or lost an entry since (one
        stat each): then searching again cannot find anything new."""
        if not self._dirs:
            return False
        for path, mtime in self._dirs.items():
            if _mtime_ns(path) != mtime:
                return False
        return True

    def scan(self):
        """Search again, unless no folder changed; True when the chosen files changed."""
        if self._dirs_unchanged():
            return False
        dirs = {}
        found, self.info = find_trackers(self.roots, dirs=dirs)
        self._dirs = dirs
        files = {}
        for kind, (path, _) in found.items():
            old = self.files.get(kind)
            files[kind] = old if old is not None and old.path == path else _tracker_file(kind, path)
        changed = set(files) != set(self.files) or any(files[k] is not self.files.get(k) for k in files)
        self.files = files
        return changed

    def readings(self):
        return [self.files[k].reading for k in TRACKER_SOURCES if k in self.files and self.files[k].reading]

    def check(self, now):
        """Look once (search again when due); the message to send, or None.

        The first message holds every reading; later ones only the readings that changed
        (a live events file changes every step: resending the other files' histories
        each tick would cost more than reading them), and ``current`` always names every
        source chosen, so one that vanished is dropped.
        """
        if self._next_check is not None and now < self._next_check:
            return None
        self._next_check = now + self.every_s
        if self._next_scan is None or now >= self._next_scan:
            self.scan()
            self._next_scan = now + self.rescan_s
        changed = [k for k in TRACKER_SOURCES if k in self.files and self.files[k].refresh()]
        current = [k for k in TRACKER_SOURCES if k in self.files and self.files[k].reading]
        if self._sent is not None and not changed and current == self._sent:
            return None
        fresh = self._sent is None
        readings = [self.files[k].reading for k in current if fresh or k in changed or k not in self._sent]
        self._sent = current
        return make_trackers(self.id, self.roots, readings, current, self.info)


def check_tracker_watches(watches, now):
    """Check each watch once; the messages to send. A bug costs that watch's look."""
    messages = []
    for watch in list(watches):
        try:
            message = watch.check(now)
        except Exception as exc:
            message = make_error("trackers failed: %s: %s" % (type(exc).__name__, exc), watch.id)
        if message is not None:
            messages.append(message)
    return messages


def make_trackers(watch_id, roots, readings, current, info):
    """A ``trackers`` message: ``trackers`` holds the readings new since the last one,
    ``current`` the sources whose readings stand (see ``TrackerWatch.check``)."""
    return {
        "kind": "trackers", "v": AGENT_PROTOCOL_VERSION, "id": watch_id, "roots": roots,
        "trackers": readings, "current": current, "search": info,
    }


# ---------------------------------------------------------------------------------------
# Samples.


def make_sample(seq, t, gpu, gpu_source, disk, load, uptime_s, tmux):
    """Build a protocol sample; the one place its keys are written.

    Args:
        gpu: ``(gpu_status, gpu_error, gpus)``.
        tmux: ``(tmux_status, tmux_error, sessions)``.
    """
    return {
        "kind": "sample", "v": AGENT_PROTOCOL_VERSION, "t": t, "seq": seq,
        "gpu_status": gpu[0], "gpu_error": gpu[1], "gpu_source": gpu_source, "gpus": gpu[2],
        "disk": disk, "load": load, "uptime_s": uptime_s,
        "tmux_status": tmux[0], "tmux_error": tmux[1], "tmux": tmux[2],
    }


class AgentState:
    """What collecting samples needs to remember between ticks.

    Args:
        disk_path: path whose filesystem is reported; ``~`` is expanded here, on the pod.
        tmux: report tmux sessions (False reports ``tmux_status`` "none").
        use_nvml: try pynvml before nvidia-smi.
        nvidia_smi_timeout: seconds before nvidia-smi counts as hung.
        gpu_loop: keep one nvidia-smi resident in loop mode (False: exec per tick).
        interval: the tick period, which a loop-mode nvidia-smi queries at; the agent
            keeps it current through ``self.gpu.set_interval``.
        gpu_loop_retry_s: first wait before loop mode is retried after a failure.
        tmux_refresh_s: the longest an unchanged tmux listing is reused.
    """

    def __init__(self, disk_path="~", tmux=True, use_nvml=True,
                 nvidia_smi_timeout=NVIDIA_SMI_TIMEOUT_S, gpu_loop=True, interval=1.0,
                 gpu_loop_retry_s=NVIDIA_SMI_LOOP_RETRY_S, tmux_refresh_s=TMUX_REFRESH_S):
        self.disk_path = os.path.abspath(os.path.expanduser(disk_path or "~"))
        self.tmux_enabled = bool(tmux)
        self.gpu = GpuReader(use_nvml=use_nvml, timeout=nvidia_smi_timeout, loop=gpu_loop,
                             interval=interval, loop_retry_s=gpu_loop_retry_s)
        self.tmux = TmuxReader(refresh_s=tmux_refresh_s)
        self.seq = 0

    def close(self):
        self.gpu.close()


def _guarded(read, failed):
    """Run one section's reader; a bug in it costs that section, not the tick."""
    try:
        return read()
    except Exception as exc:
        return failed("internal error: %s: %s" % (type(exc).__name__, exc))


def collect_sample(state: AgentState, fresh: bool = False) -> dict:
    """Read everything once and return a protocol sample; advances ``state.seq``.

    Args:
        fresh: list tmux sessions even if nothing seems to have changed (an explicit
            ``sample`` command: the client may have just renamed or attached one).
    """
    t = round(time.time(), 3)
    now = time.monotonic()
    gpu = _guarded(state.gpu.read, lambda why: ("error", why, []))
    if state.tmux_enabled:
        tmux = _guarded(lambda: state.tmux.read(now, force=fresh), lambda why: ("error", why, []))
    else:
        tmux = ("none", None, [])
    disk = _guarded(lambda: read_disk(state.disk_path), lambda why: None)
    sample = make_sample(
        state.seq, t, gpu, state.gpu.source, disk, read_load(), read_uptime(), tmux
    )
    state.seq += 1
    return sample


def make_hello(state):
    return {
        "kind": "hello", "v": AGENT_PROTOCOL_VERSION,
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "hostname": os.uname()[1], "pid": os.getpid(), "gpu_source": state.gpu.source,
    }


def make_error(message, command_id=None):
    """An error line; it carries the failed command's ``id`` when the command had one."""
    error = {"kind": "error", "v": AGENT_PROTOCOL_VERSION, "message": message}
    if command_id is not None:
        error["id"] = command_id
    return error


# ---------------------------------------------------------------------------------------
# The loop: ticks on a monotonic schedule, commands handled as soon as they arrive.


class ChannelClosed(Exception):
    """stdin reached EOF or stdout broke: the SSH channel is gone, so the agent stops."""


def write_line(fd, obj):
    """Write one JSON line straight to the fd (no buffer to flush at exit).

    Raises:
        ChannelClosed: the reader went away (BrokenPipe).
    """
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        while data:
            data = data[os.write(fd, data):]
    except (BrokenPipeError, ConnectionResetError):
        raise ChannelClosed() from None


def next_deadline(deadline, interval, now):
    """The first tick after ``now`` on the grid ``deadline + k*interval``.

    Missed ticks (a slow nvidia-smi, a suspended process) are skipped, not replayed in
    a burst, and the grid does not drift with the time each tick takes.
    """
    deadline += interval
    if deadline <= now:
        deadline += interval * (math.floor((now - deadline) / interval) + 1)
    return deadline


class CommandError(Exception):
    """A command's arguments are wrong; the message goes back as an error line."""


def _number_arg(message, key, default=None):
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError("%s needs a number, got %r" % (key, value))
    return value


def _int_arg(message, key, default, low, high):
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError("%s must be a whole number from %d to %d, got %r" % (key, low, high, value))
    return value


def _str_arg(message, key):
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise CommandError("%s needs a non-empty string, got %r" % (key, value))
    return value


def _cmd_interval(agent, message):
    seconds = message.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        agent.emit(make_error("interval needs a number of seconds, got %r" % (seconds,)))
        return
    agent.set_interval(seconds)


def _cmd_sample(agent, message):
    agent.emit_sample(fresh=True)


def _cmd_follow(agent, message):
    """``{"cmd": "follow", "id", "path", "tail_lines"?, "from_offset"?, "max_bytes"?}``."""
    follow_id, path = _str_arg(message, "id"), _str_arg(message, "path")
    tail_lines = _int_arg(message, "tail_lines", 0, 0, MAX_TAIL_LINES)
    from_offset = message.get("from_offset")
    if from_offset is not None:
        from_offset = _int_arg(message, "from_offset", None, 0, 1 << 62)
    max_bytes = _int_arg(message, "max_bytes", FOLLOW_MAX_BYTES, 64, MAX_FOLLOW_MAX_BYTES)
    if follow_id not in agent.follows and len(agent.follows) >= MAX_FOLLOWS:
        raise CommandError("already following %d files; unfollow some first" % MAX_FOLLOWS)
    follow = Follow(follow_id, path, max_bytes)
    try:
        first = follow.start(tail_lines=tail_lines, from_offset=from_offset)
    except FileProblem as exc:
        follow.close()
        raise CommandError(str(exc)) from exc
    agent.add_follow(follow)
    agent.emit(first)


def _cmd_unfollow(agent, message):
    """``{"cmd": "unfollow", "id"}``: no more messages for that id."""
    follow = agent.follows.pop(_str_arg(message, "id"), None)
    if follow is None:
        raise CommandError("not following anything with id %r" % message["id"])
    follow.close()


def _cmd_follow_interval(agent, message):
    """``{"cmd": "follow_interval", "seconds"}``: how often followed files are looked at."""
    agent.set_follow_interval(_number_arg(message, "seconds"))


def _cmd_tail(agent, message):
    """``{"cmd": "tail", "id", "path", "lines", "max_bytes"?}``: one answer, never a crash."""
    tail_id, path = _str_arg(message, "id"), _str_arg(message, "path")
    lines = _int_arg(message, "lines", None, 0, MAX_TAIL_LINES)
    max_bytes = _int_arg(message, "max_bytes", FOLLOW_MAX_BYTES, 64, MAX_FOLLOW_MAX_BYTES)
    try:
        data, size = read_tail(path, lines, max_bytes)
        error = None
    except FileProblem as exc:
        data, size, error = "", None, str(exc)
    agent.emit({
        "kind": "tail", "v": AGENT_PROTOCOL_VERSION, "id": tail_id, "path": path,
        "data": data, "size": size, "error": error,
    })


def _cmd_trackers(agent, message):
    """``{"cmd": "trackers", "id", "roots"}``: watch a session's tracker files (checked
    each tick); no roots: stop."""
    watch_id = _str_arg(message, "id")
    roots = message.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise CommandError("roots needs a list of paths, got %r" % (roots,))
    if not roots:
        agent.trackers.pop(watch_id, None)
        return
    if watch_id not in agent.trackers and len(agent.trackers) >= MAX_TRACKER_WATCHES:
        raise CommandError("already watching %d sessions' trackers" % MAX_TRACKER_WATCHES)
    every = _number_arg(message, "every_s", TRACKER_CHECK_S)
    watch = agent.trackers[watch_id] = TrackerWatch(watch_id, roots, every_s=min(3600.0, max(0.0, every)))
    # Answer at once, not a tick later: a one-shot `gpuctl sessions` waits for this.
    for reply in check_tracker_watches([watch], time.monotonic()):
        agent.emit(reply)


#: Command name -> handler(agent, message). Later protocol additions register here.
COMMANDS = {
    "interval": _cmd_interval, "sample": _cmd_sample, "follow": _cmd_follow,
    "unfollow": _cmd_unfollow, "follow_interval": _cmd_follow_interval, "tail": _cmd_tail,
    "trackers": _cmd_trackers,
}


class Agent:
    """Runs the tick loop over an input fd (commands) and an output fd (JSON lines).

    Args:
        state: the ``AgentState`` samples are collected with.
        interval: seconds between ticks, clamped to [0.1, 3600].
        commands: name -> handler table; defaults to ``COMMANDS``.
        notices: error messages to emit right after hello (bad options).
    """

    def __init__(self, state, interval=1.0, in_fd=0, out_fd=1, commands=None, notices=()):
        self.state = state
        self.notices = list(notices)
        self.interval = clamp_interval(interval)
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.commands = dict(COMMANDS if commands is None else commands)
        self._buffer = b""
        self._discarding = False
        self._last_tick = None
        self._deadline = time.monotonic()
        state.gpu.set_interval(self.interval)
        self.follows = {}  # id -> Follow, in the order they were asked for
        self.follow_interval = FOLLOW_INTERVAL_S
        self._follow_deadline = None
        self.trackers = {}  # session id -> TrackerWatch

    def emit(self, obj):
        write_line(self.out_fd, obj)

    def emit_sample(self, fresh=False):
        self.emit(collect_sample(self.state, fresh=fresh))

    def check_trackers(self):
        """Once per tick: each watched session's tracker files, sent only when changed."""
        for message in check_tracker_watches(self.trackers.values(), time.monotonic()):
            self.emit(message)

    def set_interval(self, seconds):
        """Change the cadence: the next tick comes one new interval after the last one."""
        self.interval = clamp_interval(seconds)
        self.state.gpu.set_interval(self.interval)
        if self._last_tick is not None:
            self._deadline = max(self._last_tick + self.interval, time.monotonic())

    def add_follow(self, follow):
        """Start (or restart, for a known id) following; checks begin one interval on."""
        old = self.follows.pop(follow.id, None)
        if old is not None:
            old.close()
        self.follows[follow.id] = follow
        if self._follow_deadline is None or len(self.follows) == 1:
            self._follow_deadline = time.monotonic() + self.follow_interval

    def set_follow_interval(self, seconds):
        self.follow_interval = min(MAX_FOLLOW_INTERVAL_S, max(MIN_FOLLOW_INTERVAL_S, float(seconds)))
        if self._follow_deadline is not None:
            self._follow_deadline = min(self._follow_deadline, time.monotonic() + self.follow_interval)

    def check_follows(self):
        """Look at every followed file once and send what changed."""
        for follow in list(self.follows.values()):
            try:
                messages = follow.check()
            except FileProblem as exc:
                messages = [make_error(str(exc), follow.id)]
            except OSError as exc:  # a read error mid-file: say it, keep following
                messages = [make_error(str(_problem(exc, follow.path)), follow.id)]
            except Exception as exc:  # a bug must cost this check, not the agent
                messages = [make_error("following failed: %s: %s" % (type(exc).__name__, exc), follow.id)]
            for message in messages:
                self.emit(message)

    def run(self):
        """Emit hello, then tick until the channel closes. Returns an exit status."""
        try:
            self.emit(make_hello(self.state))
            for notice in self.notices:  # bad options: said after hello, which stays first
                self.emit(make_error(notice))
            while True:
                now = time.monotonic()
                if now >= self._deadline:
                    self._last_tick = self._deadline
                    self.emit_sample()
                    self.check_trackers()
                    self._deadline = next_deadline(self._deadline, self.interval, time.monotonic())
                wake = self._deadline
                if self.follows:
                    if time.monotonic() >= self._follow_deadline:
                        self.check_follows()
                        self._follow_deadline = next_deadline(
                            self._follow_deadline, self.follow_interval, time.monotonic())
                    wake = min(wake, self._follow_deadline)
                self._wait_for_input(wake - time.monotonic())
        except ChannelClosed:
            return 0
        finally:
            for follow in self.follows.values():
                follow.close()
            self.state.close()

    def _wait_for_input(self, timeout):
        """Sleep until a command arrives or ``timeout``; drain nvidia-smi's loop meanwhile."""
        fds = [self.in_fd]
        smi = self.state.gpu.fileno()
        if smi is not None:
            fds.append(smi)
        readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if smi is not None and smi in readable:
            self.state.gpu.pump()
        if self.in_fd not in readable:
            return
        chunk = os.read(self.in_fd, 65536)
        if not chunk:
            raise ChannelClosed()
        self._feed(chunk)

    def _feed(self, chunk):
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if self._discarding:
                self._discarding = False
            elif line.strip():
                self.handle_line(line.decode("utf-8", "replace"))
        if len(self._buffer) > MAX_COMMAND_BYTES:
            self.emit(make_error("command line longer than %d bytes, ignored" % MAX_COMMAND_BYTES))
            self._buffer = b""
            self._discarding = True

    def handle_line(self, line):
        """Parse and dispatch one command line; a bad one yields an error line, never a crash."""
        try:
            message = json.loads(line)
        except ValueError as exc:
            self.emit(make_error("malformed command (not JSON): %s" % exc))
            return
        if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
            self.emit(make_error("a command is a JSON object with a string 'cmd'"))
            return
        command_id = message.get("id") if isinstance(message.get("id"), str) else None
        handler = self.commands.get(message["cmd"])
        if handler is None:
            self.emit(make_error("unknown command %r" % message["cmd"], command_id))
            return
        try:
            handler(self, message)
        except ChannelClosed:
            raise
        except CommandError as exc:
            self.emit(make_error("%s: %s" % (message["cmd"], exc), command_id))
        except Exception as exc:  # a bug in one command must not end the agent
            self.emit(make_error("%s failed: %s: %s" % (message["cmd"], type(exc).__name__, exc), command_id))


def clamp_interval(seconds):
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(seconds)))


def parse_options(argv):
    """Read the JSON options argument; returns ``(options, problem or None)``."""
    if not argv:
        return {}, None
    try:
        options = json.loads(argv[0])
    except ValueError as exc:
        return {}, "options are not JSON (%s); using defaults" % exc
    if not isinstance(options, dict):
        return {}, "options must be a JSON object; using defaults"
    return options, None


def main(argv):
    """Entry point on the pod: ``argv`` is ``[json_options]``."""
    options, problem = parse_options(argv)
    notices = [problem] if problem else []
    interval = options.get("interval", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval):
        notices.append("interval must be a number of seconds; using 1.0")
        interval = 1.0
    disk_path = options.get("disk_path", "~")
    if not isinstance(disk_path, str):
        notices.append("disk_path must be a string; using ~")
        disk_path = "~"
    refresh = options.get("tmux_refresh_s", TMUX_REFRESH_S)
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or not refresh >= 0:
        notices.append("tmux_refresh_s must be a number >= 0; using %g" % TMUX_REFRESH_S)
        refresh = TMUX_REFRESH_S
    retry = options.get("gpu_loop_retry_s", NVIDIA_SMI_LOOP_RETRY_S)
    if isinstance(retry, bool) or not isinstance(retry, (int, float)) or not retry > 0:
        notices.append("gpu_loop_retry_s must be a positive number; using %g" % NVIDIA_SMI_LOOP_RETRY_S)
        retry = NVIDIA_SMI_LOOP_RETRY_S
    state = AgentState(
        disk_path=disk_path, tmux=bool(options.get("tmux", True)),
        gpu_loop=bool(options.get("gpu_loop", True)), gpu_loop_retry_s=retry,
        tmux_refresh_s=refresh,
    )
    # SIGTERM/SIGHUP unwind through Agent.run's finally, which stops the resident
    # nvidia-smi; a SIGKILLed agent relies on that child's EPIPE instead (see SmiLoop).
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), _stop_on_signal)
    try:
        return Agent(state, interval=interval, notices=notices).run()
    except KeyboardInterrupt:
        return 130


def _stop_on_signal(signum, frame):
    raise ChannelClosed()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
