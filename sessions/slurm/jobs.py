"""A Slurm login node's jobs, through the transport gpuctl already holds for it.

Every call takes a `backends.transport.Transport` on the login node (lent by
`Fleet.borrow`, or `sessions.link.pod_link.open_transport` for one command), so gpuctl
never opens an SSH connection of its own here, and never one to a compute node: GPUs
are read by a job step inside the allocation (`srun --overlap`, see `commands`).

* `list_jobs`: the login user's jobs (every user's with `all_users: true`), active
  ones by default, with StdOut, GPUs and run time from `scontrol`.
* `read_progress`: the job's StdOut (its last `LOG_BYTES`) through the one progress
  parser, `sessions.progress.tracker.parse_log`.
* `read_gpus`: one sample per node of the allocation, from gpuctl's own agent run as a
  job step (`srun --overlap ... python3 -u -`, its program on stdin).
* `launch` (sbatch of the configured script), `kill` (scancel), `resume` (sbatch
  again with the newest complete checkpoint in `$GPUCTL_CHECKPOINT`, judged by the
  checkpoint listing's one rule, as a pod session's resume is), `cost_usd`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from backends.ssh import SshFailure
from backends.transport import Transport
from sessions.checkpoints.listing import (
    Checkpoint,
    CheckpointListingFailed,
    UnsafeName,
    list_checkpoints,
    newest_complete,
    sort_newest_first,
)
from sessions.config.model import PodConfig, SessionConfig, SlurmConfig
from sessions.progress.tracker import Progress, parse_log
from sessions.slurm import commands as sc
from sessions.snapshot import GpuSample

LOG_BYTES = 4 * 1024 * 1024
"""How much of a job's StdOut end is parsed for its progress."""
GPU_TIMEOUT_S = 30.0
"""A step may wait for the node (srun prints "step creation temporarily disabled")."""


class SlurmError(Exception):
    """Slurm refused or failed; the message has its own words."""


@dataclass(frozen=True)
class JobGpus:
    """What nvidia-smi said inside the allocation on one node."""

    node: str
    status: str  # "ok", "none", "error"
    error: str | None = None
    gpus: tuple[GpuSample, ...] = ()


@dataclass(frozen=True)
class JobView:
    """A job with what gpuctl read about it, as `status --json` shows it."""

    job: sc.SlurmJob
    progress: Progress | None = None
    gpus: tuple[JobGpus, ...] = ()
    cost_usd: float | None = None
    problems: tuple[str, ...] = field(default=())

    def to_json(self, pod: str) -> dict[str, Any]:
        job = self.job
        return {
            "pod": pod,
            "kind": "slurm",
            "job_id": job.job_id,
            "name": job.name,
            "user": job.user,
            "state": job.state,
            "nodes": list(job.nodes),
            "stdout": job.stdout,
            "run_s": job.run_s,
            "gpus_allocated": job.gpus,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 4),
            "progress": (self.progress or Progress()).to_json(),
            "gpus": [{"node": g.node, "status": g.status, "error": g.error,
                      "gpus": [s.to_json() for s in g.gpus]} for g in self.gpus],
            "problems": list(self.problems),
        }


def _settings(pod: PodConfig) -> SlurmConfig:
    return pod.slurm or SlurmConfig()


async def _run(transport: Transport, command: str, timeout: float, what: str) -> str:
    result = await transport.run(command, timeout=timeout)
    if not result.ok:
        raise SlurmError(f"{what} failed on the login node: {result.last_error_line()}")
    return result.stdout


async def login_user(transport: Transport, timeout: float) -> str:
    """Who the login node runs our commands as (whose jobs are "yours")."""
    return (await _run(transport, "id -un", timeout, "id -un")).strip()


