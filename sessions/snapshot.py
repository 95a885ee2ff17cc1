"""Immutable snapshots of what gpuctl knows about each pod.

Monitors build a new `PodSnapshot` for every sample and replace the old one; nothing
is mutated in place, so the TUI and headless renderers can hold a snapshot as long as
they like. `None` always means "unknown", never zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser costs ~15 ms to import; the TUI's first frame needs none of it
    from sessions.health.checks import HealthCheck
    from sessions.health.report import HealthReport
    from sessions.progress.tracker import Progress
    from sessions.checkpoints.listing import Checkpoint
    from sessions.progress.trackers import TrackerReading


class PodState:
    """Connection states, as the strings `status --json` prints."""

    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    PREEMPTED = "preempted"  # the provider took the instance back (spot/bid); not a network fault
    STOPPED = "stopped"      # stopped through the provider (by gpuctl or anyone); disks kept, not billing compute
    TERMINATED = "terminated"  # torn down: the provider no longer runs (or knows) the instance

    ALL = ("connecting", "online", "reconnecting", "offline", "preempted", "stopped", "terminated")
    """Every state, in the order a pod lives through them. Which one a pod is in is decided
    in one place, `sessions.providers.lifecycle.settle`, from the monitor's connection, the
    provider's answer and gpuctl's own stop/teardown."""


NOT_RUNNING = (PodState.STOPPED, PodState.TERMINATED, PodState.PREEMPTED)
"""States in which the instance does not run (nor bill compute), whatever SSH says."""


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment; fields the driver does not report are None."""

    index: int | None
    name: str | None
    temp_c: float | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    uuid: str | None = None

    @classmethod
    def from_agent(cls, raw: dict[str, Any]) -> "GpuSample":
        """Build from one entry of the agent's `gpus` list."""
        get = raw.get
        return cls(
            index=get("index"),
            name=get("name"),
            temp_c=get("temp_c"),
            util_pct=get("util_pct"),
            mem_used_mib=get("mem_used_mib"),
            mem_total_mib=get("mem_total_mib"),
            power_w=get("power_w"),
            power_limit_w=get("power_limit_w"),
            uuid=get("uuid"),
        )

    def to_json(self) -> dict[str, Any]:
        """The GPU's keys in `status --json` (`tui/status_json.py` adds health and
        staleness) and in a Slurm job's GPUs: one shape wherever a GPU is printed."""
        return {"index": self.index, "name": self.name, "uuid": self.uuid, "temp_c": self.temp_c,
                "util_pct": self.util_pct, "mem_used_mib": self.mem_used_mib, "mem_total_mib": self.mem_total_mib,
                "power_w": self.power_w, "power_limit_w": self.power_limit_w}


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Used and total bytes of the filesystem holding the pod's working directory."""

    path: str
    used_bytes: int
    total_bytes: int

    @property
    def used_pct(self) -> float | None:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else None


