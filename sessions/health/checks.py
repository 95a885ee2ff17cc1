"""The doctor's checks: pass/warn/fail per GPU, each with a plain reason and a next step.

Pure functions of a `HealthReport`, so each is tested on data and shared by
``gpuctl doctor``, ``gpuctl check``, the TUI's marks and the `gpu_health` alert.
Why each threshold:

* `xid`: a kernel Xid line for this GPU since boot; its status and words come from
  `sessions.health.xid` (79 "fell off the bus" fails, 13/31 are usually the program).
* `ecc`: uncorrected errors since the driver loaded (volatile) fail: the GPU returned
  wrong data at least once. Uncorrected errors only in the lifetime count (aggregate)
  warn, as do `CORRECTED_WARN` or more corrected ones since load.
* `retired-pages`: pages waiting to be retired at the next reset warn.
* `remapped-rows`: a remapping failure fails (no spare rows left); a remap pending a
  reset warns; rows already remapped pass (that is the repair working).
* `clocks`: a hardware slowdown (``hw_slowdown``, ``hw_thermal_slowdown``,
  ``hw_power_brake_slowdown``: clocks halved or worse) or a software thermal slowdown
  warns. ``sw_power_cap`` is a GPU at its power limit, normal under full load: it passes.
* `pcie`: link width or generation under its maximum counts only while the GPU is
  busy (`BUSY_UTIL_PCT`): links train down at idle to save power. Under load, a width
  a quarter of the maximum or less fails, any other shortfall warns.
* `persistence`: persistence mode off warns (each new CUDA program waits for the driver
  to set the GPU up again).
* `zombie-vram`: memory held by a process whose pid no longer exists warns: it stays
  taken until that process's leftovers are killed or the GPU is reset.

A field the driver does not give passes as "not available" with what it answered:
gpuctl cannot judge it, and a GeForce without ECC is not a broken GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sessions.health.report import GpuHealth, HealthReport, KernelLog, XidEvent
from sessions.health.xid import FAIL, PASS, REPLACE, WARN, meaning

BUSY_UTIL_PCT = 50.0
"""A GPU at or over this utilization is "under load" (PCIe and clock judgements)."""
CORRECTED_WARN = 1000
"""Corrected ECC errors since the driver loaded from which to warn."""
CHECKS = ("xid", "ecc", "retired-pages", "remapped-rows", "clocks", "pcie", "persistence", "zombie-vram")
HW_SLOWDOWNS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
EV = "clocks_event_reasons."


@dataclass(frozen=True)
class HealthCheck:
    """One check's verdict; `gpu` is the GPU index, None for the pod as a whole."""

    check: str
    gpu: int | None
    status: str
    reason: str
    next_step: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _not_available(check: str, gpu: GpuHealth, fields: tuple[str, ...]) -> HealthCheck | None:
    """A pass saying "not available" when none of `fields` has a value."""
    if any(gpu.get(name) is not None for name in fields):
        return None
    said = sorted({gpu.not_available.get(name, "not reported") for name in fields})
    return HealthCheck(check, gpu.index, PASS, "not available on this GPU (" + ", ".join(said) + ")")


def is_busy(gpu: GpuHealth) -> bool | None:
    """Whether the GPU is under load; None when its utilization is unknown."""
    util = gpu.get("utilization.gpu")
    return None if not isinstance(util, (int, float)) else util >= BUSY_UTIL_PCT


def check_xid(gpu: GpuHealth, events: tuple[XidEvent, ...]) -> HealthCheck:
    """The worst Xid logged for this GPU since boot (kernel lines matched by PCI address)."""
    mine = [event for event in events if event.bus == gpu.bus]
    if not mine:
        return HealthCheck("xid", gpu.index, PASS, "no Xid errors in the kernel log")
    rank = {PASS: 0, WARN: 1, FAIL: 2}
    worst = max(mine, key=lambda event: (rank[meaning(event.xid).status], event.uptime_s or 0.0))
    what = meaning(worst.xid)
    more = f" ({_plural(len(mine), 'Xid line')} in all)" if len(mine) > 1 else ""
    return HealthCheck("xid", gpu.index, what.status, f"Xid {worst.xid}: {what.what}{more}", what.next_step)


