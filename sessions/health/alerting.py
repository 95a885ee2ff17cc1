"""When a GPU's health deserves an alert (`gpu_health`), with hysteresis: pure, no I/O.

`sessions/watch/alerts.py` raises and clears the alert through the same path as every
other alert (events, notify targets, toasts); this module only says, per GPU, whether
the condition holds now and in which words. What alerts:

* a failing Xid, uncorrected ECC errors since the driver loaded, or a failed row
  remapping: the doctor's own `fail` verdicts of the `xid`, `ecc` and `remapped-rows`
  checks (one truth: the words are the doctor's);
* a hardware slowdown (`hw_slowdown`, `hw_thermal_slowdown`, `hw_power_brake_slowdown`)
  while the GPU is busy, for `SLOWDOWN_FOR_S` in a row: a single reading can catch a
  brief power brake that does no harm.

Hysteresis: a condition that stops holding keeps the alert for `CLEAR_AFTER_S` more,
so a value that flickers between readings does not raise and clear over and over. An
Xid stays in the kernel log until the machine reboots, so its alert lasts that long:
it is raised once, not once per reading.
"""

from __future__ import annotations

from sessions.health.checks import EV, FAIL, HW_SLOWDOWNS, HealthCheck, is_busy
from sessions.health.report import HealthReport

ALERTING_CHECKS = ("xid", "ecc", "remapped-rows")
SLOWDOWN_FOR_S = 120.0
"""A hardware slowdown under load must last this long (seconds) to alert."""
CLEAR_AFTER_S = 120.0
"""A condition gone for this long (seconds) ends its alert."""


class GpuHealthRule:
    """The clocks behind the `gpu_health` alert, for any pods (one per `AlertTracker`)."""

    def __init__(self) -> None:
        self._slow_since: dict[tuple[str, int], float] = {}
        self._last_bad: dict[tuple[str, int], tuple[float, str]] = {}

    def forget(self, pod: str) -> None:
        for table in (self._slow_since, self._last_bad):
            for key in [k for k in table if k[0] == pod]:
                del table[key]

    def conditions(self, pod: str, report: HealthReport, checks: tuple[HealthCheck, ...] | list[HealthCheck],
                   now: float) -> dict[int, str | None]:
        """GPU index -> the reason an alert should be in force now, or None.

        Args:
            pod: the pod's name.
            report: the newest health reading (the same one is passed again between
                readings; the clocks run on `now`).
            checks: the doctor's verdicts on `report`.
            now: seconds on the caller's clock.
        """
        failing: dict[int, str] = {}
        for check in checks:
            if check.gpu is not None and check.status == FAIL and check.check in ALERTING_CHECKS:
                failing.setdefault(check.gpu, check.reason)
        out: dict[int, str | None] = {}
        for gpu in report.gpus:
            if gpu.index is None:
                continue
            key = (pod, gpu.index)
            reason = failing.get(gpu.index)
            slowed = [name for name in HW_SLOWDOWNS if gpu.get(EV + name)]
            if slowed and is_busy(gpu):
                since = self._slow_since.setdefault(key, now)
                if reason is None and now - since >= SLOWDOWN_FOR_S:
                    reason = (f"clocks held down by {', '.join(slowed)} under load for "
                              f"{(now - since) / 60:.0f} min")
            else:
                self._slow_since.pop(key, None)
            if reason is not None:
                self._last_bad[key] = (now, reason)
                out[gpu.index] = reason
            elif key in self._last_bad and now - self._last_bad[key][0] < CLEAR_AFTER_S:
                out[gpu.index] = self._last_bad[key][1]
            else:
                self._last_bad.pop(key, None)
                out[gpu.index] = None
        return out
