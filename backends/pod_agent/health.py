"""GPU health as the pod sees it: ECC, retired pages, remapped rows, clock events, PCIe, Xid.

Runs ON the pod (the agent every few ticks, ``gpuctl doctor`` once), so: the standard
library only, python3 >= 3.8, and nothing it reads may raise. Why each piece:

* A GPU that is quietly broken (double-bit ECC errors, remapped memory rows, a PCIe
  link trained down, clocks held down by a hardware slowdown) costs more than a hot
  one; nvidia-smi and NVML say so, in fields most tools never ask for.
* pynvml when the pod has it (no process per read), else ``nvidia-smi`` with its own
  field names (``HEALTH_FIELDS``): one ``--query-gpu`` exec, plus
  ``--query-remapped-rows`` and ``--query-compute-apps``.
* A field the driver does not support (``[N/A]``, ``[Not Supported]``, a GeForce's ECC,
  a V100's remapped rows, a field an old driver refuses) is *not available*: its value
  is None and ``not_available`` says what the driver answered. Never an error.
* Drivers before 535 know the clock reasons only as ``clocks_throttle_reasons.*``; the
  reader asks the new names and falls back on the refusal. Results always use the
  new names (``clocks_event_reasons.*``), so the evaluation has one spelling.
* Xid lines (``NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.``)
  come from the kernel log: ``dmesg``, else ``journalctl -k``, else ``/dev/kmsg``. A
  container usually may read none of them: then ``readable`` is False and ``reason``
  says what each source answered, in plain words.
* Zombie VRAM: a process nvidia-smi lists on a GPU whose pid no longer exists here.

The result is plain JSON (``read_health``); ``sessions/health`` judges it. The agent
reads it every ``health_every`` ticks in a thread (``HealthPoller``), so a hung
nvidia-smi or dmesg never delays a tick; ``gpuctl doctor`` runs this file alone
(``backends/health_command.py``), so it imports nothing from its package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

SMI_TIMEOUT_S = 10.0
KERNEL_LOG_TIMEOUT_S = 5.0
MAX_XID_EVENTS = 50
"""Newest Xid lines kept: a GPU in trouble can log thousands."""
KMSG_PATH = "/dev/kmsg"
KMSG_MAX_RECORDS = 20000

CLOCK_REASONS = (
    "hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown",
    "sw_thermal_slowdown", "sw_power_cap", "gpu_idle",
)
EVENT_PREFIX, THROTTLE_PREFIX = "clocks_event_reasons.", "clocks_throttle_reasons."

#: The ``--query-gpu`` fields read, nvidia-smi's own names (``nvidia-smi --help-query-gpu``).
HEALTH_FIELDS = (
    "index", "uuid", "pci.bus_id", "name", "utilization.gpu", "power.draw", "memory.used",
    "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.aggregate.total", "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.pending", "pcie.link.gen.current", "pcie.link.gen.max",
    "pcie.link.width.current", "pcie.link.width.max", "persistence_mode",
) + tuple(EVENT_PREFIX + reason for reason in CLOCK_REASONS)
REMAP_FIELDS = ("gpu_uuid", "remapped_rows.correctable", "remapped_rows.uncorrectable",
                "remapped_rows.pending", "remapped_rows.failure")
APP_FIELDS = ("gpu_uuid", "pid", "used_memory")

_WORDS = {"active": True, "not active": False, "yes": True, "no": False,
          "enabled": True, "disabled": False}
_REFUSED = re.compile(r'Field "([^"]+)" is not a valid field to query')
_XID = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f:.]+)[^)]*\): (\d+), (.*)$")
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")
_PID = re.compile(r"pid=([^,\s]+)")


def parse_cell(text):
    """One CSV cell as a value, or ``(None, why)`` when the driver gives none.

    Returns:
        ``(value, None)``: an int, float, bool (``Active``/``Yes``/``Enabled``...) or str;
        ``(None, text)``: a placeholder such as ``[N/A]`` or ``[Not Supported]``.
    """
    text = text.strip()
    if not text or text.startswith("[") or text.upper() == "N/A":
        return None, text or "empty"
    word = _WORDS.get(text.lower())
    if word is not None:
        return word, None
    number = text.split(" ")[0] if text.endswith((" MiB", " W", " %", " MHz")) else text
    for kind in (int, float):
        try:
            return kind(number), None
        except ValueError:
            pass
    return text, None


def parse_rows(text, fields):
    """``--format=csv,noheader`` output as one dict per row, keyed by ``fields``.

    Each dict also has ``not_available``: field -> what the driver printed instead.
    Lines with the wrong number of cells (a warning nvidia-smi mixed in) are skipped.
    """
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(fields):
            continue
        row = {"not_available": {}}
        for field, cell in zip(fields, cells):
            value, why = parse_cell(cell)
            row[field] = value
            if why is not None:
                row["not_available"][field] = why
        rows.append(row)
    return rows


def _run(argv, timeout):
    """``(returncode, stdout, stderr)``; 127 when the program is missing, 124 on timeout."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: no answer in %g s" % (argv[0], timeout)
    except OSError as exc:
        return 126, "", "%s: %s" % (argv[0], exc.strerror or exc)
    return (done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))


