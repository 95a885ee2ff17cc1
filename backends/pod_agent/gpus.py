"""GPU readings: NVML through pynvml when importable, else nvidia-smi (resident loop, or
an exec per tick), with back-off for a hung tool and retries of the loop.
"""

from __future__ import annotations

import subprocess
import time

from .nvidia_smi import NVIDIA_SMI_QUERY_ARGS, SmiLoop, classify_nvidia_smi_result
from .tools import ToolLocator, _quietly, run_command
from .values import _MIB


NVIDIA_SMI_TIMEOUT_S = 5.0
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
_NVML_TEMPERATURE_GPU = 0  # pynvml.NVML_TEMPERATURE_GPU, the only sensor NVML defines


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
