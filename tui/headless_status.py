"""`gpuctl status`: connect to every pod at once, print one table (or JSON), exit.

Exit status 0 when every pod answered, 1 when any did not: cron jobs and CI can act
on it without parsing. `--watch` keeps printing until interrupted: in place on a
terminal (no flicker), one document per interval otherwise (JSON lines with --json).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from sessions.config.loader import Config
from sessions.fleet.facade import Fleet
from sessions.snapshot import FleetSnapshot, PodState
from tui.status_json import fleet_json
from tui.status_table import render_plain, render_rich


def exit_code(fleet: FleetSnapshot) -> int:
    """0 when every pod is online, else 1."""
    return 0 if all(p.state == PodState.ONLINE for p in fleet.pods) else 1


def _settle_timeout(config: Config) -> float:
    # Each pod's first attempt is bounded by its connect timeout plus the agent's
    # start; this outer bound only guards against a bug leaving a pod unsettled.
    longest = max((p.connect_timeout or config.defaults.connect_timeout for p in config.pods), default=10.0)
    return longest + config.defaults.command_timeout + 5


def print_snapshot(fleet: FleetSnapshot, *, as_json: bool, out: TextIO, config: Config | None = None,
                   jobs: list[dict] | None = None) -> None:
    """One rendering of the fleet in the requested form (`jobs`: Slurm jobs, JSON only)."""
    if as_json:
        doc = fleet_json(fleet)
        if jobs is not None:
            doc["jobs"] = jobs
        out.write(json.dumps(doc) + "\n")
    elif out.isatty():
        from rich.console import Console

        render_rich(fleet, Console(file=out), config)
    else:
        out.write(render_plain(fleet))
    out.flush()


async def run_status(config: Config, *, as_json: bool, watch: bool, interval: float,
                     pod_names: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run `gpuctl status`; returns the exit status."""
    out = out or sys.stdout
    async with Fleet(config, pod_names) as fleet:
        snapshot = await fleet.wait_settled(timeout=_settle_timeout(config))
        if not watch:
            jobs = await status_jobs(fleet, snapshot) if as_json else None
            print_snapshot(snapshot, as_json=as_json, out=out, config=config, jobs=jobs)
            return exit_code(snapshot)
        try:
            if out.isatty() and not as_json:
                await _watch_live(fleet, interval, out)
            else:
                while True:
                    current = fleet.snapshot()
                    jobs = await status_jobs(fleet, current) if as_json else None
                    print_snapshot(current, as_json=as_json, out=out, config=config, jobs=jobs)
                    if not as_json:
                        out.write("\n")
                    await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass
        return exit_code(fleet.snapshot())


async def status_jobs(fleet: Fleet, snapshot: FleetSnapshot) -> list[dict] | None:
    """`jobs` of `status --json`: each `jobs:` entry as one unit (`kind: job`), then the
    Slurm jobs of `kind: slurm` pods (`kind: slurm`); None when the config has neither."""
    from sessions.jobs.summary import summarize

    configured = [summarize(job, snapshot).to_json() for job in fleet.config.jobs
                  if any(p in fleet.links for p in job.pods)]
    slurm = await slurm_jobs(fleet)
    if not fleet.config.jobs and slurm is None:
        return None
    return configured + (slurm or [])


async def slurm_jobs(fleet: Fleet) -> list[dict] | None:
    """The jobs of every `kind: slurm` pod, read on its login node through the Fleet's
    link; None when no pod is one. A cluster that cannot be read is said on stderr."""
    from sessions.errors import SshFailure
    from sessions.slurm import jobs as slurm

    pods = [p for p in fleet.config.pods if p.is_slurm and p.name in fleet.links]
    if not pods:
        return None
    timeout = fleet.config.defaults.command_timeout

    async def one(pod) -> list[dict]:
        try:
            async with fleet.borrow(pod.name) as transport:
                listed = await slurm.list_jobs(transport, pod, timeout=timeout)
                # Each job's log tail and srun probes run side by side (channels of one connection).
                views = await asyncio.gather(*(slurm.view(transport, job, pod, timeout=timeout) for job in listed))
        except (SshFailure, slurm.SlurmError) as exc:
            print(f"gpuctl: {pod.name}: cannot list Slurm jobs: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return []
        return [v.to_json(pod.name) for v in views]

    found = await asyncio.gather(*(one(p) for p in pods))
    return [job for per_pod in found for job in per_pod]


async def _watch_live(fleet: Fleet, interval: float, out: TextIO) -> None:
    """Redraw in place with rich Live: the terminal never flickers or scrolls."""
    from rich.console import Console
    from rich.live import Live

    from tui.status_table import rich_renderable

    with Live(rich_renderable(fleet.snapshot(), fleet.config), console=Console(file=out), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(rich_renderable(fleet.snapshot(), fleet.config), refresh=True)
