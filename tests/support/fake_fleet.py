"""Fleet stand-ins for what must not depend on real pods: TUI layout snapshots
(fixed data, so an SVG compares byte for byte) and the UI-cost benchmark (many pods
ticking at 1 Hz, so the cost measured is the UI's, not SSH's).

Everything else in the TUI tests runs against real sshd pods. Both classes offer the
part of `sessions.fleet.facade.Fleet` the TUI reads: `start`, `stop`, `subscribe` (latest
only), `snapshot`, `recent_log`, log listeners, `refresh`, `attach_argv`.
No pytest import: bench/ uses this too.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from sessions.events import EventStream
from sessions.progress.tracker import Progress
from sessions.snapshot import DiskUsage, FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot


def gpus(count: int, name: str, temps: Sequence[float], utils: Sequence[float], mem_total: float = 81920,
         power_limit: float = 400.0) -> tuple[GpuSample, ...]:
    return tuple(
        GpuSample(index=i, name=name, temp_c=temps[i % len(temps)], util_pct=utils[i % len(utils)],
                  mem_used_mib=mem_total * 0.74, mem_total_mib=mem_total, power_w=power_limit * 0.78,
                  power_limit_w=power_limit, uuid=f"GPU-{i:04d}")
        for i in range(count))


def progress(step: int, total: int, rate: float, loss: float) -> Progress:
    return Progress(format="tqdm", step=step, total=total, rate=rate, rate_unit="it/s", loss=loss,
                    eta_s=(total - step) / rate if rate else None)


def demo_snapshot() -> FleetSnapshot:
    """Five pods that show every state the fleet screen draws, all values fixed."""
    disk = DiskUsage("/workspace", 96 * 2**30, 200 * 2**30)
    return FleetSnapshot(tuple(_priced(p) for p in (
        PodSnapshot(
            name="a100-west", host="root@203.0.113.7:22022", state="online", sampled_at=1000.0,
            transport="agent", gpu_status="ok", uptime_s=5 * 3600 + 1260, price_per_hour=1.29, disk=disk,
            load=(7.9, 7.5, 7.1), gpus=gpus(2, "NVIDIA A100-SXM4-80GB", (61, 66), (97, 94)),
            sessions=(
                SessionSnapshot("train", state="running", configured=True, log="/workspace/train.log",
                                progress=progress(1200, 5000, 2.31, 1.2345)),
                SessionSnapshot("eval", state="absent", configured=True, log="~/.gpuctl/logs/eval.log"),
            )),
        PodSnapshot(
            name="h100-box", host="ubuntu@198.51.100.20:22", state="online", sampled_at=1000.0,
            transport="agent", gpu_status="ok", uptime_s=26 * 3600, price_per_hour=23.92,
            disk=DiskUsage("/data", 1700 * 2**30, 2000 * 2**30), load=(30.1, 29.8, 29.0),
            gpus=gpus(8, "NVIDIA H100 80GB HBM3", (71, 74, 88, 70, 69, 73, 72, 70), (99, 98, 97, 99), 81559, 700),
            sessions=(SessionSnapshot("pretrain", state="running", configured=True, stalled=True,
                                      log="/data/run/log.txt", progress=progress(48210, 250000, 0.0, 2.0871)),)),
        PodSnapshot(
            name="l40s-spot", host="root@192.0.2.44:40022", state="reconnecting", sampled_at=990.0,
            error="no telemetry for 10s", transport="agent", gpu_status="ok", uptime_s=3 * 3600,
            price_per_hour=0.89, gpus=gpus(1, "NVIDIA L40S", (55,), (0,), 46068, 350)),
        PodSnapshot(
            name="lambda-1", host="ubuntu@192.0.2.80:22", state="offline", price_per_hour=1.10,
            error="connection refused by 192.0.2.80:22 (is sshd running, is the port right?)",
            error_kind="refused"),
        PodSnapshot(
            name="rtx-4090", host="root@192.0.2.9:2222", state="online", sampled_at=1000.0, transport="agent",
            gpu_status="ok", uptime_s=40 * 60, price_per_hour=0.44, disk=disk,
            gpus=gpus(1, "NVIDIA GeForce RTX 4090", (45,), (3,), 24564, 450),
            sessions=(SessionSnapshot("sweep-7", state="exited", exit_status=1, configured=True,
                                      log="~/sweep/out.log", progress=progress(310, 2000, 4.1, float("nan"))),)),
    )))


def _priced(pod: PodSnapshot) -> PodSnapshot:
    """Spend and projected cost the way the Fleet's provider poller works them out."""
    if pod.price_per_hour is None:
        return pod
    spend = pod.price_per_hour * pod.uptime_s / 3600 if pod.uptime_s is not None and pod.state == "online" else None
    etas = [s.progress.eta_s for s in pod.sessions if s.state == "running" and s.progress and s.progress.eta_s]
    projected = pod.price_per_hour * max(etas) / 3600 if etas else None
    return replace(pod, spend_usd=spend, projected_usd=projected, price_source="config")


