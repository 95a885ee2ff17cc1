"""The `gpuctl status --json` document: a stable contract for users' scripts.

Keys named in the foundation issue never change names; new keys may be added.
"""

from __future__ import annotations

from typing import Any

from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot


def gpu_json(gpu: GpuSample) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "name": gpu.name,
        "uuid": gpu.uuid,
        "temp_c": gpu.temp_c,
        "util_pct": gpu.util_pct,
        "mem_used_mib": gpu.mem_used_mib,
        "mem_total_mib": gpu.mem_total_mib,
        "power_w": gpu.power_w,
        "power_limit_w": gpu.power_limit_w,
    }


def session_json(session: SessionSnapshot) -> dict[str, Any]:
    """A session with the `gpuctl progress --json` keys merged in (null when unknown)."""
    progress = (session.progress or Progress()).to_json()
    return {
        "name": session.name,
        "state": session.state,
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
        "gpu_status": pod.gpu_status,
        "gpu_error": pod.gpu_error,
        "gpus": [gpu_json(g) for g in pod.gpus],
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
        "sessions": [session_json(s) for s in pod.sessions],
    }


def fleet_json(fleet: FleetSnapshot) -> dict[str, Any]:
    return {"pods": [pod_json(p) for p in fleet.pods]}
