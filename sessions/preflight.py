"""`gpuctl check POD`: the pre-flight checklist people run by hand before a training run.

**One round trip.** `preflight_command` builds ONE `sh -c` script (a fixed script
plus `shlex.quote`d arguments: the pod's workdir and the torch probe), run through
the pod's `backends.transport.Transport`, lent by its link (`sessions.link.pod_link`:
SSH exec, a local pod's `sh -c`, a RunPod proxied PTY shell). The script prints sections framed as::

    ##gpuctl NAME
    ...what the commands printed (stderr folded in)...
    ##gpuctl-rc STATUS

and `parse_sections` reads them back. Slow parts have their own limit inside the
script when the pod has `timeout`: nvidia-smi 20 s each call, `import torch` 60 s
(it can take seconds on a cold disk), timedatectl 5 s; the whole script gets
`SCRIPT_TIMEOUT_S`. Each check is a small pure function of its sections, so it is
tested on captured text.

**Checks and thresholds** (name: what, fail, warn):

* `gpus`: `nvidia-smi --query-gpu=index,name,memory.total,driver_version`. Fail when
  nvidia-smi is missing, errors (its message is shown) or lists no GPU; warn when
  the count differs from `expect_gpus` or a GPU's memory is more than 5 % away from
  `expect_mem_gib`.
* `driver`: the driver version (from the query) and the CUDA version the driver
  supports (the `CUDA Version: 12.4` of plain `nvidia-smi`'s header; `nvcc
  --version`, the toolkit's release, when the header lacks it). Warn when either
  version is unknown.
* `torch`: `python3 -c "import torch ..."`: version, CUDA build, is_available(),
  device_count(). Fail when python3 is missing, the import fails (the traceback's
  last line is shown) or times out, or when GPUs are present but CUDA is not
  available to torch (or torch is a CPU-only build). Warn when torch was built for
  a newer CUDA than the driver supports, or sees fewer GPUs than nvidia-smi.
* `disk`: free space of the pod's workdir (the home when unset or missing) against
  `min_free_gb` (GiB, 2**30 bytes, as the tables show sizes): fail below it, warn
  below twice it.
* `tmux`: `tmux -V`; fail when missing (gpuctl runs sessions in tmux).
* `clock`: the pod's `date +%s.%N` against this machine's clock, the round trip
  taken out (the script prints the pod's time at its start and at its end, so the
  time the checks took is not counted as latency). Warn above 2 s of skew, fail
  above 30 s: checkpoint ages and ETAs are computed from the pod's clock. Also warn
  when `timedatectl` says the clock is not NTP-synchronized (containers usually
  have no timedatectl or systemd: then nothing is said about NTP).
* `open-files`: `ulimit -n`; warn below 4096 (DataLoader workers and NCCL open many).
* `locked-memory`: `ulimit -l`; warn when limited below 64 MiB (NCCL over
  InfiniBand/RoCE pins memory; Docker's default is 64 KiB).
* `shm`: size of /dev/shm; warn below 1 GiB (DataLoader workers pass batches
  through shared memory: Docker's default 64 MiB is the classic "bus error").

**GPU health** (`gpuctl doctor`'s checks, `sessions.health`): a second exec runs the
health reader, and each doctor check becomes one row named `health-CHECK` (`health-xid`,
`health-ecc`, ...) with the worst GPU's status and reason. When nvidia-smi itself
failed, the `gpus` row already carries that failure and no health row is added; a pod
without python3 gets one `health` warning.

**Statuses** are only pass, warn and fail. A check that cannot judge because the
thing it depends on is missing (the driver's CUDA version when nvidia-smi did not
run) is `warn` with a detail naming the check that failed: the root cause carries
the one `fail`. Missing GPUs are a `fail`: a pre-flight check is for GPU pods.

Past 400 lines on purpose: the one remote script and the parser of each of its
sections sit together, so the quoting and the format have one place to audit.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import asdict, dataclass
from typing import Mapping

from backends.transport import Transport as Runner
from sessions.config.model import PodConfig
from sessions.tmux.commands import TMUX_INSTALL_HINT, pod_dir

PASS, WARN, FAIL = "pass", "warn", "fail"
STATUSES = (PASS, WARN, FAIL)

MIN_FREE_GB = 20.0
"""Default free-disk threshold, GiB: fail below it, warn below twice it."""
MEM_TOLERANCE = 0.05
"""A GPU's memory.total may differ this much (fraction) from --expect-mem-gib:
nvidia-smi reports a little less than the marketed size (81559 MiB on an H100 80GB)."""
CLOCK_WARN_S = 2.0
CLOCK_FAIL_S = 30.0
NOFILE_MIN = 4096
MEMLOCK_MIN_KIB = 64 * 1024
SHM_MIN_BYTES = 1 << 30
SMI_TIMEOUT_S = 20
TORCH_TIMEOUT_S = 60
SCRIPT_TIMEOUT_S = 2 * SMI_TIMEOUT_S + TORCH_TIMEOUT_S + 20
"""The whole script's limit: the inner limits plus room for the rest and the link."""

