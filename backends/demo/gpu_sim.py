"""Simulated GPUs for the demo pods: models, a state machine that follows the load, the state file.

Each demo pod has a `PodGpus`: its GPU model and count, and a few numbers per GPU
(temperature, utilization, memory, power) that move toward where the load puts them,
with the lags real cards show: memory is allocated within a second or two of the job
starting and freed the moment it dies, utilization follows the phase (training,
evaluation, writing a checkpoint), power follows utilization, and temperature creeps
up and cools down over tens of seconds.

The load comes from the heartbeat file the simulated trainer touches
(``backends/demo/trainer.py``): its pid, step and phase. A heartbeat whose process is
gone, or that has not been touched for a few seconds, means idle GPUs.

`tick` writes the JSON state file that ``backends/sim_nvidia_smi.py`` reads (the same
keys the real tool prints), atomically: a temp file renamed over it, so a reader never
sees half a file. `GpuSimulator` ticks every pod a few times a second.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

TICK_S = 0.3
"""How often the state files are rewritten."""

STALE_HEARTBEAT_S = 5.0
"""A heartbeat older than this means the trainer is stuck or gone: the GPUs go idle."""

DRIVER_VERSION = "550.54.15"
CUDA_VERSION = "12.4"


@dataclass(frozen=True)
class GpuModel:
    """What one kind of card looks like to nvidia-smi, idle and under a training load."""

    name: str
    memory_mib: int
    power_limit_w: float
    idle_power_w: float
    busy_power_w: float
    idle_temp_c: float
    busy_temp_c: float
    busy_memory_mib: int
    idle_memory_mib: int
    has_fan: bool
    bus_ids: tuple[str, ...]


_SXM_BUS_IDS = tuple(f"00000000:{b}:00.0" for b in ("07", "0F", "47", "4E", "87", "90", "B7", "BD"))

MODELS: dict[str, GpuModel] = {
    "rtx4090": GpuModel("NVIDIA GeForce RTX 4090", 24564, 450.0, 21.0, 395.0, 33.0, 72.0, 21870, 3, True,
                        ("00000000:01:00.0",)),
    "a100-80gb": GpuModel("NVIDIA A100-SXM4-80GB", 81920, 400.0, 61.0, 352.0, 32.0, 63.0, 74213, 4, False,
                          _SXM_BUS_IDS),
    "h100-80gb": GpuModel("NVIDIA H100 80GB HBM3", 81559, 700.0, 71.0, 618.0, 30.0, 67.0, 76881, 1, False,
                          _SXM_BUS_IDS),
}

PHASE_LOAD = {"train": 0.97, "eval": 0.62, "save": 0.04, "setup": 0.18}
"""Share of full utilization each trainer phase keeps the GPUs at."""


@dataclass
class _GpuState:
    temp: float
    util: float
    memory: float
    power: float
    heat_offset: float  # cards further from the fans run a few degrees hotter
    memory_offset: float


def read_heartbeat(path: Path, now: float) -> str | None:
    """The trainer's phase when it is alive and recent, else None (idle)."""
    try:
        beat = json.loads(path.read_text())
        pid, phase, stamp = int(beat["pid"]), str(beat["phase"]), float(beat["t"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if now - stamp > STALE_HEARTBEAT_S:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return phase if phase in PHASE_LOAD else "train"


FAULTS = ("ecc", "xid", "pcie", "remap", "slowdown", "zombie", "hang")
"""Faults `gpuctl demo --fault` injects on the first pod (issue 17): one of its GPUs
(GPU 1) shows the first six; `hang` makes its training hang a little into the run
(`backends/demo/trainer.py --hang-at`), which watch diagnoses and auto-resume restarts."""

HEALTHY = {
    "persistence_mode": "Enabled", "ecc.mode.current": "Enabled",
    "ecc.errors.corrected.volatile.total": 0, "ecc.errors.uncorrected.volatile.total": 0,
    "ecc.errors.corrected.aggregate.total": 0, "ecc.errors.uncorrected.aggregate.total": 0,
    "retired_pages.pending": "[N/A]", "remapped_rows.correctable": 0, "remapped_rows.uncorrectable": 0,
    "remapped_rows.pending": "No", "remapped_rows.failure": "No",
    "pcie.link.gen.current": 4, "pcie.link.gen.max": 4, "pcie.link.width.current": 16, "pcie.link.width.max": 16,
    "clocks_event_reasons.hw_slowdown": "Not Active", "clocks_event_reasons.hw_thermal_slowdown": "Not Active",
    "clocks_event_reasons.hw_power_brake_slowdown": "Not Active",
    "clocks_event_reasons.sw_thermal_slowdown": "Not Active", "clocks_event_reasons.sw_power_cap": "Not Active",
    "clocks_event_reasons.gpu_idle": "Not Active", "compute_apps": [],
}
"""The health fields of a sound GPU, in nvidia-smi's words (`backends/sim_nvidia_smi.py`)."""


def _fault(kind: str, gpu: dict, state: dict) -> None:
    """Break one GPU's state (and the pod's kernel log) the way `kind` shows on a real pod."""
    if kind == "ecc":
        gpu.update({"ecc.errors.uncorrected.volatile.total": 2, "ecc.errors.uncorrected.aggregate.total": 2})
    elif kind == "xid":
        domain, bus, rest = gpu["pci.bus_id"].split(":")
        pci = "%s:%s:%s" % (domain[-4:], bus.lower(), rest.split(".")[0])
        state["kernel_log"] = {"lines": [
            "NVRM: Xid (PCI:%s): 79, pid=4242, GPU has fallen off the bus." % pci]}
    elif kind == "pcie":
        gpu.update({"pcie.link.width.current": 4})
    elif kind == "remap":
        gpu.update({"remapped_rows.uncorrectable": 3, "remapped_rows.failure": "Yes"})
    elif kind == "slowdown":
        gpu.update({"clocks_event_reasons.hw_slowdown": "Active"})
    elif kind == "zombie":
        gpu.update({"compute_apps": [{"pid": 4194301, "used_memory": 7242, "process_name": "python"}]})


def _approach(value: float, target: float, dt: float, tau: float) -> float:
    """First-order lag: move toward `target` with time constant `tau` seconds."""
    return target + (value - target) * math.exp(-dt / tau) if tau > 0 else target


class PodGpus:
    """The GPUs of one demo pod.

    Args:
        pod: the pod's name (seeds the per-card differences and the UUIDs).
        model: a key of `MODELS`.
        count: how many cards.
        state_path: the file sim_nvidia_smi reads (``$GPUCTL_SIM_GPU_STATE``).
        heartbeat_path: the file the trainer touches.
        fault: one of `FAULTS` to show on this pod's GPU 1 (GPU 0 on a single-GPU pod).
    """

    def __init__(self, pod: str, model: str, count: int, state_path: Path, heartbeat_path: Path,
                 fault: str | None = None):
        self.pod = pod
        self.fault = fault
        self.model = MODELS[model]
        self.count = count
        self.state_path = Path(state_path)
        self.heartbeat_path = Path(heartbeat_path)
        self._rng = random.Random(pod)
        self._gpus: list[_GpuState] = []
        self._last: float | None = None
        self.reset()

    def reset(self) -> None:
        """Cold, idle cards (a fresh or restarted pod)."""
        m = self.model
        self._gpus = [
            _GpuState(m.idle_temp_c + self._rng.uniform(-1, 2), 0.0, float(m.idle_memory_mib), m.idle_power_w,
                      heat_offset=self._rng.uniform(-2.5, 3.5), memory_offset=self._rng.uniform(-180, 180))
            for _ in range(self.count)
        ]
        self._last = None

    def tick(self, now: float | None = None) -> dict:
        """Advance the simulation to `now`, write the state file, return the state."""
        now = time.time() if now is None else now
        dt = 0.0 if self._last is None else max(0.0, min(5.0, now - self._last))
        self._last = now
        phase = read_heartbeat(self.heartbeat_path, time.time())  # the trainer stamps wall time
        for gpu in self._gpus:
            self._advance(gpu, phase, dt)
        state = self.state()
        self._write(state)
        return state

    def _advance(self, gpu: _GpuState, phase: str | None, dt: float) -> None:
        m, rng = self.model, self._rng
        load = PHASE_LOAD.get(phase, 0.0) if phase else 0.0
        util_target = min(100.0, load * 100 + rng.gauss(0, 1.8)) if load else 0.0
        gpu.util = max(0.0, _approach(gpu.util, util_target, dt, 0.6))
        if phase is None:
            gpu.memory = float(m.idle_memory_mib)  # the process died: its memory is freed at once
        else:
            want = m.busy_memory_mib + gpu.memory_offset
            if phase == "setup":
                want *= 0.55
            gpu.memory = _approach(gpu.memory, want, dt, 1.2) + rng.uniform(-6, 6)
            gpu.memory = max(float(m.idle_memory_mib), min(m.memory_mib - 200.0, gpu.memory))
        busy = gpu.util / 100
        power_target = m.idle_power_w + (m.busy_power_w - m.idle_power_w) * busy * rng.uniform(0.93, 1.04)
        gpu.power = min(m.power_limit_w, _approach(gpu.power, power_target, dt, 0.8))
        temp_target = m.idle_temp_c + (m.busy_temp_c - m.idle_temp_c) * busy + gpu.heat_offset * busy
        gpu.temp = _approach(gpu.temp, temp_target, dt, 18.0 if temp_target > gpu.temp else 30.0)

    def state(self) -> dict:
        """The state in sim_nvidia_smi's format (nvidia-smi's own field names)."""
        m = self.model
        gpus = []
        for index, gpu in enumerate(self._gpus):
            busy = gpu.util > 5 or gpu.memory > m.idle_memory_mib + 50
            heat = (gpu.temp - m.idle_temp_c) / max(1.0, m.busy_temp_c - m.idle_temp_c)
            gpus.append({
                "index": index,
                "uuid": "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpuctl-demo/{self.pod}/{index}")),
                "name": m.name,
                "pci.bus_id": m.bus_ids[index % len(m.bus_ids)],
                "pstate": "P0" if busy else "P8",
                "temperature.gpu": int(round(gpu.temp)),
                "fan.speed": int(round(30 + 45 * max(0.0, min(1.0, heat)))) if m.has_fan else "[N/A]",
                "utilization.gpu": int(round(gpu.util)),
                "utilization.memory": int(round(gpu.util * 0.43)),
                "memory.used": int(round(gpu.memory)),
                "memory.total": m.memory_mib,
                "power.draw": round(gpu.power, 2),
                "power.limit": m.power_limit_w,
                **json.loads(json.dumps(HEALTHY)),
            })
        state = {"driver_version": DRIVER_VERSION, "cuda_version": CUDA_VERSION, "fail": None, "gpus": gpus}
        if self.fault and gpus:
            _fault(self.fault, gpus[1 if len(gpus) > 1 else 0], state)
        return state

    def _write(self, state: dict) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, self.state_path)


class GpuSimulator:
    """Ticks every registered pod's GPUs a few times a second, on the event loop.

    A pod that is switched off (stopped, preempted) is skipped, and `reset` when it
    comes back, so its cards start cold and idle.
    """

    def __init__(self, interval: float = TICK_S):
        self.interval = interval
        self._pods: dict[str, PodGpus] = {}
        self._paused: set[str] = set()
        self._task: asyncio.Task | None = None

    def add(self, gpus: PodGpus) -> None:
        self._pods[gpus.pod] = gpus
        gpus.tick()

    def pause(self, pod: str) -> None:
        """Stop updating a pod (it is off)."""
        self._paused.add(pod)

    def resume(self, pod: str) -> None:
        """Start updating a pod again, from cold."""
        if pod in self._pods:
            self._pods[pod].reset()
            self._pods[pod].tick()
        self._paused.discard(pod)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gpuctl-demo-gpus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            now = time.time()
            for name, gpus in self._pods.items():
                if name not in self._paused:
                    try:
                        gpus.tick(now)
                    except OSError:
                        pass  # the sandbox is being removed at shutdown
            await asyncio.sleep(self.interval)
