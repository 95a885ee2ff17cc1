"""The last few minutes of each GPU's utilization and temperature, and each session's
loss, kept from the snapshots the app receives: what the pod screen's sparklines draw.

Fed by the app for every pod, so the pod screen opens with history already there.
Bounded deques: memory stays flat however long gpuctl runs. No Textual, no I/O.
"""

from __future__ import annotations

from collections import deque

from sessions.snapshot import FleetSnapshot

SAMPLES = 300
"""Points kept per series: five minutes at the default 1 s interval."""


class History:
    """Series keyed by pod; a pod's GPU series grow only when its telemetry is new."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples
        self._sampled_at: dict[str, float | None] = {}
        self._gpu: dict[tuple[str, int, str], deque[float]] = {}
        self._loss: dict[tuple[str, str], deque[float]] = {}
        self._step: dict[tuple[str, str], int | None] = {}

    def feed(self, fleet: FleetSnapshot) -> None:
        """Take a fleet snapshot; cheap when little changed (called for every one)."""
        for pod in fleet.pods:
            if pod.sampled_at is not None and self._sampled_at.get(pod.name) != pod.sampled_at:
                self._sampled_at[pod.name] = pod.sampled_at
                for i, gpu in enumerate(pod.gpus):
                    index = gpu.index if gpu.index is not None else i
                    self._push(self._gpu, (pod.name, index, "util"), gpu.util_pct)
                    self._push(self._gpu, (pod.name, index, "temp"), gpu.temp_c)
            for s in pod.sessions:
                p = s.progress
                if p is None or p.step is None or p.loss is None:
                    continue
                key = (pod.name, s.name)
                last = self._step.get(key)
                if last != p.step:
                    if last is not None and p.step < last:  # a new run: its own curve
                        self._loss.pop(key, None)
                    self._step[key] = p.step
                    self._push(self._loss, key, p.loss)

    def _push(self, table: dict, key: tuple, value: float | None) -> None:
        if value is None or value != value:  # unknown, or NaN: nothing to draw
            return
        series = table.get(key)
        if series is None:
            series = table[key] = deque(maxlen=self.samples)
        series.append(float(value))

    def gpu(self, pod: str, index: int, metric: str = "util") -> list[float]:
        """A GPU's `util` (percent) or `temp` (°C) series, oldest first."""
        return list(self._gpu.get((pod, index, metric), ()))

    def loss(self, pod: str, session: str) -> list[float]:
        """A session's loss at each new step, oldest first."""
        return list(self._loss.get((pod, session), ()))