GPU_QUERY = "index,name,memory.total,driver_version"
_GIB = 1 << 30

# What `import torch` reports, on one line that starts with TORCH_TAG.
TORCH_TAG = "GPUCTL_TORCH "
TORCH_PROBE = (
    "import json, torch; print(" + repr(TORCH_TAG) + " + json.dumps({"
    "'version': str(torch.__version__), 'cuda': torch.version.cuda, "
    "'available': bool(torch.cuda.is_available()), 'devices': int(torch.cuda.device_count())}))"
)

# $1: the workdir, already expanded by the pod's login shell; $2: the torch probe.
_SCRIPT = r"""
if timeout 5 true >/dev/null 2>&1; then _t() { timeout "$@"; }; else _t() { shift; "$@"; }; fi
_b() { printf '\n##gpuctl %s\n' "$1"; }
_e() { printf '\n##gpuctl-rc %s\n' "$1"; }
_has() { command -v "$1" >/dev/null 2>&1; }
_no() { echo "$1: command not found"; return 127; }
_b clock_start; date +%s.%N; _e $?
_b gpu_query
if _has nvidia-smi; then _t @SMI@ nvidia-smi --query-gpu=@QUERY@ --format=csv,noheader,nounits </dev/null 2>&1
else _no nvidia-smi; fi; q=$?; _e $q
_b gpu_header
if [ "$q" = 0 ]; then _t @SMI@ nvidia-smi </dev/null 2>&1 | head -n 12; else echo skipped; false; fi; _e $?
_b nvcc
n=nvcc; _has nvcc || n=/usr/local/cuda/bin/nvcc
if _has "$n"; then "$n" --version </dev/null 2>&1; else _no nvcc; fi; _e $?
_b torch
if _has python3; then _t @TORCH@ python3 -c "$2" </dev/null 2>&1; else _no python3; fi; _e $?
_b disk
for d in "$1" "$HOME"; do
  if [ -d "$d" ]; then printf 'path %s\n' "$d"; df -Pk -- "$d" 2>&1; break; fi
done; _e $?
_b tmux
if _has tmux; then tmux -V 2>&1; else _no tmux; fi; _e $?
_b ntp
if _has timedatectl; then
  _t 5 timedatectl show -p NTPSynchronized --value 2>&1 || _t 5 timedatectl status 2>&1
else _no timedatectl; fi; _e $?
_b ulimit
printf 'nofile %s\nnofile_hard %s\nmemlock %s\n' "$(ulimit -n)" "$(ulimit -Hn)" "$(ulimit -l)"; _e $?
_b shm
if [ -d /dev/shm ]; then df -Pk -- /dev/shm 2>&1; else echo '/dev/shm: no such directory'; false; fi; _e $?
_b clock_end; date +%s.%N; _e $?
""".replace("@SMI@", str(SMI_TIMEOUT_S)).replace("@TORCH@", str(TORCH_TIMEOUT_S)).replace("@QUERY@", GPU_QUERY)


@dataclass(frozen=True)
class CheckResult:
    """One row of `gpuctl check`: status is "pass", "warn" or "fail"; hint says what to do
    (empty when the check passed or there is nothing to suggest)."""

    name: str
    status: str
    detail: str
    hint: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Section:
    """What one section of the script printed, and its exit status (None: cut off)."""

    text: str
    rc: int | None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def last_line(self) -> str:
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.rc}"


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    mem_mib: int | None
    driver: str | None


