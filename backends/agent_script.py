"""gpuctl's remote agent: one long-lived process per pod that streams JSON lines.

gpuctl sends this file's source at connect time (``agent_command.build_agent_command``)
and runs it with ``python3 -u -c``; nothing is installed on the pod. Hence the rules:
standard library only, any python3 >= 3.8 (no ``X | Y`` at runtime, no ``match``, no
3.9+ APIs), and importing it does nothing (the local backend calls ``collect_sample`` in a
thread, the no-python shell fallback reuses the parsers). It is one file, longer than the
house ~400 lines, because it is shipped to the pod as one source string.

Protocol v1 (stdout, one JSON object per line, flushed):

* ``{"kind": "hello", "v": 1, "python", "hostname", "pid", "gpu_source"}`` once, first;
* ``{"kind": "sample", ...}`` every tick, see ``make_sample`` for the keys;
* ``{"kind": "error", "v": 1, "message"}`` when a command on stdin is wrong.

Commands arrive on stdin as JSON lines (``{"cmd": "interval", "seconds": 2.0}``,
``{"cmd": "sample"}``), dispatched through ``COMMANDS``. The agent exits when stdin
reaches EOF or stdout breaks: the SSH channel is gone and no orphan may stay behind.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
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
#: Tab-separated, because session names may hold spaces (tmux escapes tabs in names).
TMUX_FORMAT = "#{session_name}\t#{session_created}\t#{session_attached}\t#{session_windows}"
TMUX_LIST_ARGS = ("list-sessions", "-F", TMUX_FORMAT)

NVIDIA_SMI_TIMEOUT_S = 5.0
TMUX_TIMEOUT_S = 5.0
#: A hung nvidia-smi is not asked again for this long, so the agent stays responsive.
NVIDIA_SMI_BACKOFF_S = 15.0
#: A tool missing from PATH is looked for again this often (it may get installed).
WHICH_RECHECK_S = 30.0
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0
MAX_COMMAND_BYTES = 1 << 20

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
    gpus = []
    width = len(NVIDIA_SMI_FIELDS)
    for line in text.splitlines():
        cells = line.split(",")
        if len(cells) < width or cells[0].strip() == "index":
            continue
        # nvidia-smi does not quote: a name holding a comma spans several cells.
        extra = len(cells) - width
        name = ",".join(cells[2:3 + extra])
        rest = cells[3 + extra:]
        gpus.append({
            "index": _to_int(cells[0]),
            "uuid": _clean(cells[1]),
            "name": _clean(name),
            "temp_c": _to_int(rest[0]),
            "util_pct": _to_int(rest[1]),
            "mem_used_mib": _to_int(rest[2]),
            "mem_total_mib": _to_int(rest[3]),
            "power_w": _to_float(rest[4]),
            "power_limit_w": _to_float(rest[5]),
        })
    return gpus


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
    """Parse ``tmux list-sessions -F TMUX_FORMAT``; malformed rows are skipped."""
    sessions = []
    for line in text.splitlines():
        cells = line.rsplit("\t", 3)
        if len(cells) != 4 or not cells[0]:
            continue
        created, attached, windows = (_to_int(cell) for cell in cells[1:])
        sessions.append(
            {"name": cells[0], "created": created, "attached": attached, "windows": windows}
        )
    return sessions


def classify_tmux_result(returncode: int, stdout: str, stderr: str = "") -> tuple:
    """Turn one ``tmux list-sessions`` run into ``(tmux_status, tmux_error, sessions)``.

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


class GpuReader:
    """Chooses pynvml when usable, else nvidia-smi, else reports "no GPU".

    Args:
        use_nvml: try pynvml first. Tests and pods with a broken pynvml turn it off.
        timeout: seconds before an nvidia-smi call counts as hung.
    """

    def __init__(self, use_nvml=True, timeout=NVIDIA_SMI_TIMEOUT_S):
        self.nvml = NvmlReader.open() if use_nvml else None
        self.timeout = timeout
        self._smi = ToolLocator("nvidia-smi")
        self._backoff_until = None
        self._smi.get(time.monotonic())

    @property
    def source(self):
        """The protocol's ``gpu_source``: "pynvml", "nvidia-smi" or None."""
        if self.nvml is not None:
            return "pynvml"
        return "nvidia-smi" if self._smi.get(time.monotonic()) else None

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
            return "none", None, []
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
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None


def read_tmux(locator, now, timeout=TMUX_TIMEOUT_S):
    """Return ``(tmux_status, tmux_error, sessions)``; "none" when tmux is not installed."""
    path = locator.get(now)
    if path is None:
        return "none", None, []
    try:
        result = run_command((path,) + TMUX_LIST_ARGS, timeout)
    except subprocess.TimeoutExpired:
        return "error", "tmux did not answer within %g s" % timeout, []
    except FileNotFoundError:
        locator.forget(now)
        return "none", None, []
    except OSError as exc:
        return "error", "could not run tmux: %s" % exc, []
    return classify_tmux_result(*result)


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
    """

    def __init__(self, disk_path="~", tmux=True, use_nvml=True,
                 nvidia_smi_timeout=NVIDIA_SMI_TIMEOUT_S):
        self.disk_path = os.path.abspath(os.path.expanduser(disk_path or "~"))
        self.tmux_enabled = bool(tmux)
        self.gpu = GpuReader(use_nvml=use_nvml, timeout=nvidia_smi_timeout)
        self.tmux = ToolLocator("tmux")
        self.seq = 0

    def close(self):
        self.gpu.close()


def _guarded(read, failed):
    """Run one section's reader; a bug in it costs that section, not the tick."""
    try:
        return read()
    except Exception as exc:
        return failed("internal error: %s: %s" % (type(exc).__name__, exc))


def collect_sample(state: AgentState) -> dict:
    """Read everything once and return a protocol sample; advances ``state.seq``."""
    t = round(time.time(), 3)
    now = time.monotonic()
    gpu = _guarded(state.gpu.read, lambda why: ("error", why, []))
    if state.tmux_enabled:
        tmux = _guarded(lambda: read_tmux(state.tmux, now), lambda why: ("error", why, []))
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


def make_error(message):
    return {"kind": "error", "v": AGENT_PROTOCOL_VERSION, "message": message}


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


def _cmd_interval(agent, message):
    seconds = message.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        agent.emit(make_error("interval needs a number of seconds, got %r" % (seconds,)))
        return
    agent.set_interval(seconds)


def _cmd_sample(agent, message):
    agent.emit_sample()


#: Command name -> handler(agent, message). Later protocol additions register here.
COMMANDS = {"interval": _cmd_interval, "sample": _cmd_sample}


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

    def emit(self, obj):
        write_line(self.out_fd, obj)

    def emit_sample(self):
        self.emit(collect_sample(self.state))

    def set_interval(self, seconds):
        """Change the cadence: the next tick comes one new interval after the last one."""
        self.interval = clamp_interval(seconds)
        if self._last_tick is not None:
            self._deadline = max(self._last_tick + self.interval, time.monotonic())

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
                self._wait_for_input(self._deadline - time.monotonic())
        except ChannelClosed:
            return 0
        finally:
            self.state.close()

    def _wait_for_input(self, timeout):
        readable, _, _ = select.select([self.in_fd], [], [], max(0.0, timeout))
        if not readable:
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
        handler = self.commands.get(message["cmd"])
        if handler is None:
            self.emit(make_error("unknown command %r" % message["cmd"]))
            return
        handler(self, message)


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
    state = AgentState(disk_path=disk_path, tmux=bool(options.get("tmux", True)))
    try:
        return Agent(state, interval=interval, notices=notices).run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
