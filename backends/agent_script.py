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
* ``{"kind": "error", "v": 1, "message"}`` (plus ``"id"`` when the command had one)
  when a command on stdin is wrong or failed.

Commands arrive on stdin as JSON lines, dispatched through ``COMMANDS``:
``{"cmd": "interval", "seconds": 2.0}``, ``{"cmd": "sample"}``,
``{"cmd": "follow", "id", "path", "tail_lines"?: 0, "from_offset"?, "max_bytes"?: 262144}``,
``{"cmd": "unfollow", "id"}``, ``{"cmd": "follow_interval", "seconds"}`` (default 0.25,
independent of the telemetry interval) and ``{"cmd": "tail", "id", "path", "lines",
"max_bytes"?}``. The agent exits when stdin reaches EOF or stdout breaks: the SSH
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
import json
import math
import os
import select
import shutil
import signal
import stat
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
    panes = {}
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
        raise _problem(exc, path)
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
    end, pos, needed = size, size, lines
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
        end = pos
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
        raise _problem(exc, path)
    try:
        start, capped = tail_start(fd, st.st_size, lines, max_bytes)
        data, _ = read_window(fd, start, st.st_size, max_bytes, align=capped)
    except OSError as exc:
        raise _problem(exc, path)
    finally:
        os.close(fd)
    # A character cut at the very end (being written right now) is left out, not garbled.
    return _new_decoder().decode(data), st.st_size


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
        raise ChannelClosed()


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
        raise CommandError(str(exc))
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


#: Command name -> handler(agent, message). Later protocol additions register here.
COMMANDS = {
    "interval": _cmd_interval, "sample": _cmd_sample, "follow": _cmd_follow,
    "unfollow": _cmd_unfollow, "follow_interval": _cmd_follow_interval, "tail": _cmd_tail,
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

    def emit(self, obj):
        write_line(self.out_fd, obj)

    def emit_sample(self, fresh=False):
        self.emit(collect_sample(self.state, fresh=fresh))

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