DEMO_LOG = "".join(
    [f"step {i}/5000 | loss {1.6 - i / 5000:.4f} | lr 3.0e-04 | tok/s 48,210\n" for i in range(1180, 1196)]
    + ["WARNING: gradient norm 14.2 clipped to 1.0\n",
       "step 1196/5000 | loss nan | lr 3.0e-04 | tok/s 48,100\n",
       "Traceback (most recent call last):\n",
       '  File "/workspace/train.py", line 212, in <module>\n',
       "    loss.backward()\n",
       "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
       "step 1200/5000 | loss 1.2345 | lr 3.0e-04 | tok/s 48,230\n",
       " 24%|██▍       | 1200/5000 [08:40<27:25,  2.31it/s, loss=1.23]"])


class _Latest:
    """An async iterator of the newest snapshot after each change, like the Fleet's."""

    def __init__(self, current: Callable[[], FleetSnapshot]) -> None:
        self._current = current
        self._changed = asyncio.Event()
        self._changed.set()

    def notify(self) -> None:
        self._changed.set()

    def __aiter__(self) -> AsyncIterator[FleetSnapshot]:
        return self

    async def __anext__(self) -> FleetSnapshot:
        await self._changed.wait()
        self._changed.clear()
        return self._current()

    def close(self) -> None:
        pass


class StaticFleet:
    """Publishes one fixed snapshot; logs are fixed text."""

    def __init__(self, snapshot: FleetSnapshot, logs: dict[tuple[str, str], str] | None = None) -> None:
        self._snapshot = snapshot
        self.logs = logs or {}
        self.events = EventStream()  # the one event stream, as a Fleet's: tests publish into it
        self.listeners: dict[tuple[str, str], set[Callable[[dict[str, Any]], None]]] = {}

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    def subscribe(self) -> _Latest:
        return _Latest(self.snapshot)

    def recent_log(self, pod: str, session: str) -> str:
        return self.logs.get((pod, session), "")

    def add_log_listener(self, pod: str, session: str, listener: Callable[[dict[str, Any]], None]) -> None:
        self.listeners.setdefault((pod, session), set()).add(listener)

    def remove_log_listener(self, pod: str, session: str, listener: Callable[[dict[str, Any]], None]) -> None:
        self.listeners.get((pod, session), set()).discard(listener)

    def refresh(self, pod: str | None = None) -> None:
        pass

    def attach_argv(self, pod: str, session: str, *, inside_tmux: bool = False) -> list[str]:
        return ["ssh", "-t", pod, f"tmux attach-session -t ={session}"]


class TickingFleet(StaticFleet):
    """`count` pods, each publishing a new sample once per `interval`, staggered evenly
    so updates arrive as they would from independent pods. Each update moves GPU
    temperature and utilization, the step, rate, loss and ETA: most cells change.

    `sampled_at` of each pod is the `time.perf_counter()` at which that sample was
    published, so a consumer can tell how old the data it draws is.
    """

    def __init__(self, count: int = 50, interval: float = 1.0, seed: int = 7) -> None:
        self.count = count
        self.interval = interval
        self._rng = random.Random(seed)
        base = demo_snapshot().pods[0]
        self._pods = {
            f"pod-{i:03d}": replace(base, name=f"pod-{i:03d}", host=f"root@10.0.{i // 250}.{i % 250}:22")
            for i in range(count)
        }
        self._cached: FleetSnapshot | None = None
        self._subs: list[_Latest] = []
        self._task: asyncio.Task | None = None
        self.published = 0
        super().__init__(self.snapshot())

    def snapshot(self) -> FleetSnapshot:
        if self._cached is None:
            self._cached = FleetSnapshot(tuple(self._pods.values()))
        return self._cached

    def subscribe(self) -> _Latest:
        sub = _Latest(self.snapshot)
        self._subs.append(sub)
        return sub

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        names = list(self._pods)
        step_gap = self.interval / len(names)
        start = time.perf_counter()
        tick = 0
        while True:
            for i, name in enumerate(names):
                due = start + tick * self.interval + i * step_gap
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._publish(name, tick)
            tick += 1

    def _publish(self, name: str, tick: int) -> None:
        pod = self._pods[name]
        rng = self._rng
        temps = [60 + 8 * math.sin(tick / 9 + i) + rng.random() * 3 for i in range(len(pod.gpus))]
        samples = tuple(replace(g, temp_c=round(t), util_pct=float(rng.randint(85, 100)))
                        for g, t in zip(pod.gpus, temps))
        session = pod.sessions[0]
        p = session.progress
        step = (p.step or 0) + rng.randint(1, 4)
        rate = round(2.0 + rng.random(), 2)
        sessions = (replace(session, progress=progress(step, p.total or 5000, rate, round(1.2 + rng.random() / 10, 4))),
                    *pod.sessions[1:])
        self._pods[name] = replace(pod, gpus=samples, sessions=sessions, sampled_at=time.perf_counter(),
                                   uptime_s=(pod.uptime_s or 0) + self.interval)
        self._cached = None
        self.published += 1
        for sub in self._subs:
            sub.notify()