def _first_line(*texts):
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return ""


def query_smi(smi, option, fields, timeout=SMI_TIMEOUT_S):
    """Run one ``nvidia-smi --query-X=FIELDS``, dropping the fields the driver refuses.

    An old driver refuses ``clocks_event_reasons.*``: those are asked again under
    ``clocks_throttle_reasons.*``. Any other refused field is dropped and reported.

    Returns:
        ``(rows, refused, error)``: rows keyed by the asked names (new spelling),
        the fields the driver did not know, and a message when nvidia-smi failed.
    """
    asked = list(fields)
    refused = []
    while asked:
        rc, out, err = _run([smi, "%s=%s" % (option, ",".join(asked)), "--format=csv,noheader,nounits"], timeout)
        if rc == 0:
            rows = parse_rows(out, asked)
            for row in rows:
                for name in list(row):
                    if name.startswith(THROTTLE_PREFIX):
                        row[EVENT_PREFIX + name[len(THROTTLE_PREFIX):]] = row.pop(name)
                na = row["not_available"]
                for name in list(na):
                    if name.startswith(THROTTLE_PREFIX):
                        na[EVENT_PREFIX + name[len(THROTTLE_PREFIX):]] = na.pop(name)
            return rows, refused, None
        match = _REFUSED.search(out + err)
        if match is None or match.group(1) not in asked:
            return [], refused, _first_line(out, err) or "nvidia-smi exit status %d" % rc
        name = match.group(1)
        if name.startswith(EVENT_PREFIX):  # driver < 535: the old spelling of every reason
            asked = [THROTTLE_PREFIX + f[len(EVENT_PREFIX):] if f.startswith(EVENT_PREFIX) else f for f in asked]
        else:
            refused.append(name)
            asked.remove(name)
    return [], refused, None


def pid_alive(pid):
    """Whether a process with this pid exists here (another user's counts)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _attach(gpus, rows, key):
    by_uuid = {gpu.get("uuid"): gpu for gpu in gpus}
    for row in rows:
        gpu = by_uuid.get(row.pop("gpu_uuid", None))
        if gpu is not None:
            key(gpu, row)


def read_gpus_smi(smi, timeout=SMI_TIMEOUT_S):
    """Every GPU's health through nvidia-smi (three execs). See ``read_health``."""
    rows, refused, error = query_smi(smi, "--query-gpu", HEALTH_FIELDS, timeout)
    if error is not None:
        return [], error
    gpus = []
    for row in rows:
        for name in refused:
            row[name] = None
            row["not_available"][name] = "not a field this driver knows"
        row["compute_apps"] = []
        gpus.append(row)
    remap, remap_refused, remap_error = query_smi(smi, "--query-remapped-rows", REMAP_FIELDS, timeout)

    def add_remap(gpu, row):
        gpu["not_available"].update(row.pop("not_available"))
        gpu.update(row)

    _attach(gpus, remap, add_remap)
    for gpu in gpus:
        for name in REMAP_FIELDS[1:]:
            if name not in gpu:
                gpu[name] = None
                gpu["not_available"][name] = remap_error or "not reported"
    apps, _, apps_error = query_smi(smi, "--query-compute-apps", APP_FIELDS, timeout)

    def add_app(gpu, row):
        pid = row.get("pid")
        gpu["compute_apps"].append({"pid": pid, "used_mib": row.get("used_memory"),
                                    "alive": pid_alive(pid) if isinstance(pid, int) else None})

    _attach(gpus, apps, add_app)
    if apps_error is not None:
        for gpu in gpus:
            gpu["compute_apps"] = None
            gpu["not_available"]["compute_apps"] = apps_error
    return gpus, None


