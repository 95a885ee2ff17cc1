"""A stand-in `pynvml` for tests: NVML's calls answered from sim_nvidia_smi's state file.

The health reader tries pynvml before nvidia-smi; no machine here has NVML, so its NVML
path would otherwise never run in a test. This module (put on PYTHONPATH as `pynvml`)
answers the calls that path makes from the same JSON state the simulated nvidia-smi
prints (``$GPUCTL_SIM_GPU_STATE``), in NVML's units (bytes, milliwatts, bitmasks) and
with NVML's way of refusing: a value the state gives as ``[N/A]``/``[Not Supported]``
raises `NVMLError_NotSupported`. Standard library only.
"""

import json
import os

_REASON_BITS = {"gpu_idle": 0x1, "sw_power_cap": 0x4, "hw_slowdown": 0x8, "sw_thermal_slowdown": 0x20,
                "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80}


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's own spelling
    def __str__(self):
        return "Not Supported"


_state = None


def _load():
    with open(os.environ["GPUCTL_SIM_GPU_STATE"], encoding="utf-8") as handle:
        return json.load(handle)


def nvmlInit():  # noqa: N802 - NVML's names
    global _state
    _state = _load()


def nvmlShutdown():  # noqa: N802
    pass


def _value(handle, field, convert=lambda v: v):
    value = _state["gpus"][handle].get(field)
    if value is None or (isinstance(value, str) and value.startswith("[")):
        raise NVMLError_NotSupported()
    return convert(value)


class _Obj:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def nvmlDeviceGetCount():  # noqa: N802
    return len(_state["gpus"])


def nvmlDeviceGetHandleByIndex(index):  # noqa: N802
    return index


def nvmlDeviceGetUUID(h):  # noqa: N802
    return _value(h, "uuid")


def nvmlDeviceGetName(h):  # noqa: N802
    return _value(h, "name").encode()  # pynvml < 11 returns bytes


def nvmlDeviceGetPciInfo(h):  # noqa: N802
    return _Obj(busId=_value(h, "pci.bus_id").encode())


def nvmlDeviceGetUtilizationRates(h):  # noqa: N802
    return _Obj(gpu=_value(h, "utilization.gpu"), memory=0)


def nvmlDeviceGetPowerUsage(h):  # noqa: N802
    return int(_value(h, "power.draw") * 1000)


def nvmlDeviceGetMemoryInfo(h):  # noqa: N802
    return _Obj(used=int(_value(h, "memory.used")) << 20, total=int(_value(h, "memory.total")) << 20)


def nvmlDeviceGetTotalEccErrors(h, error_type, counter_type):  # noqa: N802
    kind = ("corrected", "uncorrected")[error_type]
    counter = ("volatile", "aggregate")[counter_type]
    return _value(h, "ecc.errors.%s.%s.total" % (kind, counter))


def nvmlDeviceGetRetiredPagesPendingStatus(h):  # noqa: N802
    return 1 if _value(h, "retired_pages.pending") == "Yes" else 0


def nvmlDeviceGetCurrPcieLinkGeneration(h):  # noqa: N802
    return _value(h, "pcie.link.gen.current")


def nvmlDeviceGetMaxPcieLinkGeneration(h):  # noqa: N802
    return _value(h, "pcie.link.gen.max")


def nvmlDeviceGetCurrPcieLinkWidth(h):  # noqa: N802
    return _value(h, "pcie.link.width.current")


def nvmlDeviceGetMaxPcieLinkWidth(h):  # noqa: N802
    return _value(h, "pcie.link.width.max")


def nvmlDeviceGetPersistenceMode(h):  # noqa: N802
    return 1 if _value(h, "persistence_mode") == "Enabled" else 0


def nvmlDeviceGetCurrentClocksEventReasons(h):  # noqa: N802
    gpu = _state["gpus"][h]
    return sum(bit for name, bit in _REASON_BITS.items() if gpu.get("clocks_event_reasons." + name) == "Active")


def nvmlDeviceGetRemappedRows(h):  # noqa: N802
    return (_value(h, "remapped_rows.correctable"), _value(h, "remapped_rows.uncorrectable"),
            1 if _value(h, "remapped_rows.pending") == "Yes" else 0,
            1 if _value(h, "remapped_rows.failure") == "Yes" else 0)


def nvmlDeviceGetComputeRunningProcesses(h):  # noqa: N802
    apps = _state["gpus"][h].get("compute_apps") or []
    return [_Obj(pid=a["pid"], usedGpuMemory=int(a["used_memory"]) << 20 if isinstance(a.get("used_memory"), int)
                 else None) for a in apps]