class SessionState:
    """A training session's state, as `status --json` prints it."""

    RUNNING = "running"
    EXITED = "exited"   # the command ended; its pane is kept (remain-on-exit)
    ABSENT = "absent"   # configured, but no tmux session of that name exists
    UNKNOWN = "unknown"  # the pod is not online: `last_state` is what was last seen (stale)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A training session: its tmux state, where its log is, and what the log says.

    Attributes:
        state: a `SessionState` value.
        exit_status: the command's exit status once it has exited, else None.
        configured: declared in config (else adopted: started by hand in tmux).
        log: the remote log path gpuctl follows for it.
        progress: step, rate, loss, ETA... read from the log and the session's tracker
            files; None when neither shows progress gpuctl recognises.
        stalled: running, but the step has not advanced for `stall_minutes`.
        sources: ``(figure, source)`` for each figure of `progress`: `log`,
            `trainer_state`, `tfevents`, `wandb`, `csv`, `mlflow` or `config`.
        trackers: the tracker files read for this session (`sessions.progress.trackers`).
        loss_history: the loss at each logged step from the tracker the loss came
            from, oldest first; empty when the log is the only source.
        last_state: on a pod that is not online, the state last seen (`state` is then
            `unknown`: a session gpuctl cannot see is never shown running); else None.
        stuck_since: unix time the step last advanced while it is `stalled` (the one
            "stuck since" clock: the stall alert reads it too), else None.
        checkpoints: the session's checkpoints, newest first, as the agent last reported
            them (`sessions.checkpoints.agent_watch`: it lists when its globs changed);
            None before a report, or where no agent watches them (local pods, no python3).
    """

    name: str
    state: str = SessionState.ABSENT
    exit_status: int | None = None
    pid: int | None = None
    attached: int = 0
    windows: int | None = None
    created: int | None = None
    configured: bool = False
    log: str | None = None
    progress: Progress | None = None
    stalled: bool = False
    sources: tuple[tuple[str, str], ...] = ()
    trackers: tuple[TrackerReading, ...] = ()
    loss_history: tuple[float, ...] = ()
    last_state: str | None = None
    stuck_since: float | None = None
    checkpoints: tuple[Checkpoint, ...] | None = None

    @property
    def stale(self) -> bool:
        """Last known, not live: the pod it runs on is not online."""
        return self.state == SessionState.UNKNOWN


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """Everything known about one pod at one moment.

    Attributes:
        state: a `PodState` value.
        error: why the pod is not online (plain words), else None.
        error_kind: a `backends.ssh.FailureKind` value, for scripts.
        sampled_at: pod clock time (unix seconds) of the telemetry shown, or None.
        received_at: this machine's clock when that telemetry arrived (the age of a
            stale value is measured from it: the pod's clock may be off), or None.
        transport: "agent", "exec" (no python3 on the pod) or "local".
        gpu_status: "ok", "none" (the pod has no GPU) or "error" (see gpu_error).
        price_per_hour: USD per hour: the config's, else the provider's.
        price_source: "config" or "provider", None when there is no price.
        spend_usd: dollars spent on the pod so far, accumulated across stops,
            preemptions and gpuctl restarts (`sessions.providers.spend`), or None.
        spend_since: unix time the current (or last) run started, or None.
        spend_from: where that start came from: `provider`, `uptime` (the machine's)
            or `first_seen` (when gpuctl first saw it online), or None.
        projected_usd: price x the longest running session's ETA: what finishing costs.
        provider_state: what the provider says (`running`, `stopped`, ...), or None.
        provider_error: why the provider could not be asked (a note: the pod's
            state still comes from SSH), or None.
        health: the newest GPU health reading (`sessions.health.report`), kept until the
            next one (the agent sends one every ~30 s), or None before the first.
        health_checks: the doctor's verdicts on `health` (`sessions.health.checks`).
    """

    name: str
    host: str
    state: str = PodState.CONNECTING
    error: str | None = None
    error_kind: str | None = None
    sampled_at: float | None = None
    transport: str | None = None
    gpu_status: str | None = None
    gpu_error: str | None = None
    gpus: tuple[GpuSample, ...] = ()
    disk: DiskUsage | None = None
    load: tuple[float, float, float] | None = None
    uptime_s: float | None = None
    price_per_hour: float | None = None
    sessions: tuple[SessionSnapshot, ...] = ()
    attempts: int = 0
    price_source: str | None = None
    spend_usd: float | None = None
    projected_usd: float | None = None
    provider_state: str | None = None
    provider_error: str | None = None
    spend_since: float | None = None
    spend_from: str | None = None
    received_at: float | None = None
    health: HealthReport | None = None
    health_checks: tuple[HealthCheck, ...] = ()

    @property
    def stale(self) -> bool:
        """The GPUs, disk, load and sessions shown are last known, not live: the pod is
        not online but was sampled before (`sampled_at`, `received_at` say when)."""
        return self.state != PodState.ONLINE and (self.sampled_at is not None or bool(self.gpus or self.sessions))

    @property
    def billing_now(self) -> bool:
        """Whether the instance is billed by the hour now, as far as gpuctl knows: not
        stopped, torn down or preempted; where a provider answered, it says `running`;
        without one, SSH reaches it. The one rule the `$/h` column of the TUI and
        `status`, their `$/h` totals and the spend ledger
        (`sessions.providers.poller.running_since`) follow."""
        if self.state in NOT_RUNNING:
            return False
        if self.provider_state is not None:
            return self.provider_state == "running"
        return self.state == PodState.ONLINE

    def age_s(self, now: float) -> float | None:
        """Seconds since the values shown arrived (None: not known)."""
        return None if self.received_at is None else max(0.0, now - self.received_at)


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """All pods, in config order."""

    pods: tuple[PodSnapshot, ...] = field(default_factory=tuple)

    def pod(self, name: str) -> PodSnapshot:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(name)


def apply_sample(pod: PodSnapshot, sample: dict[str, Any], received_at: float | None = None) -> PodSnapshot:
    """A new snapshot of `pod` with the telemetry of one agent/probe sample.

    Sessions are not taken from here: the monitor's `SessionBook` merges the sample's
    tmux list with config and logs.
    """
    disk_raw = sample.get("disk")
    disk = (
        DiskUsage(disk_raw["path"], int(disk_raw["used_bytes"]), int(disk_raw["total_bytes"]))
        if isinstance(disk_raw, dict) and disk_raw.get("total_bytes") is not None
        else None
    )
    load = sample.get("load")
    health: dict[str, Any] = {}
    if isinstance(sample.get("health"), dict):  # only in the sample after a health read
        from sessions.health.checks import evaluate
        from sessions.health.report import parse_report

        report = parse_report(sample["health"])
        health = {"health": report, "health_checks": tuple(evaluate(report))}
    return _replace(
        pod,
        **health,
        sampled_at=sample.get("t"),
        gpu_status=sample.get("gpu_status"),
        gpu_error=sample.get("gpu_error"),
        gpus=tuple(GpuSample.from_agent(g) for g in sample.get("gpus") or ()),
        disk=disk,
        load=tuple(load) if load else None,
        uptime_s=sample.get("uptime_s"),
        received_at=time.time() if received_at is None else received_at,
    )


def _replace(pod: PodSnapshot, **changes: Any) -> PodSnapshot:
    # dataclasses.replace re-runs __init__ through a generic path; for the 1 Hz x
    # hundreds-of-pods hot path, building the kwargs once is measurably cheaper.
    values = {name: getattr(pod, name) for name in PodSnapshot.__slots__}
    values.update(changes)
    return PodSnapshot(**values)


def with_state(pod: PodSnapshot, **changes: Any) -> PodSnapshot:
    """A new snapshot with connection fields changed (state, error, transport...)."""
    return _replace(pod, **changes)
