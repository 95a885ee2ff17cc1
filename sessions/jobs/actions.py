"""Launch and kill a job's ranks, in rank order, each on its pod's transport.

The rendezvous settings are the same for every rank but its own number: `{rank}`,
`{nnodes}`, `{master_addr}` (rank 0's host, unless the job sets one), `{master_port}`
(29500, torchrun's default, unless set). They reach the session's command through
the environment (`sessions.config.shell_template.fill`: `$GPUCTL_RANK`...), as
`resume:` templates do, so no value is ever pasted into shell text. Ranks are started
one after another, rank 0 first, since rank 0 hosts the rendezvous.

`borrow` is `Fleet.borrow` (or anything that lends a pod's transport by name): this
module opens no connection of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from backends.transport import Transport
from sessions.config import shell_template
from sessions.config.model import Config, JobConfig
from sessions.link import pods as pod_settings
from sessions.tmux import control as session_control

DEFAULT_MASTER_PORT = 29500


class JobError(Exception):
    """The job cannot do that (the message says why)."""
Borrow = Callable[[str], AbstractAsyncContextManager[Transport]]


def master_addr(job: JobConfig, config: Config) -> str:
    """Where rank 0 listens: the job's `master_addr`, else rank 0's host as SSH reaches it."""
    if job.master_addr:
        return job.master_addr
    pod = config.pod(job.pods[0])
    if pod_settings.is_local(pod):
        return "127.0.0.1"
    return pod_settings.ssh_target(pod, config.defaults).hostname


def rank_values(job: JobConfig, config: Config, rank: int) -> dict[str, str]:
    """The placeholders' values for one rank."""
    return {"rank": str(rank), "nnodes": str(len(job.pods)), "master_addr": master_addr(job, config),
            "master_port": str(job.master_port or DEFAULT_MASTER_PORT)}


async def launch(job: JobConfig, config: Config, borrow: Borrow) -> list[Any]:
    """Start the job's session on every pod, rank 0 first; returns each `LaunchResult`.

    Stops at the first rank that fails (the error says which pod), leaving the ranks
    already started running: the caller decides whether to kill them.
    """
    if job.session is None:
        raise JobError(f"job {job.name!r} names no session to launch (add session: to its entry)")
    results = []
    for rank, pod_name in enumerate(job.pods):
        pod = config.pod(pod_name)
        session = pod.session(job.session)
        assert session.command is not None  # config check refused a job session without one
        filled = replace(session, command=shell_template.fill(session.command, rank_values(job, config, rank)))
        async with borrow(pod_name) as transport:
            results.append(await session_control.launch(transport, pod, filled))
    return results


async def kill(job: JobConfig, borrow: Borrow) -> list[tuple[str, Any]]:
    """Kill the job's session on every pod (last rank first); idempotent per pod.
    Returns (pod, `KillResult`) per pod, in that order."""
    if job.session is None:
        raise JobError(f"job {job.name!r} names no session to kill")
    results = []
    for pod_name in reversed(job.pods):
        async with borrow(pod_name) as transport:
            results.append((pod_name, await session_control.kill(transport, job.session, pod_name=pod_name)))
    return results


Check = Callable[[str], Awaitable[tuple[bool, str]]]
Terminate = Callable[[str], Awaitable[Any]]


async def teardown(job: JobConfig, check: Check, terminate: Terminate) -> list[Any]:
    """Terminate every node of the job, only once the checkpoint guard passed on all.

    `check(pod)` is `Fleet.teardown_check` ((ok, what is known) per pod); `terminate(pod)`
    ends one pod's instance with the guard already satisfied. A job is torn down whole
    or not at all: one node whose newest checkpoint has no verified local copy keeps
    every node (its peers' state is useless without its shard).

    Raises:
        JobError: which nodes the guard refused, and why, before anything is terminated.
    """
    verdicts = [(pod, *await check(pod)) for pod in job.pods]
    refused = [f"{pod}: {why}" for pod, ok, why in verdicts if not ok]
    if refused:
        raise JobError(f"not tearing down job {job.name!r}: " + "; ".join(refused))
    return [await terminate(pod) for pod in job.pods]


async def resume(job: JobConfig, config: Config, borrow: Borrow, *, restart: bool = False) -> tuple[Any, list[Any]]:
    """Relaunch every rank from the newest checkpoint complete on rank 0.

    Rank 0 decides (its listing's newest complete checkpoint, `newest_complete`), since
    a job restarts from a step every rank reached and rank 0 writes last in most
    trainers. Each rank runs its session's `resume:` template with `{checkpoint}` (rank
    0's path: the checkpoint of a multi-node job sits on a filesystem the nodes share)
    and the rank placeholders filled through the environment. Nothing is launched
    while any rank still runs, unless `restart`, which kills them first.

    Returns:
        (the checkpoint, each rank's `LaunchResult`).

    Raises:
        JobError: no session, or no complete checkpoint on rank 0, or a rank running.
    """
    from sessions.checkpoints.listing import list_checkpoints, newest_complete
    from sessions.checkpoints.resume import resumable

    if job.session is None:
        raise JobError(f"job {job.name!r} names no session to resume")
    cfgs = [resumable(config.pod(p), job.session) for p in job.pods]  # every rank has a resume: template
    rank0 = config.pod(job.pods[0])
    async with borrow(rank0.name) as transport:
        chosen = newest_complete(await list_checkpoints(transport, rank0, cfgs[0], settle=0))
    if chosen is None:
        raise JobError(f"no complete checkpoint on rank 0 ({rank0.name}) to resume job {job.name!r} from")
    running = []
    for pod_name in job.pods:
        async with borrow(pod_name) as transport:
            if (await session_control.session_state(transport, job.session, pod_name=pod_name)).running:
                running.append(pod_name)
    if running and not restart:
        raise JobError(f"job {job.name!r} still runs on {', '.join(running)}; not resuming over it "
                       "(restart kills it first)")
    if running:
        await kill(job, borrow)
    launched = []
    for rank, (pod_name, cfg) in enumerate(zip(job.pods, cfgs)):
        values = {"checkpoint": chosen.path, **rank_values(job, config, rank)}
        command = shell_template.fill(cfg.resume or "", values)
        async with borrow(pod_name) as transport:
            launched.append(await session_control.launch(transport, config.pod(pod_name), replace(cfg, command=command)))
    return chosen, launched