def preflight_command(pod: PodConfig) -> str:
    """The one command that gathers everything (see the module docstring)."""
    return f"sh -c {shlex.quote(_SCRIPT)} sh {pod_dir(pod.workdir)} {shlex.quote(TORCH_PROBE)}"


# ------------------------------------------------------------------ parsing

_BEGIN = re.compile(r"^##gpuctl (\w+)$")
_END = re.compile(r"^##gpuctl-rc (\d+)$")


def parse_sections(output: str) -> dict[str, Section]:
    """The script's output by section name (a section whose end is missing has rc None)."""
    sections: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    for raw in output.splitlines():
        line = raw.rstrip("\r")
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if name is not None:
                sections[name] = Section("\n".join(lines).strip("\n"), None)
            name, lines = begin.group(1), []
        elif end and name is not None:
            sections[name] = Section("\n".join(lines).strip("\n"), int(end.group(1)))
            name, lines = None, []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = Section("\n".join(lines).strip("\n"), None)
    return sections


def _int(text: str) -> int | None:
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


def parse_gpu_query(text: str) -> list[Gpu]:
    """Rows of `--query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits`.

    The name is everything between the first and the last two fields, so a comma in
    a name cannot shift the numbers. `[N/A]` memory (MIG mode) becomes None.
    """
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        driver = fields[-1] if fields[-1] and not fields[-1].startswith("[") else None
        gpus.append(Gpu(fields[0], ", ".join(fields[1:-2]), _int(fields[-2]), driver))
    return gpus


_CUDA_HEADER = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")
_NVCC = re.compile(r"release\s+([0-9]+\.[0-9]+)")


def parse_cuda_version(header: str) -> str | None:
    """'12.4' from plain nvidia-smi's `... Driver Version: 550.54.15   CUDA Version: 12.4 |`."""
    match = _CUDA_HEADER.search(header)
    return match.group(1) if match else None


def parse_nvcc_version(text: str) -> str | None:
    """'12.1' from `nvcc --version`'s `Cuda compilation tools, release 12.1, V12.1.105`."""
    match = _NVCC.search(text)
    return match.group(1) if match else None


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """'12.4' -> (12, 4); None for anything that is not dotted numbers."""
    if not version or not re.fullmatch(r"\d+(?:\.\d+)*", version):
        return None
    return tuple(int(p) for p in version.split("."))


def parse_torch(text: str) -> dict | None:
    """The probe's JSON object, or None when the TORCH_TAG line is not there."""
    for line in text.splitlines():
        if line.startswith(TORCH_TAG):
            try:
                found = json.loads(line[len(TORCH_TAG):])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


_DF_ROW = re.compile(r"^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(.*)$")


def parse_df(text: str) -> tuple[int, int] | None:
    """(available bytes, total bytes) from `df -Pk` output (the last data row)."""
    found = None
    for line in text.splitlines():
        match = _DF_ROW.match(line.strip())
        if match:
            found = (int(match.group(4)) * 1024, int(match.group(2)) * 1024)
    return found


