"""`launch`, `kill`, `resume` and `logs` on a `kind: slurm` pod (a cluster's login node).

The verbs are the ones users already type; on a Slurm pod their second word names a
job instead of a tmux session: `launch POD NAME` submits the pod's `slurm.script` as
job NAME (sbatch -J), `kill POD JOB` scancels a job (its id, or the name of your active
jobs), `resume POD NAME` submits the script again with the newest checkpoint in
`$GPUCTL_CHECKPOINT`, `logs POD JOB [-f]` prints (and follows) the job's StdOut. All go
through the pod's link (`Fleet.for_command`): one connection to the login node, none to
compute nodes. Exit status as the tmux forms: 0 done, 1 Slurm or the pod failed, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, ask, complain, run_async

EXIT_FAILED = 1


async def _on_login(config: Any, pod: Any, action: Any, *, lend: bool = True) -> int:
    """Run `action(fleet, transport)` on the login node's link (`lend=False`: the
    action borrows for itself and gets None), Slurm's and SSH's failures said in words."""
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet
    from sessions.slurm.jobs import SlurmError

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            if not lend:
                return int(await action(fleet, None))
            async with fleet.borrow(pod.name) as transport:
                return int(await action(fleet, transport))
    except (SshFailure, SlurmError) as exc:
        complain(f"{pod.name}: {getattr(exc, 'message', exc)}")
        return EXIT_FAILED


async def _find(transport: Any, pod: Any, word: str, timeout: float) -> list[Any]:
    """The jobs `word` names: one id (ended or not), or the name of your active jobs."""
    from sessions.slurm import jobs

    if word.replace("_", "").isdigit():
        found = await jobs.job(transport, word, timeout=timeout)
        return [found] if found is not None else []
    return [j for j in await jobs.list_jobs(transport, pod, timeout=timeout) if j.name == word]


def _with_name(pod: Any, name: str) -> Any:
    """The pod with `-J NAME` added to its sbatch options (the command line wins in sbatch)."""
    from dataclasses import replace

    from sessions.config.model import SlurmConfig

    settings = pod.slurm or SlurmConfig()
    return replace(pod, slurm=replace(settings, sbatch_args=(*settings.sbatch_args, f"--job-name={name}")))


def launch(args: argparse.Namespace, config: Any, pod: Any) -> int:
    if not (pod.slurm and pod.slurm.script):
        complain(f"pod {pod.name!r} is kind: slurm but has no slurm.script to submit")
        return EXIT_USAGE
    from sessions.slurm import jobs

    async def action(fleet: Any, transport: Any) -> int:
        job_id = await jobs.launch(transport, _with_name(pod, args.session), timeout=config.defaults.command_timeout)
        print(f"submitted job {job_id} ({args.session}) on {pod.name}")
        print(f"  logs: gpuctl logs {pod.name} {job_id} -f")
        return 0

    return run_async(lambda: _on_login(config, pod, action))


def resume(args: argparse.Namespace, config: Any, pod: Any) -> int:
    if not (pod.slurm and pod.slurm.script and pod.slurm.checkpoints):
        complain(f"pod {pod.name!r} needs slurm.script and slurm.checkpoints to resume a job")
        return EXIT_USAGE
    from sessions.slurm import jobs

    async def action(fleet: Any, transport: Any) -> int:
        timeout = config.defaults.command_timeout
        running = [j for j in await jobs.list_jobs(transport, pod, timeout=timeout) if j.name == args.session]
        if running and not args.restart:
            complain(f"job {args.session!r} is still active on {pod.name} ({', '.join(j.job_id for j in running)}); "
                     "pass --restart to scancel it first")
            return EXIT_FAILED
        for job in running:
            await jobs.kill(transport, job.job_id, timeout=timeout)
        job_id, checkpoint = await jobs.resume(transport, _with_name(pod, args.session), timeout=timeout)
        print(f"submitted job {job_id} ({args.session}) on {pod.name} from {checkpoint}")
        return 0

    return run_async(lambda: _on_login(config, pod, action))


def kill(args: argparse.Namespace, config: Any, pod: Any) -> int:
    from sessions.slurm import jobs

    if not args.yes and not sys.stdin.isatty():
        complain(f"not cancelling {args.session!r} on pod {pod.name!r} without confirmation: "
                 "pass --yes to cancel without a prompt")
        return EXIT_USAGE

    async def action(fleet: Any, transport: Any) -> int:
        timeout = config.defaults.command_timeout
        found = [j for j in await _find(transport, pod, args.session, timeout) if j.active]
        if not found:
            complain(f"no active job {args.session!r} on {pod.name}; nothing to cancel")
            return 0
        if not args.yes:
            if not ask(f"scancel {', '.join(f'{j.job_id} ({j.name}, {j.state})' for j in found)} on {pod.name}?"):
                complain("not cancelled")
                return EXIT_FAILED
        for job in found:
            await jobs.kill(transport, job.job_id, timeout=timeout)
            print(f"cancelled job {job.job_id} ({job.name}) on {pod.name}")
        return 0

    return run_async(lambda: _on_login(config, pod, action))


def logs(args: argparse.Namespace, config: Any, pod: Any) -> int:
    """The job's StdOut, byte for byte (and followed), through the pod's one link."""
    from tui.terminal_text import LogBytes, visible

    out = sys.stdout.buffer
    cleaner = LogBytes() if sys.stdout.isatty() else None  # pod bytes are not trusted with a terminal

    def notice(message: str) -> None:
        print(f"gpuctl: {visible(message)}", file=sys.stderr, flush=True)

    async def action(fleet: Any, _: None) -> int:
        async with fleet.borrow(pod.name) as transport:
            found = [j for j in await _find(transport, pod, args.session, config.defaults.command_timeout)
                     if j.stdout]
        if len(found) != 1:
            complain(f"{'no job' if not found else 'more than one job'} {args.session!r} on {pod.name} "
                     "with a StdOut (name it by its id)")
            return EXIT_FAILED
        async for chunk in fleet.logs(pod.name, found[0].stdout, lines=args.lines, follow=args.follow,
                                      on_notice=notice):
            out.write(cleaner.feed(chunk) if cleaner else chunk)
            out.flush()
        return 0

    try:
        return run_async(lambda: _on_login(config, pod, action, lend=False))
    finally:
        if cleaner:
            out.write(cleaner.flush())
            out.flush()
