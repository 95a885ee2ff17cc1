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

Past 400 lines on purpose: that one file is what ``gpuctl doctor`` sends, so the field
readers, the kernel log, the process view for stall diagnosis and the agent's poller
(which shares their parsers) stay together.
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
HEALTH_INTERVAL_S = 30.0
"""The agent's health fields, from a resident nvidia-smi loop (cheap per reading)."""
SLOW_INTERVAL_S = 1800.0
"""Remapped rows and compute apps: two nvidia-smi execs (NVML's start each), and values
that change rarely, so every half hour keeps the agent's CPU per tick near its cost
without health (bench/agent_tick.py)."""
KERNEL_LOG_INTERVAL_S = 300.0
"""The kernel log for Xid lines: one ``dmesg`` exec."""
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
    rows, refused, error, _ = _query(smi, option, fields, timeout)
    return rows, refused, error


def _query(smi, option, fields, timeout):
    """``query_smi`` plus the field names as finally asked (old spelling included)."""
    asked = list(fields)
    refused = []
    while asked:
        rc, out, err = _run([smi, "%s=%s" % (option, ",".join(asked)), "--format=csv,noheader,nounits"], timeout)
        if rc == 0:
            return [_event_names(row) for row in parse_rows(out, asked)], refused, None, asked
        match = _REFUSED.search(out + err)
        if match is None or match.group(1) not in asked:
            return [], refused, _first_line(out, err) or "nvidia-smi exit status %d" % rc, asked
        name = match.group(1)
        if name.startswith(EVENT_PREFIX):  # driver < 535: the old spelling of every reason
            asked = [THROTTLE_PREFIX + f[len(EVENT_PREFIX):] if f.startswith(EVENT_PREFIX) else f for f in asked]
        else:
            refused.append(name)
            asked.remove(name)
    return [], refused, None, asked


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


def _event_names(row):
    """Rename ``clocks_throttle_reasons.*`` (old drivers) to ``clocks_event_reasons.*``."""
    for table in (row, row["not_available"]):
        for name in list(table):
            if name.startswith(THROTTLE_PREFIX):
                table[EVENT_PREFIX + name[len(THROTTLE_PREFIX):]] = table.pop(name)
    return row


def _gpu_rows(rows, refused):
    """``--query-gpu`` rows as GPUs: refused fields marked, no processes yet."""
    gpus = []
    for row in rows:
        row.pop("count", None)
        for name in refused:
            row[name] = None
            row["not_available"][name] = "not a field this driver knows"
        row["compute_apps"] = []
        gpus.append(row)
    return gpus


def read_slow(smi, timeout=SMI_TIMEOUT_S):
    """Remapped rows and compute apps (two execs): ``{uuid: fields}``, ``{uuid: [apps]}``.

    A failed query gives ``{None: why}`` in its table, which ``add_slow`` reports as not
    available on every GPU.
    """
    remap, _, remap_error = query_smi(smi, "--query-remapped-rows", REMAP_FIELDS, timeout)
    remaps = {None: remap_error} if remap_error else {row.pop("gpu_uuid", None): row for row in remap}
    apps_rows, _, apps_error = query_smi(smi, "--query-compute-apps", APP_FIELDS, timeout)
    apps = {None: apps_error} if apps_error else {}
    for row in apps_rows if not apps_error else ():
        apps.setdefault(row.get("gpu_uuid"), []).append({"pid": row.get("pid"), "used_mib": row.get("used_memory")})
    return remaps, apps


def add_slow(gpus, slow):
    """Put ``read_slow``'s tables on the GPUs; each app's pid is looked at now."""
    remaps, apps = slow
    for gpu in gpus:
        row = remaps.get(gpu.get("uuid"))
        for name in REMAP_FIELDS[1:]:
            gpu[name] = row.get(name) if row else None
            if row is None or name in row["not_available"]:
                gpu["not_available"][name] = (row["not_available"][name] if row else
                                              remaps.get(None) or "not reported")
        if None in apps:
            gpu["compute_apps"] = None
            gpu["not_available"]["compute_apps"] = apps[None]
            continue
        gpu["compute_apps"] = [dict(app, alive=pid_alive(app["pid"]) if isinstance(app["pid"], int) else None)
                               for app in apps.get(gpu.get("uuid"), ())]
    return gpus