def parse_epoch(text: str) -> tuple[float, float] | None:
    """(seconds, resolution) from `date +%s.%N`: busybox may print `%N` or `N` literally."""
    match = re.search(r"^\s*(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    if match.group(2):
        return float(f"{match.group(1)}.{match.group(2)}"), 0.0
    return float(match.group(1)), 1.0


def parse_ntp(text: str) -> bool | None:
    """True/False from `timedatectl show -p NTPSynchronized --value` (yes/no) or from
    `timedatectl status` ("System clock synchronized: yes", older "NTP synchronized: no");
    None when it cannot tell (no systemd in a container)."""
    for line in text.splitlines():
        line = line.strip().lower()
        if line in ("yes", "no"):
            return line == "yes"
        match = re.match(r"(?:system clock|ntp) synchronized:\s*(yes|no)", line)
        if match:
            return match.group(1) == "yes"
    return None


def parse_ulimits(text: str) -> dict[str, str]:
    """{'nofile': '1048576', 'nofile_hard': ..., 'memlock': 'unlimited'}."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip():
            values[key] = value.strip()
    return values


def clock_skew(local_before: float, local_after: float, pod_start: float, pod_end: float) -> tuple[float, float]:
    """(skew, uncertainty) in seconds; skew > 0: the pod's clock is ahead.

    The round trip is the local time the call took less the pod's time between its
    first and last `date`; the pod's first reading is taken as half a round trip
    after `local_before`, so the uncertainty is half the round trip.
    """
    rtt = max(0.0, (local_after - local_before) - max(0.0, pod_end - pod_start))
    return pod_start - (local_before + rtt / 2), rtt / 2


# ------------------------------------------------------------------ checks


def _gib(value_bytes: float) -> str:
    return f"{value_bytes / _GIB:.1f} GiB"


def _missing(section: Section | None) -> bool:
    return section is None or section.rc is None


def _no_output(name: str) -> CheckResult:
    return CheckResult(name, WARN, "no answer from the pod for this check (the script was cut short)")


def check_gpus(section: Section | None, *, expect_gpus: int | None = None,
               expect_mem_gib: float | None = None) -> tuple[CheckResult, list[Gpu]]:
    """The `gpus` row, and the GPUs found (empty when nvidia-smi failed)."""
    name = "gpus"
    if _missing(section):
        return _no_output(name), []
    assert section is not None
    hint_driver = ("the driver is not loaded or the container has no GPU access (docker run --gpus all); "
                   "a pod in this state rarely recovers: replace it")
    if section.rc == 127:
        return CheckResult(name, FAIL, "nvidia-smi not found on PATH",
                           "a pod without GPUs, or an image without the NVIDIA utilities: start it with GPU "
                           "access (docker run --gpus all / the NVIDIA container toolkit)"), []
    if section.rc == 124:
        return CheckResult(name, FAIL, f"nvidia-smi did not answer within {SMI_TIMEOUT_S}s (a hung driver?)",
                           hint_driver), []
    gpus = parse_gpu_query(section.text) if section.ok else []
    if not gpus:
        return CheckResult(name, FAIL, f"nvidia-smi: {section.last_line()}", hint_driver), []
    names = sorted({g.name for g in gpus})
    mems = [g.mem_mib for g in gpus]
    mem_text = "memory unknown"
    if all(m is not None for m in mems):
        low, high = min(mems) / 1024, max(mems) / 1024  # type: ignore[type-var, operator]
        mem_text = f"{low:.1f} GiB each" if abs(high - low) < 0.05 else f"{low:.1f}-{high:.1f} GiB"
    detail = f"{len(gpus)} × {' + '.join(names)}, {mem_text}"
    problems, hints = [], []
    if expect_gpus is not None and len(gpus) != expect_gpus:
        problems.append(f"expected {expect_gpus} GPU{'s' if expect_gpus != 1 else ''}")
        hints.append("check the instance type you rented (nvidia-smi lists every GPU the container "
                     "can reach, whatever CUDA_VISIBLE_DEVICES says)")
    if expect_mem_gib is not None:
        off = [g for g in gpus if g.mem_mib is None
               or abs(g.mem_mib / 1024 - expect_mem_gib) > max(1.0, MEM_TOLERANCE * expect_mem_gib)]
        if off:
            problems.append(f"expected {expect_mem_gib:.10g} GiB per GPU "
                            f"(GPU {', '.join(g.index for g in off)} differ{'s' if len(off) == 1 else ''})")
            hints.append("a different GPU model than booked, or MIG slices")
    if problems:
        return CheckResult(name, WARN, detail + "; " + "; ".join(problems), "; ".join(hints)), gpus
    return CheckResult(name, PASS, detail), gpus


def check_driver(gpus: list[Gpu], header: Section | None, nvcc: Section | None) -> tuple[CheckResult, str | None]:
    """The `driver` row, and the CUDA version the driver supports (None when unknown)."""
    name = "driver"
    if not gpus:
        return CheckResult(name, WARN, "unknown: nvidia-smi did not list GPUs (see gpus)"), None
    drivers = sorted({g.driver for g in gpus if g.driver})
    driver = " + ".join(drivers)
    cuda = parse_cuda_version(header.text) if header is not None and header.ok else None
    if not drivers:
        return CheckResult(name, WARN,
                           f"driver version unknown (nvidia-smi printed none), CUDA {cuda or 'unknown'}",
                           "`cat /proc/driver/nvidia/version` shows the loaded driver"), cuda
    if cuda:
        return CheckResult(name, PASS, f"{driver}, CUDA {cuda}"), cuda
    toolkit = parse_nvcc_version(nvcc.text) if nvcc is not None and nvcc.ok else None
    if toolkit:
        detail = f"{driver}, CUDA {toolkit} (nvcc's toolkit; the driver's limit is unknown)"
        return CheckResult(name, PASS, detail), None
    return CheckResult(name, WARN, f"{driver}, CUDA version unknown (no `CUDA Version:` in nvidia-smi, no nvcc)",
                       "an old driver's nvidia-smi does not print it; "
                       "`cat /proc/driver/nvidia/version` shows the driver"), None


def check_torch(section: Section | None, gpus: list[Gpu], driver_cuda: str | None) -> CheckResult:
    name = "torch"
    if _missing(section):
        return _no_output(name)
    assert section is not None
    if section.rc == 127 and "python3: command not found" in section.text:
        return CheckResult(name, FAIL, "python3 not found on PATH",
                           "install python3 (apt-get install -y python3), or put it on the PATH "
                           "non-interactive SSH commands get")
    if section.rc == 124:
        return CheckResult(name, FAIL, f"`import torch` did not finish within {TORCH_TIMEOUT_S}s",
                           "a slow or network file system, or a hung driver: try it by hand on the pod")
    info = parse_torch(section.text)
    if info is None:
        return CheckResult(name, FAIL, f"import torch failed: {section.last_line()}",
                           "pip install torch (a build for the driver's CUDA: "
                           "see https://pytorch.org/get-started/locally/)")
    version, cuda = info.get("version"), info.get("cuda")
    available, devices = info.get("available"), info.get("devices")
    detail = f"{version}, " + (f"built for CUDA {cuda}" if cuda else "CPU-only build")
    if not cuda:
        status = FAIL if gpus else WARN
        why = "the pod has GPUs" if gpus else "no GPUs seen either (see gpus)"
        return CheckResult(name, status, f"{detail}: cannot use a GPU ({why})",
                           "pip install torch from the CUDA index (https://pytorch.org/get-started/locally/)")
    if not available:
        notes = [line.strip() for line in section.text.splitlines()
                 if line.strip() and not line.startswith(TORCH_TAG)]
        why = f" ({notes[-1]})" if notes else ""
        if gpus:
            return CheckResult(name, FAIL, f"{detail}; torch.cuda.is_available() is False{why}",
                               f"a torch build newer than the driver's CUDA {driver_cuda or '?'}, or no GPU access "
                               "in the container; reinstall torch for the driver's CUDA")
        return CheckResult(name, WARN, f"{detail}; CUDA not available, and no GPUs seen either (see gpus){why}")
    detail += f", CUDA available, {devices} device{'s' if devices != 1 else ''}"
    built, supported = version_tuple(str(cuda)), version_tuple(driver_cuda)
    if built and supported and built[:2] > supported[:2]:
        return CheckResult(name, WARN, f"{detail}; built for CUDA {cuda}, newer than the driver's {driver_cuda}",
                           f"install a torch build for CUDA {driver_cuda} or older (or use a pod with a newer "
                           "driver): kernels may fail to load")
    if gpus and isinstance(devices, int) and devices < len(gpus):
        return CheckResult(name, WARN, f"{detail}; nvidia-smi lists {len(gpus)}",
                           "CUDA_VISIBLE_DEVICES hides some GPUs from processes on the pod")
    return CheckResult(name, PASS, detail)


def check_disk(section: Section | None, min_free_gb: float) -> CheckResult:
    name = "disk"
    if _missing(section):
        return _no_output(name)
    assert section is not None
    path = next((line[5:] for line in section.text.splitlines() if line.startswith("path ")), "?")
    found = parse_df(section.text)
    if found is None:
        return CheckResult(name, WARN, f"could not read free space of {path}: {section.last_line()}")
    free, total = found
    detail = f"{_gib(free)} free of {_gib(total)} at {path}"
    hint = (f"free space at {path} or attach a bigger volume: checkpoints need room "
            f"(threshold --min-free-gb {min_free_gb:.10g})")
    if free < min_free_gb * _GIB:
        return CheckResult(name, FAIL, f"{detail}; below {min_free_gb:.10g} GiB", hint)
    if free < 2 * min_free_gb * _GIB:
        return CheckResult(name, WARN, f"{detail}; below {2 * min_free_gb:.10g} GiB", hint)
    return CheckResult(name, PASS, detail)


def check_tmux(section: Section | None) -> CheckResult:
    name = "tmux"
    if _missing(section):
        return _no_output(name)
    assert section is not None
    if section.rc == 127:
        return CheckResult(name, FAIL, "tmux not found on PATH", TMUX_INSTALL_HINT)
    if not section.ok:
        return CheckResult(name, FAIL, f"tmux -V: {section.last_line()}", TMUX_INSTALL_HINT)
    return CheckResult(name, PASS, section.last_line())


def check_clock(start: Section | None, end: Section | None, ntp: Section | None,
                local_before: float, local_after: float) -> CheckResult:
    name = "clock"
    first = parse_epoch(start.text) if start is not None and start.ok else None
    last = parse_epoch(end.text) if end is not None and end.ok else None
    if first is None or last is None:
        text = start.last_line() if start is not None else "no answer"
        return CheckResult(name, WARN, f"could not read the pod's clock: {text}")
    skew, uncertainty = clock_skew(local_before, local_after, first[0], last[0])
    uncertainty += max(first[1], last[1])
    detail = f"pod {skew:+.2f}s vs this machine (±{uncertainty:.2f}s)"
    synced = parse_ntp(ntp.text) if ntp is not None and ntp.rc not in (None, 127) else None
    if synced is not None:
        detail += "; NTP synchronized" if synced else "; NTP not synchronized"
    hint = "sync the pod's clock (NTP: chrony or systemd-timesyncd); checkpoint ages and ETAs read it"
    if abs(skew) > CLOCK_FAIL_S:
        return CheckResult(name, FAIL, f"{detail}; over {CLOCK_FAIL_S:g}s", hint)
    if abs(skew) > CLOCK_WARN_S:
        return CheckResult(name, WARN, f"{detail}; over {CLOCK_WARN_S:g}s", hint)
    if synced is False:
        return CheckResult(name, WARN, detail, hint)
    return CheckResult(name, PASS, detail)


def check_open_files(limits: Mapping[str, str]) -> CheckResult:
    name = "open-files"
    value, hard = limits.get("nofile"), limits.get("nofile_hard")
    if value is None:
        return CheckResult(name, WARN, "ulimit -n: no answer")
    if value == "unlimited":
        return CheckResult(name, PASS, "ulimit -n unlimited")
    soft = _int(value)
    if soft is None:
        return CheckResult(name, WARN, f"ulimit -n: {value!r}")
    if soft < NOFILE_MIN:
        raise_to = "a higher value" if hard in (None, "") else (hard if hard == "unlimited" else f"up to {hard}")
        return CheckResult(name, WARN, f"ulimit -n {soft}; below {NOFILE_MIN} (hard limit {hard or '?'})",
                           f"DataLoader workers and NCCL open many files: `ulimit -n` {raise_to} in the "
                           "session's command, or docker run --ulimit nofile=1048576:1048576")
    return CheckResult(name, PASS, f"ulimit -n {soft}")


def check_locked_memory(limits: Mapping[str, str]) -> CheckResult:
    name = "locked-memory"
    value = limits.get("memlock")
    if value is None:
        return CheckResult(name, WARN, "ulimit -l: no answer")
    if value == "unlimited":
        return CheckResult(name, PASS, "ulimit -l unlimited")
    kib = _int(value)
    if kib is None:
        return CheckResult(name, WARN, f"ulimit -l: {value!r}")
    detail = f"ulimit -l {kib} KiB"
    if kib < MEMLOCK_MIN_KIB:
        return CheckResult(name, WARN, f"{detail}; below {MEMLOCK_MIN_KIB // 1024} MiB",
                           "NCCL over InfiniBand/RoCE pins memory: docker run --ulimit memlock=-1 "
                           "(harmless on a single node without RDMA)")
    return CheckResult(name, PASS, detail)


def check_shm(section: Section | None) -> CheckResult:
    name = "shm"
    if _missing(section):
        return _no_output(name)
    assert section is not None
    hint = ("PyTorch DataLoader workers pass batches through /dev/shm: docker run --shm-size=16g "
            "(or --ipc=host), or num_workers=0")
    found = parse_df(section.text) if section.ok else None
    if found is None:
        return CheckResult(name, WARN, f"/dev/shm: {section.last_line()}", hint)
    free, total = found
    detail = f"/dev/shm {_gib(total)} ({_gib(free)} free)"
    if total < SHM_MIN_BYTES:
        return CheckResult(name, WARN, f"{detail}; below {_gib(SHM_MIN_BYTES)}", hint)
    return CheckResult(name, PASS, detail)


def judge(sections: Mapping[str, Section], *, local_before: float, local_after: float,
          min_free_gb: float = MIN_FREE_GB, expect_gpus: int | None = None,
          expect_mem_gib: float | None = None) -> list[CheckResult]:
    """Every check, in table order, from the parsed sections (pure: no I/O)."""
    gpus_row, gpus = check_gpus(sections.get("gpu_query"), expect_gpus=expect_gpus, expect_mem_gib=expect_mem_gib)
    driver_row, driver_cuda = check_driver(gpus, sections.get("gpu_header"), sections.get("nvcc"))
    ulimit = sections.get("ulimit")
    limits = parse_ulimits(ulimit.text) if ulimit is not None else {}
    return [
        gpus_row,
        driver_row,
        check_torch(sections.get("torch"), gpus, driver_cuda),
        check_disk(sections.get("disk"), min_free_gb),
        check_tmux(sections.get("tmux")),
        check_clock(sections.get("clock_start"), sections.get("clock_end"), sections.get("ntp"),
                    local_before, local_after),
        check_open_files(limits),
        check_locked_memory(limits),
        check_shm(sections.get("shm")),
    ]


async def run_checks(runner: Runner, pod: PodConfig, *, min_free_gb: float = MIN_FREE_GB,
                     expect_gpus: int | None = None, expect_mem_gib: float | None = None,
                     health: bool = True) -> list[CheckResult]:
    """Run the pre-flight script on the pod (one round trip) and judge what it printed,
    then (with `health`) the doctor's GPU health checks (a second exec).

    Raises:
        backends.ssh.SshFailure: the pod could not be reached or the script timed out.
    """
    before = time.time()
    result = await runner.run(preflight_command(pod), timeout=SCRIPT_TIMEOUT_S)
    after = time.time()
    # A PTY runner folds stderr into stdout; an exec runner keeps it apart (the script
    # folds every section's stderr itself, so only the shell's own errors land there).
    sections = parse_sections(result.stdout)
    results = judge(sections, local_before=before, local_after=after, min_free_gb=min_free_gb,
                    expect_gpus=expect_gpus, expect_mem_gib=expect_mem_gib)
    return results + (await health_rows(runner) if health else [])


async def health_rows(runner: Runner) -> list[CheckResult]:
    """The doctor's checks as pre-flight rows (see the module docstring)."""
    from sessions.health.doctor import HealthUnreadable, as_preflight, run_doctor

    try:
        doctor = await run_doctor(runner)
    except HealthUnreadable as exc:
        return [CheckResult("health", WARN, str(exc), "gpuctl doctor needs python3 on the pod")]
    if doctor.report.error is not None or not doctor.report.gpus:
        return []  # the gpus row carries the root cause
    return [CheckResult(*row) for row in as_preflight(doctor.checks)]


def worst(results: list[CheckResult]) -> str:
    """fail if any failed, else warn if any warned, else pass."""
    statuses = {r.status for r in results}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