async def list_jobs(transport: Transport, pod: PodConfig, *, timeout: float = 30.0,
                    active_only: bool = True, user: str | None = None) -> list[sc.SlurmJob]:
    """The jobs gpuctl follows on this cluster, oldest id first.

    Args:
        user: whose jobs; default the login user, or everyone with `all_users: true`.
        active_only: leave out jobs that ended (still in scontrol for MinJobAge).
    """
    mine = user is None and not _settings(pod).all_users
    result = await transport.run(sc.squeue_command(json_output=True, mine=mine), timeout=timeout)
    if result.ok:
        try:
            jobs = sc.parse_squeue_json(result.stdout)
        except ValueError as exc:
            raise SlurmError(f"squeue --json printed something that is not JSON ({exc})") from None
    elif sc.json_unsupported(result.stderr):
        jobs = sc.parse_squeue_plain(await _run(transport, sc.squeue_command(json_output=False, mine=mine),
                                                timeout, "squeue"))
    else:
        raise SlurmError(f"squeue failed on the login node: {result.last_error_line()}")
    if mine:
        user = await login_user(transport, timeout)
    if user is not None:
        jobs = [j for j in jobs if j.user == user]
    if active_only:
        jobs = [j for j in jobs if j.active]
    if not jobs:
        return []
    details = sc.parse_scontrol_jobs(await _run(transport, sc.SCONTROL_JOBS, timeout, "scontrol show job"))
    jobs = [sc.with_details(j, details.get(j.job_id)) for j in jobs]
    return sorted(jobs, key=lambda j: [int(p) if p.isdigit() else 0 for p in j.job_id.split("_")])


async def job(transport: Transport, job_id: str, *, timeout: float = 30.0) -> sc.SlurmJob | None:
    """One job by id (ended or not, while the controller still knows it), else None."""
    result = await transport.run(sc.scontrol_job_command(job_id), timeout=timeout)
    fields = sc.parse_scontrol_jobs(result.stdout).get(job_id) if result.ok else None
    if fields is None:
        return None
    return sc.with_details(sc.SlurmJob(job_id=job_id), fields)


async def read_progress(transport: Transport, job: sc.SlurmJob, *, timeout: float = 30.0) -> Progress | None:
    """The job's progress from its StdOut's last `LOG_BYTES`, or None without a StdOut."""
    if not job.stdout:
        return None
    result = await transport.run(sc.tail_command(job.stdout, LOG_BYTES), timeout=timeout)
    if not result.ok:
        return None
    return parse_log(result.stdout)


async def read_gpus(transport: Transport, job: sc.SlurmJob, *, timeout: float = GPU_TIMEOUT_S) -> tuple[JobGpus, ...]:
    """One nvidia-smi reading per node of the allocation, through `srun --overlap`."""

    async def one(node: str) -> JobGpus:
        try:
            result = await transport.run(sc.srun_agent_command(job.job_id, node), timeout=timeout)
        except SshFailure as exc:
            return JobGpus(node, "error", exc.message)
        sample = sc.parse_agent_sample(result.stdout)
        if sample is None:
            return JobGpus(node, "error", f"srun --overlap on {node}: {result.last_error_line() or 'no answer'}")
        raw = sample.get("gpus")
        gpus = raw if isinstance(raw, list) else []
        return JobGpus(node, str(sample.get("gpu_status") or "error"), sample.get("gpu_error"),
                       tuple(GpuSample.from_agent(g) for g in gpus if isinstance(g, dict)))

    return tuple(await asyncio.gather(*(one(n) for n in job.nodes)))


def cost_usd(job: sc.SlurmJob, pod: PodConfig, gpus_seen: int | None = None) -> float | None:
    """Run time × GPUs × the configured price per GPU-hour; None when any is unknown.

    GPUs are the allocation's `gres/gpu`, else those nvidia-smi showed inside it.
    """
    price = _settings(pod).price_per_gpu_hour
    count = job.gpus if job.gpus is not None else gpus_seen
    if price is None or count is None or job.run_s is None:
        return None
    return price * count * job.run_s / 3600.0


async def view(transport: Transport, job: sc.SlurmJob, pod: PodConfig, *, gpus: bool = True,
               timeout: float = 30.0) -> JobView:
    """Progress, GPUs (when running) and cost of one job; a part that fails is a problem, not a raise."""
    problems: list[str] = []
    progress = await read_progress(transport, job, timeout=timeout)
    readings: tuple[JobGpus, ...] = ()
    if gpus and job.state == "RUNNING" and job.nodes:
        readings = await read_gpus(transport, job)
        problems += [g.error for g in readings if g.error]
    seen = sum(len(g.gpus) for g in readings) if readings else None
    return JobView(job, progress, readings, cost_usd(job, pod, seen), tuple(problems))