def read_gpus_nvml(nvml):
    """Every GPU's health through an initialised pynvml, as ``read_gpus_smi`` shapes it."""
    return [_nvml_gpu(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]


#: nvmlClocksEventReason* bits (the same values as the older nvmlClocksThrottleReason*).
_REASON_BITS = {"gpu_idle": 0x1, "sw_power_cap": 0x4, "hw_slowdown": 0x8, "sw_thermal_slowdown": 0x20,
                "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpu(nvml, index):
    """One GPU through NVML; each call that raises (NotSupported...) is "not available"."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    gpu = {"index": index, "not_available": {}, "compute_apps": []}

    def put(name, getter, *args):
        try:
            gpu[name] = getter(handle, *args)
        except Exception as exc:  # NVMLError_NotSupported and kin
            gpu[name] = None
            gpu["not_available"][name] = str(exc) or type(exc).__name__

    put("uuid", lambda h: _text(nvml.nvmlDeviceGetUUID(h)))
    put("name", lambda h: _text(nvml.nvmlDeviceGetName(h)))
    put("pci.bus_id", lambda h: _text(nvml.nvmlDeviceGetPciInfo(h).busId))
    put("utilization.gpu", lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
    put("power.draw", lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
    put("memory.used", lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used // (1 << 20))
    for kind, error_type in (("corrected", 0), ("uncorrected", 1)):  # NVML_MEMORY_ERROR_TYPE_*
        for counter, counter_type in (("volatile", 0), ("aggregate", 1)):  # NVML_VOLATILE/AGGREGATE_ECC
            put("ecc.errors.%s.%s.total" % (kind, counter), nvml.nvmlDeviceGetTotalEccErrors,
                error_type, counter_type)
    put("retired_pages.pending", lambda h: nvml.nvmlDeviceGetRetiredPagesPendingStatus(h) == 1)
    put("pcie.link.gen.current", nvml.nvmlDeviceGetCurrPcieLinkGeneration)
    put("pcie.link.gen.max", nvml.nvmlDeviceGetMaxPcieLinkGeneration)
    put("pcie.link.width.current", nvml.nvmlDeviceGetCurrPcieLinkWidth)
    put("pcie.link.width.max", nvml.nvmlDeviceGetMaxPcieLinkWidth)
    put("persistence_mode", lambda h: nvml.nvmlDeviceGetPersistenceMode(h) == 1)
    reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    reasons = reasons or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    for reason in CLOCK_REASONS:
        put(EVENT_PREFIX + reason, lambda h, bit: bool(reasons(h) & bit), _REASON_BITS[reason])
    try:
        rows = nvml.nvmlDeviceGetRemappedRows(handle)
        gpu.update(zip(REMAP_FIELDS[1:], (rows[0], rows[1], bool(rows[2]), bool(rows[3]))))
    except Exception as exc:
        for name in REMAP_FIELDS[1:]:
            gpu[name] = None
            gpu["not_available"][name] = str(exc) or type(exc).__name__
    try:
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            used = getattr(proc, "usedGpuMemory", None)
            gpu["compute_apps"].append({"pid": proc.pid, "alive": pid_alive(proc.pid),
                                        "used_mib": used // (1 << 20) if isinstance(used, int) else None})
    except Exception as exc:
        gpu["compute_apps"] = None
        gpu["not_available"]["compute_apps"] = str(exc) or type(exc).__name__
    return gpu


def parse_xid_lines(lines):
    """Xid events in kernel log lines, oldest first (the newest ``MAX_XID_EVENTS``).

    Each is ``{"pci": "0000:3b:00", "xid": 79, "pid": "1234", "text": "...",
    "uptime_s": 1234.5 or None, "line": the line}``.
    """
    events = []
    for line in lines:
        match = _XID.search(line)
        if match is None:
            continue
        stamp = _STAMP.search(line)
        pid = _PID.search(match.group(3))
        events.append({"pci": match.group(1).lower(), "xid": int(match.group(2)), "text": match.group(3).strip(),
                       "pid": pid.group(1).strip("'") if pid else None,
                       "uptime_s": float(stamp.group(1)) if stamp else None, "line": line.strip()})
    return events[-MAX_XID_EVENTS:]


def _read_kmsg(path):
    """``/dev/kmsg`` records as text lines; raises OSError when unreadable."""
    fd = os.open(path, os.O_NONBLOCK)  # read-only: O_RDONLY is 0
    lines = []
    try:
        for _ in range(KMSG_MAX_RECORDS):
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break  # the end of the buffer
            except OSError as exc:
                if exc.errno == 32:  # EPIPE: a record overwritten while reading; go on
                    continue
                raise
            if not record:
                break
            head, _, message = record.decode("utf-8", "replace").partition(";")
            fields = head.split(",")
            stamp = "[%12.6f] " % (int(fields[2]) / 1e6) if len(fields) > 2 and fields[2].isdigit() else ""
            lines.append(stamp + message.split("\n", 1)[0])
    finally:
        os.close(fd)
    return lines


def read_kernel_log(kmsg_path=KMSG_PATH, timeout=KERNEL_LOG_TIMEOUT_S):
    """Xid events from the first kernel log source that answers with any line at all.

    Returns:
        ``{"readable": bool, "source": "dmesg"|"journalctl"|"/dev/kmsg"|None,
        "reason": None or what each source said, "events": [...]}``.
    """
    said = []
    for argv in (["dmesg"], ["journalctl", "-k", "-q", "--no-pager", "-n", "5000"]):
        rc, out, err = _run(argv, timeout)
        lines = [line for line in out.splitlines() if line.strip() and not line.startswith("-- ")]
        if rc == 0 and lines:
            return {"readable": True, "source": argv[0], "reason": None, "events": parse_xid_lines(lines)}
        said.append(_first_line(err, out) or "%s: no kernel messages (exit status %d)" % (argv[0], rc))
    try:
        lines = _read_kmsg(kmsg_path)
    except OSError as exc:
        said.append("%s: %s" % (kmsg_path, exc.strerror or exc))
    else:
        if lines:
            return {"readable": True, "source": kmsg_path, "reason": None, "events": parse_xid_lines(lines)}
        said.append("%s: empty" % kmsg_path)
    return {"readable": False, "source": None, "events": [],
            "reason": "the kernel log cannot be read here (" + "; ".join(said) + ")"}


def open_nvml():
    """An initialised pynvml module, or None when the pod has none or NVML will not start."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


def read_health(use_nvml=True, smi=None, kernel_log=True, kmsg_path=KMSG_PATH, nvml=None):
    """Every GPU's health and the Xid events, as one JSON-ready dict.

    Args:
        use_nvml: try pynvml first.
        smi: the nvidia-smi to run (default: found on PATH).
        kernel_log: read the kernel log for Xid lines (an exec; the agent does it
            less often than the GPU fields).
        kmsg_path: the last kernel log source tried.
        nvml: an already initialised pynvml (the agent keeps one open).

    Returns:
        ``{"time": epoch, "source": "pynvml"|"nvidia-smi"|None, "error": None or why no
        GPU could be read, "gpus": [per GPU: nvidia-smi field names -> value or None,
        "not_available", "compute_apps"], "kernel_log": read_kernel_log() or None}``.
    """
    result = {"time": time.time(), "source": None, "error": None, "gpus": [], "kernel_log": None}
    nvml = nvml if nvml is not None else (open_nvml() if use_nvml else None)
    if nvml is not None:
        try:
            result["gpus"], result["source"] = read_gpus_nvml(nvml), "pynvml"
        except Exception:
            nvml = None  # a broken NVML: nvidia-smi may still answer
    if nvml is None:
        path = smi or shutil.which("nvidia-smi")
        if path is None:
            result["error"] = "nvidia-smi: command not found (no NVIDIA driver on this pod)"
        else:
            result["gpus"], result["error"] = read_gpus_smi(path)
            result["source"] = "nvidia-smi"
    if kernel_log:
        result["kernel_log"] = read_kernel_log(kmsg_path)
    return result


class HealthPoller:
    """Reads health in a background thread every ``every`` ticks; the kernel log every
    ``kernel_every`` ticks (a multiple of ``every``; 0: never). At most one read runs.

    ``tick(seq)`` is called once per tick; ``take()`` returns a finished reading once
    (then None until the next one), which the sample carries under ``health``.
    """

    def __init__(self, every=30, kernel_every=120, use_nvml=True):
        self.every = max(0, int(every))
        self.kernel_every = max(0, int(kernel_every))
        self.use_nvml = use_nvml
        self._thread = None
        self._done = None
        self._lock = threading.Lock()

    def tick(self, seq):
        if not self.every or seq % self.every or (self._thread is not None and self._thread.is_alive()):
            return
        kernel = bool(self.kernel_every) and seq % self.kernel_every == 0
        self._thread = threading.Thread(target=self._read, args=(kernel,), name="gpuctl-health", daemon=True)
        self._thread.start()

    def _read(self, kernel):
        try:
            reading = read_health(use_nvml=self.use_nvml, kernel_log=kernel)
        except Exception as exc:  # the reader must never take the agent down
            reading = {"time": time.time(), "source": None, "gpus": [], "kernel_log": None,
                       "error": "health reader failed: %s: %s" % (type(exc).__name__, exc)}
        with self._lock:
            self._done = reading

    def take(self):
        with self._lock:
            reading, self._done = self._done, None
        return reading


def main(argv=None):
    """Print ``read_health`` as one JSON line; options as one JSON argument (``gpuctl doctor``)."""
    argv = sys.argv[1:] if argv is None else argv
    options = json.loads(argv[0]) if argv else {}
    report = read_health(use_nvml=options.get("nvml", True), kernel_log=options.get("kernel_log", True),
                         kmsg_path=options.get("kmsg", KMSG_PATH))
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
