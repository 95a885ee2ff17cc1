"""The `gpuctl status --json` document: a stable contract for users' scripts.

Keys named in the foundation issue never change names; new keys may be added.

Stale is never shown as live: a pod that is not `online` keeps its last GPUs, disk and
sessions, with `"stale": true` on the pod, on each GPU and on each session, beside
`sampled_at` (the pod's clock) and `received_at` (this machine's, which the age is
measured on). A session on such a pod has `"state": "unknown"` and `last_state`, the
state last seen (`running`, `exited`...): gpuctl cannot tell whether it still runs.

Each GPU's `health` is its worst doctor check on the agent's newest health reading
(`sessions.health`: `status`, `check`, `reason`, `next_step`), null before the first.
"""

from __future__ import annotations

from typing import Any

from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot


def gpu_json(gpu: GpuSample, pod: PodSnapshot | None = None) -> dict[str, Any]:
    return {
        **gpu.to_json(),
        "health": _health(gpu, pod),
        **(_when(pod) if pod is not None else {}),
    }


def _health(gpu: GpuSample, pod: PodSnapshot | None) -> dict[str, Any] | None:
    if pod is None or not pod.health_checks:
        return None
    from sessions.health.checks import worst_by_gpu

    check = worst_by_gpu(pod.health_checks).get(gpu.index) if gpu.index is not None else None
    return None if check is None else {"status": check.status, "check": check.check, "reason": check.reason,
                                       "next_step": check.next_step}


def _when(pod: PodSnapshot) -> dict[str, Any]:
    """When a value of the pod was sampled, and whether it is last known, not live."""
    return {"stale": pod.stale, "sampled_at": pod.sampled_at}


def session_json(session: SessionSnapshot, pod: PodSnapshot | None = None) -> dict[str, Any]:
    """A session with the `gpuctl progress --json` keys merged in (null when unknown)."""
    progress = (session.progress or Progress()).to_json()
    return {
        "name": session.name,
        "state": session.state,
        "last_state": session.last_state,  # on a pod not online: the state last seen ("state" is "unknown")
        **(_when(pod) if pod is not None else {"stale": session.stale}),
        "exit_status": session.exit_status,
        "stalled": session.stalled,
        "log": session.log,
        **progress,
        "configured": session.configured,
        "attached": session.attached,
        "windows": session.windows,
        "created": session.created,
        "pid": session.pid,
        # where each figure above came from: log, trainer_state, tfevents, wandb, csv, mlflow, config
        "sources": dict(session.sources),
        "trackers": [t.to_json() for t in session.trackers],
    }


def pod_json(pod: PodSnapshot) -> dict[str, Any]:
    disk = pod.disk
    return {
        "name": pod.name,
        "state": pod.state,
        "error": pod.error,
        "error_kind": pod.error_kind,
        "host": pod.host,
        "transport": pod.transport,
        "sampled_at": pod.sampled_at,
        "received_at": pod.received_at,
        "stale": pod.stale,  # not online: the GPUs, disk, load and sessions below are last known
        "gpu_status": pod.gpu_status,
        "gpu_error": pod.gpu_error,
        "gpus": [gpu_json(g, pod) for g in pod.gpus],
        "disk": {"path": disk.path, "used_bytes": disk.used_bytes, "total_bytes": disk.total_bytes} if disk else None,
        "load": list(pod.load) if pod.load else None,
        "uptime_s": pod.uptime_s,
        "price_per_hour": pod.price_per_hour,
        "price_source": pod.price_source,
        "spend_usd": pod.spend_usd,
        "spend_since": pod.spend_since,
        "spend_from": pod.spend_from,  # provider | uptime | first_seen: who says when the run began
        "projected_usd": pod.projected_usd,
        "provider_state": pod.provider_state,
        "provider_error": pod.provider_error,
        "sessions": [session_json(s, pod) for s in pod.sessions],
    }


def fleet_json(fleet: FleetSnapshot) -> dict[str, Any]:
    return {"pods": [pod_json(p) for p in fleet.pods]}
