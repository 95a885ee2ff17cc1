"""`gpuctl doctor POD`: read the pod's GPU health in one exec and judge it.

The reader (``backends/pod_agent/health.py``) travels inside the command, as the agent does
(``backends.health_command``), and prints one JSON line; `checks.evaluate` judges it.
`as_preflight` folds the verdicts into `gpuctl check`'s rows: one row per check, the
worst GPU's status, so the pre-flight table stays short on an 8-GPU pod.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backends.health_command import HEALTH_TIMEOUT_S, HealthUnreadable, build_health_command, parse_health_output
from backends.transport import Transport
from sessions.health.checks import CHECKS, HealthCheck, evaluate, worst
from sessions.health.report import HealthReport, parse_report
from sessions.health.stall import StallDiagnosis, diagnose

__all__ = ["DoctorResult", "HealthUnreadable", "as_preflight", "run_doctor"]


@dataclass(frozen=True)
class DoctorResult:
    """The reading and its verdicts."""

    report: HealthReport
    checks: tuple[HealthCheck, ...]
    stall: StallDiagnosis | None = None

    @property
    def status(self) -> str:
        return worst(list(self.checks))

    def to_json(self, pod: str) -> dict:
        """The stable ``gpuctl doctor --json`` document."""
        log = self.report.kernel_log
        return {
            "pod": pod,
            "status": self.status,
            "source": self.report.source,
            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid,
                      "status": worst([c for c in self.checks if c.gpu == g.index])} for g in self.report.gpus],
            "kernel_log": None if log is None else {"readable": log.readable, "source": log.source,
                                                    "reason": log.reason},
            "checks": [check.to_json() for check in self.checks],
            "stall": None if self.stall is None else self.stall.to_json(),
        }


async def read_health(runner: Transport, *, timeout: float = HEALTH_TIMEOUT_S,
                      stall_pid: int | None = None) -> HealthReport:
    """Run the health reader on the pod and parse its report (with `stall_pid`, what that
    process and its children are doing, and their py-spy dump).

    Raises:
        HealthUnreadable: no python3 on the pod, or the reader failed (plain message).
        backends.ssh.SshFailure: the pod could not be reached or did not answer in time.
    """
    options = {} if stall_pid is None else {"stall_pid": stall_pid}
    # A session's view adds a second of /proc, up to four py-spy dumps and ncclras.
    result = await runner.run(build_health_command(options), timeout=timeout + (60.0 if stall_pid else 0.0))
    return parse_report(parse_health_output(result.exit_status, result.stdout, result.stderr))


async def run_doctor(runner: Transport, *, timeout: float = HEALTH_TIMEOUT_S,
                     stall_pid: int | None = None) -> DoctorResult:
    """Read and judge (see `read_health` for what it raises); with `stall_pid` (a session's
    pane process), also say why its step may have stopped (`sessions.health.stall`)."""
    report = await read_health(runner, timeout=timeout, stall_pid=stall_pid)
    stall = None
    if stall_pid is not None:
        stall = diagnose(report.processes, [g.get("utilization.gpu") for g in report.gpus], report.py_spy)
        if report.ncclras:
            stall = replace(stall, ncclras=report.ncclras)
    return DoctorResult(report, tuple(evaluate(report)), stall)


async def run_burn(runner: Transport, seconds: float, gpus: int) -> list[HealthCheck]:
    """Measure each GPU with the pod's torch for `seconds` (`sessions.health.burn`).

    Raises:
        backends.ssh.SshFailure: the pod could not be reached or the burn ran far too long.
    """
    from sessions.health.burn import burn_command, judge_burn, parse_burn

    result = await runner.run(burn_command(seconds), timeout=seconds * max(1, gpus) + 120.0)
    return judge_burn(parse_burn(result.stdout, result.stderr))


def with_checks(result: DoctorResult, more: list[HealthCheck]) -> DoctorResult:
    """The same result with more verdicts (the burn's) after its own."""
    return DoctorResult(result.report, result.checks + tuple(more), result.stall)


def as_preflight(checks: tuple[HealthCheck, ...] | list[HealthCheck]) -> list[tuple[str, str, str, str]]:
    """`(name, status, detail, hint)` rows for `gpuctl check`: one per check, worst GPU first.

    The detail names the GPUs that did not pass with the worst one's reason, or says
    how many GPUs passed.
    """
    rows = []
    names = [name for name in ("gpus",) + CHECKS if any(c.check == name for c in checks)]
    for name in names:
        mine = [c for c in checks if c.check == name]
        status = worst(mine)
        bad = [c for c in mine if c.status == status and status != "pass"]
        if bad:
            first = bad[0]
            where = "pod" if first.gpu is None else f"GPU {first.gpu}"
            others = f" (+{len(bad) - 1} more GPU{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
            rows.append((f"health-{name}", status, f"{where}: {first.reason}{others}", first.next_step))
        else:
            gpus = sum(1 for c in mine if c.gpu is not None)
            detail = mine[0].reason if len(mine) == 1 else f"{gpus} GPUs: {mine[0].reason}"
            rows.append((f"health-{name}", status, detail, ""))
    return rows
