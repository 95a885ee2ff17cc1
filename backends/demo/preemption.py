"""The spot pod's fate: preempted every so often, back after a while.

RunPod interrupts a spot pod with a few seconds' warning and no API signal; from outside
it just turns ``EXITED`` (PROVIDERS.md §2.6). Here, every `after` seconds of uptime:

1. the provider stand-in marks the pod ``EXITED`` and the machine goes off: its tmux
   server and the training in it die, its SSH server stops accepting and drops the
   open connections (gpuctl sees the pod go offline, the session absent);
2. `outage` seconds later it boots again (``RUNNING``) with idle GPUs and no session,
   which is when gpuctl's auto-resume (or a person pressing resume) brings the run back
   from its newest checkpoint.

A pod a user stopped or terminated through the API meanwhile is left alone.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from backends.demo.pod import DemoPod
from backends.demo.runpod_standin import EXITED, RUNNING, RunPodStandIn, StandInPod


class SpotPreemption:
    """Preempts one pod on a timer (see the module docstring).

    Args:
        pod: the demo pod.
        standin: the provider stand-in whose status for the pod changes with it.
        after: seconds of uptime before each preemption.
        outage: seconds the pod stays away.
        notify: called with a sentence for a person at each change.
    """

    def __init__(self, pod: DemoPod, standin: RunPodStandIn, standin_pod: StandInPod, *, after: float,
                 outage: float, notify: Callable[[str], None] = lambda _: None):
        self.pod = pod
        self.standin = standin
        self.standin_pod = standin_pod
        self.after = after
        self.outage = outage
        self.notify = notify
        self.preemptions = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"gpuctl-demo-spot-{self.pod.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def preempt_now(self) -> bool:
        """Take the pod away now; False when it is not running."""
        if self.standin_pod.status != RUNNING or self.pod.terminated:
            return False
        self.pod.preempted = True
        await self.standin.stop(self.standin_pod)
        self.preemptions += 1
        self.notify(f"{self.pod.name}: spot pod preempted (provider status EXITED); "
                    f"it comes back in about {self.outage:g}s, without its session")
        return True

    async def restore_now(self) -> bool:
        """Bring a preempted pod back; False when it was not preempted (or was torn down)."""
        if not self.pod.preempted or self.standin_pod.status != EXITED or self.pod.terminated:
            return False
        await self.standin.start_pod(self.standin_pod)
        self.notify(f"{self.pod.name}: spot pod is back (RUNNING); its session is gone: resume it "
                    "from the newest checkpoint")
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.after)
            if not await self.preempt_now():
                continue
            await asyncio.sleep(self.outage)
            try:
                await self.restore_now()
            except OSError as exc:  # its port was taken meanwhile: it stays down
                self.notify(f"{self.pod.name}: could not come back: {exc}")
                return