def read_gpus_smi(smi, timeout=SMI_TIMEOUT_S):
    """Every GPU's health through nvidia-smi (three execs). See ``read_health``."""
    rows, refused, error = query_smi(smi, "--query-gpu", HEALTH_FIELDS, timeout)
    if error is not None:
        return [], error
    return add_slow(_gpu_rows(rows, refused), read_slow(smi, timeout)), None


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


def _proc_stat(pid):
    """``(state, ppid, cpu ticks)`` from ``/proc/PID/stat``, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    try:
        return rest[0], int(rest[1]), int(rest[11]) + int(rest[12])
    except (IndexError, ValueError):
        return None


def _proc_text(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as handle:
            return handle.read(4096).replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None


def read_processes(root_pid, window_s=1.0):
    """The process ``root_pid`` and everything under it, each with what it is doing.

    Two looks at ``/proc`` ``window_s`` apart give each process's CPU use over the window;
    ``state`` is the kernel's letter (R running, S sleeping, D waiting on disk or network,
    Z zombie, T stopped) and ``wchan`` where in the kernel it sleeps.

    Returns:
        ``{"root_alive": bool, "processes": [{"pid", "ppid", "state", "cpu_pct", "wchan",
        "args"}...]}`` (root first, then by pid); empty when ``/proc`` cannot be read.
    """
    def tree():
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = _proc_stat(int(name))
                if stat is not None:
                    parents[int(name)] = stat
        found, todo = [], [root_pid]
        while todo:
            pid = todo.pop()
            if pid in parents and pid not in found:
                found.append(pid)
                todo.extend(child for child, stat in parents.items() if stat[1] == pid)
        return {pid: parents[pid] for pid in found}

    try:
        first = tree()
        time.sleep(window_s)
        second = tree()
    except OSError:
        return {"root_alive": pid_alive(root_pid), "processes": []}
    ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    out = []
    for pid in sorted(second, key=lambda p: (p != root_pid, p)):
        state, ppid, cpu = second[pid]
        before = first.get(pid)
        cpu_pct = None if before is None else round(100.0 * (cpu - before[2]) / ticks / window_s, 1)
        out.append({"pid": pid, "ppid": ppid, "state": state, "cpu_pct": cpu_pct,
                    "wchan": _proc_text(pid, "wchan"), "args": _proc_text(pid, "cmdline") or ""})
    return {"root_alive": root_pid in second, "processes": out}


PY_SPY_MAX = 4
"""Python processes of a session dumped at most (the oldest first: the main one)."""


def py_spy_dump(pids, timeout=10.0):
    """``py-spy dump`` of each python process, or why there is none.

    Returns:
        ``{"installed": bool, "dumps": {pid: text}, "error": None or the first failure}``.
    """
    tool = shutil.which("py-spy")
    if tool is None:
        return {"installed": False, "dumps": {}, "error": "py-spy is not installed on the pod (pip install py-spy)"}
    dumps, error = {}, None
    for pid in pids:
        rc, out, err = _run([tool, "dump", "--pid", str(pid)], timeout)
        if rc == 0:
            dumps[str(pid)] = out
        elif error is None:
            error = "py-spy dump --pid %d: %s" % (pid, _first_line(err, out) or "exit status %d" % rc)
    return {"installed": True, "dumps": dumps, "error": error}


def ncclras_dump(timeout=10.0):
    """What NCCL's RAS client (``ncclras``, NCCL >= 2.24) says about the job's collectives,
    or None when the pod has no ``ncclras`` or it does not answer (no NCCL job with RAS)."""
    tool = shutil.which("ncclras")
    if tool is None:
        return None
    rc, out, err = _run([tool], timeout)
    return out if rc == 0 and out.strip() else None


def open_nvml():
    """An initialised pynvml module, or None when the pod has none or NVML will not start."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


