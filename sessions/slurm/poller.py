"""The Fleet's low-frequency look at each `kind: slurm` pod's jobs, for the TUI.

A login node's job list changes on the scale of minutes, and each look is a `squeue`,
a `scontrol` and a log tail per job on the login node, so the Fleet runs one task for
all Slurm pods every `INTERVAL_S`, over the pod's own link (`borrow`, the Fleet's:
never a connection of its own). GPUs are not read here: an `srun --overlap` probe is a
job step in the user's accounting on every look; `gpuctl status --json` reads them.
What each look found replaces the last (`views`), or why it could not (`errors`), and
`on_change(pod)` tells the Fleet to republish that pod. One read of a log gives a step
but rarely a rate, so each job's steps across looks feed a `PaceClock` (the one pace
and ETA rule, `sessions.progress.rate`) where the log printed no rate of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from backends.ssh import SshFailure
from backends.transport import Transport
from sessions.config.model import PodConfig
from sessions.progress.rate import PaceClock
from sessions.slurm import jobs

INTERVAL_S = 30.0
"""Between two looks at a cluster (`squeue` is the controller's load, not only ours)."""

Borrow = Callable[[str], AbstractAsyncContextManager[Transport]]


class SlurmPoller:
    """Keeps the newest `jobs.JobView`s of every Slurm pod it was given."""

    def __init__(self, pods: Sequence[PodConfig], borrow: Borrow, on_change: Callable[[str], Any],
                 *, timeout: float = 30.0, interval: float = INTERVAL_S) -> None:
        self.pods = [p for p in pods if p.is_slurm]
        self._borrow = borrow
        self._on_change = on_change
        self._timeout = timeout
        self.interval = interval
        self.views: dict[str, tuple[jobs.JobView, ...]] = {}
        """Per pod, its jobs at the last look that answered (oldest id first)."""
        self.errors: dict[str, str] = {}
        """Per pod, why the last look failed (cleared by one that answers)."""
        self._clocks: dict[tuple[str, str], PaceClock] = {}

    async def run(self) -> None:
        """Look at every cluster, side by side, then wait `interval`; until cancelled."""
        while True:
            await asyncio.gather(*(self.poll(p) for p in self.pods))
            await asyncio.sleep(self.interval)

    async def poll(self, pod: PodConfig) -> None:
        """One look at `pod`'s jobs; a failure is kept in words, never raised."""
        try:
            async with self._borrow(pod.name) as transport:
                listed = await jobs.list_jobs(transport, pod, timeout=self._timeout)
                views = tuple(await asyncio.gather(*(jobs.view(transport, job, pod, gpus=False,
                                                               timeout=self._timeout) for job in listed)))
        except (SshFailure, jobs.SlurmError, asyncio.TimeoutError) as exc:
            error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if self.errors.get(pod.name) != error:
                self.errors[pod.name] = error
                self._on_change(pod.name)
            return
        views = tuple(self._paced(pod.name, v, time.time()) for v in views)
        listed_ids = {v.job.job_id for v in views}
        for key in [k for k in self._clocks if k[0] == pod.name and k[1] not in listed_ids]:
            del self._clocks[key]  # the job ended
        error = self.errors.pop(pod.name, None)
        if views != self.views.get(pod.name) or error is not None:
            self.views[pod.name] = views
            self._on_change(pod.name)

    def _paced(self, pod: str, view: jobs.JobView, now: float) -> jobs.JobView:
        """`view` with a rate and ETA from its steps across looks, where its log gave none."""
        progress = view.progress
        key = (pod, view.job.job_id)
        if progress is None or progress.step is None or view.job.state != "RUNNING":
            self._clocks.pop(key, None)
            return view
        clock = self._clocks.get(key)
        if clock is None:
            clock = self._clocks[key] = PaceClock(now, progress.step)
        clock.add(now, progress.step)
        if progress.rate is not None:
            return view
        rate = clock.pace()
        eta = clock.eta(progress.total, now) if rate and progress.total else None
        return replace(view, progress=replace(progress, rate=rate, eta_s=eta))