def check_ecc(gpu: GpuHealth) -> HealthCheck:
    fields = ("ecc.errors.uncorrected.volatile.total", "ecc.errors.uncorrected.aggregate.total",
              "ecc.errors.corrected.volatile.total")
    missing = _not_available("ecc", gpu, fields)
    if missing is not None:
        return missing
    unc_now, unc_ever, corr_now = (gpu.get(name) or 0 for name in fields)
    if unc_now > 0:
        return HealthCheck("ecc", gpu.index, FAIL, f"{_plural(unc_now, 'uncorrected ECC error')}: "
                           "results may be wrong", REPLACE)
    if unc_ever > 0:
        return HealthCheck("ecc", gpu.index, WARN, f"{_plural(unc_ever, 'uncorrected ECC error')} in this "
                           "GPU's lifetime, none since the driver loaded", "watch it; replace the pod if it grows")
    if corr_now >= CORRECTED_WARN:
        return HealthCheck("ecc", gpu.index, WARN, f"{corr_now} corrected ECC errors since the driver loaded",
                           "watch it; replace the pod if uncorrected errors follow")
    return HealthCheck("ecc", gpu.index, PASS, "no uncorrected ECC errors")


def check_retired_pages(gpu: GpuHealth) -> HealthCheck:
    missing = _not_available("retired-pages", gpu, ("retired_pages.pending",))
    if missing is not None:
        return missing
    if gpu.get("retired_pages.pending"):
        return HealthCheck("retired-pages", gpu.index, WARN, "memory pages wait to be retired at the next GPU reset",
                           "ask the provider to reset the GPU, or use another pod")
    return HealthCheck("retired-pages", gpu.index, PASS, "no pages pending retirement")


def check_remapped_rows(gpu: GpuHealth) -> HealthCheck:
    fields = ("remapped_rows.failure", "remapped_rows.pending", "remapped_rows.correctable",
              "remapped_rows.uncorrectable")
    missing = _not_available("remapped-rows", gpu, fields)
    if missing is not None:
        return missing
    if gpu.get("remapped_rows.failure"):
        return HealthCheck("remapped-rows", gpu.index, FAIL,
                           "remapping a bad memory row failed: memory errors can no longer be repaired", REPLACE)
    if gpu.get("remapped_rows.pending"):
        return HealthCheck("remapped-rows", gpu.index, WARN, "a remapped memory row waits for a GPU reset",
                           "ask the provider to reset the GPU; until then the bad row is still used")
    rows = (gpu.get("remapped_rows.correctable") or 0) + (gpu.get("remapped_rows.uncorrectable") or 0)
    return HealthCheck("remapped-rows", gpu.index, PASS,
                       f"{_plural(rows, 'row')} remapped, none pending" if rows else "no remapped rows")


def check_clocks(gpu: GpuHealth) -> HealthCheck:
    fields = tuple(EV + name for name in HW_SLOWDOWNS + ("sw_thermal_slowdown", "sw_power_cap"))
    missing = _not_available("clocks", gpu, fields)
    if missing is not None:
        return missing
    active = [name for name in HW_SLOWDOWNS if gpu.get(EV + name)]
    if active:
        return HealthCheck("clocks", gpu.index, WARN, f"clocks held down by {', '.join(active)} "
                           "(half speed or less)", "check cooling and power with the provider, or use another pod")
    if gpu.get(EV + "sw_thermal_slowdown"):
        return HealthCheck("clocks", gpu.index, WARN, "clocks lowered: the GPU is too hot (sw_thermal_slowdown)",
                           "ask the provider about cooling")
    if gpu.get(EV + "sw_power_cap"):
        return HealthCheck("clocks", gpu.index, PASS, "at its power limit (normal under full load)")
    return HealthCheck("clocks", gpu.index, PASS, "no clock slowdown")


def check_pcie(gpu: GpuHealth) -> HealthCheck:
    width, width_max = gpu.get("pcie.link.width.current"), gpu.get("pcie.link.width.max")
    gen, gen_max = gpu.get("pcie.link.gen.current"), gpu.get("pcie.link.gen.max")
    if None in (width, width_max) and None in (gen, gen_max):
        return _not_available("pcie", gpu, ("pcie.link.width.current", "pcie.link.gen.current")) or HealthCheck(
            "pcie", gpu.index, PASS, "not available on this GPU")
    link = f"x{width or '?'} gen{gen or '?'}"
    short_width = width is not None and width_max is not None and width < width_max
    short_gen = gen is not None and gen_max is not None and gen < gen_max
    if not (short_width or short_gen):
        return HealthCheck("pcie", gpu.index, PASS, f"PCIe {link}, its maximum")
    busy = is_busy(gpu)
    if not busy:
        why = "while idle" if busy is False else "with utilization unknown"
        return HealthCheck("pcie", gpu.index, PASS, f"PCIe {link} {why} (links slow down at idle to save "
                           "power; judged under load)")
    if short_width:
        factor = width_max / width if width else 0
        status = FAIL if width and width * 4 <= width_max else WARN
        return HealthCheck("pcie", gpu.index, status, f"PCIe x{width} of x{width_max} under load: transfers to "
                           f"this GPU are {factor:g}x slower", "ask the provider for another host")
    return HealthCheck("pcie", gpu.index, WARN, f"PCIe gen{gen} of gen{gen_max} under load: transfers to this "
                       "GPU are slower", "ask the provider for another host")