NO_SMI = "nvidia-smi: command not found (no NVIDIA driver on this pod)"
"""A reading's ``error`` where neither NVML nor nvidia-smi is there: one wording for
``gpuctl doctor``'s one-shot read and the agent's poller."""


def blank_reading():
    """A reading before anything was read: the keys ``read_health`` and the agent's
    ``HealthPoller`` both fill (one shape for ``sessions/health/report.py`` to parse)."""
    return {"time": time.time(), "source": None, "error": None, "gpus": [], "kernel_log": None}


def read_health(use_nvml=True, smi=None, kernel_log=True, kmsg_path=KMSG_PATH, nvml=None, stall_pid=None):
    """Every GPU's health and the Xid events, as one JSON-ready dict.

    Args:
        use_nvml: try pynvml first.
        smi: the nvidia-smi to run (default: found on PATH).
        kernel_log: read the kernel log for Xid lines (an exec; the agent does it
            less often than the GPU fields).
        kmsg_path: the last kernel log source tried.
        nvml: an already initialised pynvml (the agent keeps one open).
        stall_pid: a session's pane process: add what it and its children are doing
            (``processes``, ``read_processes``) and a ``py_spy`` dump of its python ones.

    Returns:
        ``{"time": epoch, "source": "pynvml"|"nvidia-smi"|None, "error": None or why no
        GPU could be read, "gpus": [per GPU: nvidia-smi field names -> value or None,
        "not_available", "compute_apps"], "kernel_log": read_kernel_log() or None}``.
    """
    result = blank_reading()
    nvml = nvml if nvml is not None else (open_nvml() if use_nvml else None)
    if nvml is not None:
        try:
            result["gpus"], result["source"] = read_gpus_nvml(nvml), "pynvml"
        except Exception:
            nvml = None  # a broken NVML: nvidia-smi may still answer
    if nvml is None:
        path = smi or shutil.which("nvidia-smi")
        if path is None:
            result["error"] = NO_SMI
        else:
            result["gpus"], result["error"] = read_gpus_smi(path)
            result["source"] = "nvidia-smi"
    if kernel_log:
        result["kernel_log"] = read_kernel_log(kmsg_path)
    if stall_pid is not None:
        result["processes"] = read_processes(int(stall_pid))
        pythons = [p["pid"] for p in result["processes"]["processes"]
                   if "python" in os.path.basename(p["args"].split(" ")[0] if p["args"] else "")]
        # The first few: a DataLoader's workers are python too, and each dump takes seconds.
        result["py_spy"] = py_spy_dump(pythons[:PY_SPY_MAX]) if pythons else None
        result["ncclras"] = ncclras_dump()
    return result


class SmiHealthLoop:
    """One resident ``nvidia-smi --query-gpu=HEALTH,count -l N``, read in the poller's thread.

    An exec of nvidia-smi pays NVML's start (tens of ms on a GPU box); resident, it pays
    it once and then re-queries by itself every ``seconds``. The fields are probed once
    with an exec (``_query``: an old driver's spelling, refused fields dropped).
    """

    def __init__(self, smi, seconds, timeout=SMI_TIMEOUT_S):
        rows, self.refused, self.error, self.asked = _query(smi, "--query-gpu", HEALTH_FIELDS, timeout)
        self.proc = None
        self.first = _gpu_rows(rows, self.refused) if self.error is None else []
        if self.error is None:
            whole = seconds >= 1 and seconds == int(seconds)
            period = ["-l", str(int(seconds))] if whole else ["-lms", str(max(1, int(round(seconds * 1000))))]
            self.proc = subprocess.Popen(
                [smi, "--query-gpu=%s,count" % ",".join(self.asked), "--format=csv,noheader,nounits"] + period,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True)

    def next_batch(self):
        """Block until the next complete batch; ``(gpus, None)`` or ``([], why it ended)``."""
        if self.first:
            first, self.first = self.first, []
            return first, None
        rows, expected, said = [], None, ""
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            parsed = parse_rows(line, self.asked + ["count"])
            if not parsed:
                said = said or line.strip()
                continue
            row = _event_names(parsed[0])
            expected = expected or row.get("count")
            rows.append(row)
            if isinstance(expected, int) and len(rows) >= expected:
                return _gpu_rows(rows, self.refused), None
        self.close()
        return [], said or "nvidia-smi's health loop ended"

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(1.0)
            except Exception:
                self.proc.kill()
        if self.proc is not None:
            self.proc.stdout.close()