async def launch(transport: Transport, pod: PodConfig, *, checkpoint: str | None = None,
                 timeout: float = 30.0) -> str:
    """Submit the pod's `slurm.script`; returns the new job id."""
    settings = _settings(pod)
    if not settings.script:
        raise SlurmError(f"pod {pod.name} has no slurm.script to submit")
    out = await _run(transport, sc.sbatch_command(settings.script, settings.sbatch_args, checkpoint=checkpoint),
                     timeout, "sbatch")
    job_id = sc.parse_sbatch(out)
    if job_id is None:
        raise SlurmError(f"sbatch printed no job id: {out.strip()[:200]!r}")
    return job_id


async def kill(transport: Transport, job_id: str, *, timeout: float = 30.0) -> None:
    """scancel the job (Slurm signals every step, then kills after KillWait)."""
    await _run(transport, sc.scancel_command(job_id), timeout, f"scancel {job_id}")


def listing_roots(patterns: tuple[str, ...]) -> dict[str | None, tuple[str, ...]]:
    """`slurm.checkpoints` globs as {folder: globs relative to it}, the shape the one
    checkpoint listing (`sessions.checkpoints.listing`) takes: a pod session's workdir
    and its relative `checkpoints:`.

    Each glob is cut before its first part holding a wildcard (`~/ckpt/step_*.pt` is
    `step_*.pt` under `~/ckpt`; a glob without one is its file under its folder), so the
    listing enters the folder itself: a `~/ckpt` that links to `/scratch` is listed
    where it leads, not refused as leaving the home. A relative glob is under the home
    (None), as `pod_dir` reads it.
    """
    roots: dict[str | None, list[str]] = {}
    for pattern in patterns:
        parts = pattern.split("/")
        cut = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts) - 1)
        head, rest = "/".join(parts[:cut]), "/".join(parts[cut:])
        folder = head or ("/" if pattern.startswith("/") else None)  # `/*.pt`: the root; `*.pt`: the home
        roots.setdefault(folder, []).append(rest)
    return {folder: tuple(globs) for folder, globs in roots.items()}


async def newest_checkpoint(transport: Transport, pod: PodConfig, *, timeout: float = 30.0) -> Checkpoint | None:
    """The newest complete checkpoint matching `slurm.checkpoints` on the cluster, or None.

    Judged by the one rule a pod session's checkpoints are judged by
    (`sessions.checkpoints.listing`: step-named ones newest by step, and one still being
    written, changing between two listings, modified just now or lacking its marker,
    never chosen), so a resume never starts from a half-written file.

    Raises:
        SlurmError: the cluster could not list one of the folders, in the listing's words.
    """
    patterns = _settings(pod).checkpoints
    if not patterns:
        return None

    async def under(folder: str | None, globs: tuple[str, ...]) -> list[Checkpoint]:
        where = SessionConfig(name=", ".join(patterns), workdir=folder, checkpoints=globs)
        return await list_checkpoints(transport, pod, where, timeout=timeout)

    try:
        found = await asyncio.gather(*(under(f, g) for f, g in listing_roots(patterns).items()))
    except (CheckpointListingFailed, UnsafeName) as exc:
        raise SlurmError(f"cannot list checkpoints on {pod.name}: {exc}") from None
    return newest_complete(sort_newest_first(c for listed in found for c in listed))


async def resume(transport: Transport, pod: PodConfig, *, timeout: float = 30.0) -> tuple[str, str]:
    """Submit the script again from the newest complete checkpoint; returns (job id, its path).

    Raises:
        SlurmError: no complete checkpoint matches (a resume from nothing would start over).
    """
    checkpoint = await newest_checkpoint(transport, pod, timeout=timeout)
    if checkpoint is None:
        patterns = ", ".join(_settings(pod).checkpoints) or "(none configured: set slurm.checkpoints)"
        raise SlurmError(f"no complete checkpoint to resume from on {pod.name}: nothing matches {patterns}")
    return await launch(transport, pod, checkpoint=checkpoint.path, timeout=timeout), checkpoint.path


__all__ = ["JobGpus", "JobView", "SlurmError", "cost_usd", "job", "kill", "launch", "list_jobs",
           "listing_roots", "newest_checkpoint", "read_gpus", "read_progress", "resume", "view"]
