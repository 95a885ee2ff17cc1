"""The pod's health reading as frozen data (from ``backends/pod_agent/health.py``'s JSON).

Values keep nvidia-smi's field names, so the one spelling of a field runs from the
driver to the checks. A field the driver did not give is None, and
`GpuHealth.not_available` says what it answered instead (``[N/A]``, ``[Not Supported]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sessions.health.xid import normalise_bus_id


@dataclass(frozen=True)
class ComputeApp:
    """A process nvidia-smi lists on a GPU; `alive` False: its pid no longer exists."""

    pid: int | None
    used_mib: float | None
    alive: bool | None


@dataclass(frozen=True)
class XidEvent:
    """One ``NVRM: Xid`` kernel line."""

    bus: str
    xid: int
    pid: str | None
    text: str
    uptime_s: float | None
    line: str

    @property
    def key(self) -> tuple[str, int, float | None, str]:
        """What makes this event itself (a new one is a new key), for alerts."""
        return (self.bus, self.xid, self.uptime_s, self.text)


@dataclass(frozen=True)
class KernelLog:
    """Whether the kernel log could be read, from where, and its Xid events."""

    readable: bool
    source: str | None
    reason: str | None
    events: tuple[XidEvent, ...] = ()


@dataclass(frozen=True)
class GpuHealth:
    """One GPU's health fields, by nvidia-smi name (``values``), plus its processes."""

    index: int | None
    uuid: str | None
    name: str | None
    bus: str | None
    values: Mapping[str, Any] = field(default_factory=dict)
    not_available: Mapping[str, str] = field(default_factory=dict)
    compute_apps: tuple[ComputeApp, ...] | None = ()

    def get(self, name: str) -> Any:
        """A field's value, None when not available."""
        return self.values.get(name)


@dataclass(frozen=True)
class HealthReport:
    """Everything one health read gave: GPUs, the kernel log, and why GPUs are missing."""

    time: float | None
    source: str | None
    error: str | None
    gpus: tuple[GpuHealth, ...]
    kernel_log: KernelLog | None
    processes: Mapping[str, Any] | None = None
    py_spy: Mapping[str, Any] | None = None
    ncclras: str | None = None

    def gpu_for_bus(self, bus: str) -> GpuHealth | None:
        """The GPU at a kernel-log PCI address (``0000:3b:00``), if this pod has it."""
        wanted = normalise_bus_id(bus)
        return next((gpu for gpu in self.gpus if gpu.bus == wanted), None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _gpu(raw: Mapping[str, Any]) -> GpuHealth:
    apps_raw = raw.get("compute_apps")
    apps = None if apps_raw is None else tuple(
        ComputeApp(pid=_int(a.get("pid")), used_mib=_float(a.get("used_mib")),
                   alive=a.get("alive") if isinstance(a.get("alive"), bool) else None)
        for a in apps_raw if isinstance(a, Mapping))
    bus = _str(raw.get("pci.bus_id"))
    na = raw.get("not_available")
    return GpuHealth(
        index=_int(raw.get("index")), uuid=_str(raw.get("uuid")), name=_str(raw.get("name")),
        bus=normalise_bus_id(bus) if bus else None,
        values={k: v for k, v in raw.items() if k not in ("compute_apps", "not_available")},
        not_available={str(k): str(v) for k, v in na.items()} if isinstance(na, Mapping) else {},
        compute_apps=apps,
    )


def _kernel_log(raw: Any) -> KernelLog | None:
    if not isinstance(raw, Mapping):
        return None
    events = tuple(
        XidEvent(bus=normalise_bus_id(str(e.get("pci", ""))), xid=int(e.get("xid", 0)),
                 pid=_str(e.get("pid")), text=str(e.get("text", "")), uptime_s=_float(e.get("uptime_s")),
                 line=str(e.get("line", "")))
        for e in raw.get("events") or () if isinstance(e, Mapping))
    return KernelLog(readable=bool(raw.get("readable")), source=_str(raw.get("source")),
                     reason=_str(raw.get("reason")), events=events)


def parse_report(raw: Mapping[str, Any]) -> HealthReport:
    """A `HealthReport` from the reader's JSON (unknown keys ignored, odd values None)."""
    gpus = tuple(_gpu(g) for g in raw.get("gpus") or () if isinstance(g, Mapping))
    processes, py_spy = raw.get("processes"), raw.get("py_spy")
    return HealthReport(time=_float(raw.get("time")), source=_str(raw.get("source")),
                        error=_str(raw.get("error")), gpus=gpus, kernel_log=_kernel_log(raw.get("kernel_log")),
                        processes=processes if isinstance(processes, Mapping) else None,
                        py_spy=py_spy if isinstance(py_spy, Mapping) else None, ncclras=_str(raw.get("ncclras")))