class HealthPoller:
    """GPU health in a background thread, so no health read ever delays the agent's tick.

    Cadences, in seconds (the options' defaults are in ``main``):

    * ``every_s``: the ``--query-gpu`` health fields (ECC, retired pages, clock event
      reasons, PCIe link, persistence), from one resident nvidia-smi loop (no exec per
      read), or pynvml in-process;
    * ``slow_every_s``: remapped rows and compute apps, two nvidia-smi execs (no loop
      mode exists for them); the last answer is reused in between, pids looked at anew;
    * ``kernel_every_s``: the kernel log for Xid lines (one ``dmesg`` exec).

    ``take()`` returns a reading once it is newer than the last one taken, else None.
    """

    def __init__(self, every_s=HEALTH_INTERVAL_S, slow_every_s=SLOW_INTERVAL_S, kernel_every_s=KERNEL_LOG_INTERVAL_S,
                 use_nvml=True):
        self.every_s = max(0.0, float(every_s))
        self.slow_every_s = max(self.every_s, float(slow_every_s))
        self.kernel_every_s = max(self.every_s, float(kernel_every_s)) if kernel_every_s else 0.0
        self.use_nvml = use_nvml
        self._thread = None
        self._done = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop = None

    def tick(self, seq=None):
        """Start the reading thread on the first tick (nothing to do after that)."""
        if self.every_s and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpuctl-health", daemon=True)
            self._thread.start()

    def take(self):
        with self._lock:
            reading, self._done = self._done, None
        return reading

    def close(self):
        self._stop.set()
        if self._loop is not None:
            self._loop.close()

    def _publish(self, reading):
        with self._lock:
            if self._done is not None and reading["kernel_log"] is None:
                reading["kernel_log"] = self._done["kernel_log"]  # not taken yet: keep its Xid lines
            self._done = reading

    def _run(self):
        try:
            self._read_forever()
        except Exception as exc:  # the reader must never take the agent down
            self._publish(dict(blank_reading(), error="health reader failed: %s: %s" % (type(exc).__name__, exc)))

    def _read_forever(self):
        nvml = open_nvml() if self.use_nvml else None
        slow = None
        slow_at = kernel_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            reading = blank_reading()
            if nvml is not None:
                try:
                    reading["gpus"], reading["source"] = read_gpus_nvml(nvml), "pynvml"
                except Exception:
                    nvml = None  # a broken NVML: nvidia-smi from the next reading on
                    continue
            else:
                smi = shutil.which("nvidia-smi")
                if smi is None:
                    reading["error"] = NO_SMI
                else:
                    if self._loop is None:
                        self._loop = SmiHealthLoop(smi, self.every_s)
                    gpus, why = self._loop.next_batch() if self._loop.error is None else ([], self._loop.error)
                    if why is not None:
                        self._loop.close()
                        self._loop = None
                        reading["error"] = why
                    elif slow is None or now >= slow_at:
                        slow, slow_at = read_slow(smi), now + self.slow_every_s
                    if gpus:
                        reading["gpus"] = add_slow(gpus, slow)
                    reading["source"] = "nvidia-smi"
            if self.kernel_every_s and now >= kernel_at:
                reading["kernel_log"], kernel_at = read_kernel_log(), now + self.kernel_every_s
            self._publish(reading)
            if nvml is not None or reading["error"] is not None:
                self._stop.wait(self.every_s)  # the loop paces itself; these do not


def main(argv=None):
    """Print ``read_health`` as one JSON line; options as one JSON argument (``gpuctl doctor``)."""
    argv = sys.argv[1:] if argv is None else argv
    options = json.loads(argv[0]) if argv else {}
    report = read_health(use_nvml=options.get("nvml", True), kernel_log=options.get("kernel_log", True),
                         kmsg_path=options.get("kmsg", KMSG_PATH), stall_pid=options.get("stall_pid"))
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
