"""One demo pod: what it is (`PodSpec`), and the pieces that make it run (`DemoPod`).

A `DemoPod` ties together the pod's sandbox, its simulated GPUs and its SSH server,
and knows how to switch the whole machine off and on again, the way a cloud stops or
preempts an instance: every process on it dies (its tmux server and the training in
it, the commands SSH started), SSH stops answering and open connections drop. Its
files stay (like a RunPod volume), so a resumed run finds its checkpoints.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from backends.demo.gpu_sim import GpuSimulator, PodGpus
from backends.demo.sandbox import Sandbox
from backends.demo.ssh_server import PodSshServer


@dataclass(frozen=True)
class SessionSpec:
    """The training session a demo pod runs (arguments of ``train.py``).

    Attributes:
        name: tmux session name.
        format: ``hf``, ``torchrun`` or ``lightning`` (what the log looks like).
        total_steps: the run's length.
        checkpoint_every: steps between checkpoints.
        checkpoint_dir: where they go, relative to the workspace.
        checkpoint_glob: the pattern gpuctl finds them with (relative to the workspace).
        extra: more ``train.py`` arguments (``--nproc 8``).
        seed: the run's seed (its loss curve and checkpoint bytes).
    """

    name: str
    format: str
    total_steps: int
    checkpoint_every: int
    checkpoint_dir: str
    checkpoint_glob: str
    extra: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class PodSpec:
    """A demo pod: GPUs, price, spot or not, and its session.

    Attributes:
        name: pod name in gpuctl's config.
        gpu_model: a key of `backends.demo.gpu_sim.MODELS`.
        gpu_count: how many GPUs.
        runpod_gpu: RunPod's GPU type id, as its API prints it.
        price_per_hour: USD per hour for the whole pod.
        spot: an interruptible pod, preempted now and then.
        session: what it trains.
    """

    name: str
    gpu_model: str
    gpu_count: int
    runpod_gpu: str
    price_per_hour: float
    spot: bool
    session: SessionSpec


class DemoPod:
    """A running demo pod (see the module docstring).

    Attributes:
        powered: the machine is on (its SSH server may be asked to accept).
        terminated: torn down for good; it never comes back.
        preempted: off because the spot simulator took it away (not a user's stop).
    """

    def __init__(self, spec: PodSpec, sandbox: Sandbox, gpus: PodGpus, server: PodSshServer,
                 simulator: GpuSimulator):
        self.spec = spec
        self.sandbox = sandbox
        self.gpus = gpus
        self.server = server
        self._simulator = simulator
        self.powered = True
        self.terminated = False
        self.preempted = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    async def power_off(self) -> None:
        """Everything on the machine stops; SSH refuses; the files stay."""
        self.powered = False
        await asyncio.to_thread(self.sandbox.kill_tmux)
        self._simulator.pause(self.name)
        await self.server.stop()
        try:
            self.sandbox.heartbeat.unlink()
        except FileNotFoundError:
            pass

    async def power_on(self) -> None:
        """Boot again on the same port, with cold idle GPUs and no sessions."""
        if self.terminated:
            return
        self._simulator.resume(self.name)
        await self.server.start(self.port)
        self.powered = True
        self.preempted = False

    async def terminate(self) -> None:
        """Off for good (the sandbox is removed with the demo's temp dir)."""
        self.terminated = True
        await self.power_off()