def check_persistence(gpu: GpuHealth) -> HealthCheck:
    missing = _not_available("persistence", gpu, ("persistence_mode",))
    if missing is not None:
        return missing
    if gpu.get("persistence_mode") is False:
        return HealthCheck("persistence", gpu.index, WARN, "persistence mode is off: each new CUDA program waits "
                           "while the driver sets the GPU up", "sudo nvidia-smi -pm 1, or ask the provider")
    return HealthCheck("persistence", gpu.index, PASS, "persistence mode on")


def check_zombie_vram(gpu: GpuHealth) -> HealthCheck:
    if gpu.compute_apps is None:
        why = gpu.not_available.get("compute_apps", "not reported")
        return HealthCheck("zombie-vram", gpu.index, PASS, f"not available on this GPU ({why})")
    dead = [app for app in gpu.compute_apps if app.alive is False]
    if not dead:
        return HealthCheck("zombie-vram", gpu.index, PASS, "no memory held by a dead process")
    mib = sum(app.used_mib or 0 for app in dead)
    pids = ", ".join(str(app.pid) for app in dead)
    held = f"{mib:.0f} MiB" if mib else "memory"
    return HealthCheck("zombie-vram", gpu.index, WARN,
                       f"{held} held by pid {pids}, which no longer exists on the pod",
                       "kill leftover processes of the old run (or restart the pod) to free it")


def check_kernel_log(log: KernelLog | None, report: HealthReport) -> HealthCheck | None:
    """Pod-level: the kernel log unreadable (said plainly), or Xids for no GPU of this pod."""
    if log is None:
        return None
    if not log.readable:
        return HealthCheck("xid", None, WARN, f"Xid errors cannot be checked: {log.reason or 'no kernel log'}",
                           "containers often hide the kernel log; ask the provider, or run on the host")
    stray = [event for event in log.events if report.gpu_for_bus(event.bus) is None]
    if stray:
        worst = stray[-1]
        what = meaning(worst.xid)
        return HealthCheck("xid", None, WARN, f"Xid {worst.xid} on PCI {worst.bus}, a GPU this pod does not "
                           f"see: {what.what}", "ask the provider whether the host is healthy")
    return None


def evaluate(report: HealthReport) -> list[HealthCheck]:
    """Every check for every GPU, GPU by GPU in `CHECKS` order, then pod-level findings."""
    if report.error is not None:
        return [HealthCheck("gpus", None, FAIL, report.error, "install or repair the NVIDIA driver")]
    if not report.gpus:
        return [HealthCheck("gpus", None, FAIL, "no GPU found", "check the pod's driver and its GPUs")]
    events = report.kernel_log.events if report.kernel_log is not None else ()
    out: list[HealthCheck] = []
    for gpu in report.gpus:
        out += [check_xid(gpu, events), check_ecc(gpu), check_retired_pages(gpu), check_remapped_rows(gpu),
                check_clocks(gpu), check_pcie(gpu), check_persistence(gpu), check_zombie_vram(gpu)]
    pod_level = check_kernel_log(report.kernel_log, report)
    if pod_level is not None:
        out.append(pod_level)
    return out


def worst(checks: list[HealthCheck]) -> str:
    """fail if any failed, else warn if any warned, else pass."""
    statuses = {check.status for check in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def worst_by_gpu(checks: list[HealthCheck] | tuple[HealthCheck, ...]) -> dict[int, HealthCheck]:
    """GPU index -> its worst check (the first of equals, in `CHECKS` order), for marks."""
    out: dict[int, HealthCheck] = {}
    rank = {PASS: 0, WARN: 1, FAIL: 2}
    for check in checks:
        if check.gpu is None:
            continue
        current = out.get(check.gpu)
        if current is None or rank[check.status] > rank[current.status]:
            out[check.gpu] = check
    return out


def gpu_status(checks: list[HealthCheck] | tuple[HealthCheck, ...]) -> dict[int, tuple[str, str]]:
    """GPU index -> (worst status, the reason of its worst check)."""
    return {index: (check.status, check.reason) for index, check in worst_by_gpu(checks).items()}
