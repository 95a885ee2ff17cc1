"""The Fleet: every pod's monitor, and one subscription API for all front ends.

The TUI and the headless commands are two views over this object; neither holds
logic the other lacks. Subscribers get the *latest* fleet snapshot when something
changed, never a backlog: a slow renderer skips intermediate states instead of
falling behind (the same idea as Textual's `can_replace` messages).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from sessions.config import Config
from sessions.monitor import PodMonitor
from sessions.snapshot import FleetSnapshot, PodSnapshot


class Subscription:
    """An async iterator of fleet snapshots, each yielded after at least one change."""

    def __init__(self, fleet: "Fleet"):
        self._fleet = fleet
        self._changed = asyncio.Event()
        self._changed.set()  # the first iteration yields the current state at once

    def _notify(self) -> None:
        self._changed.set()

    def __aiter__(self) -> AsyncIterator[FleetSnapshot]:
        return self

    async def __anext__(self) -> FleetSnapshot:
        await self._changed.wait()
        self._changed.clear()
        return self._fleet.snapshot()

    def close(self) -> None:
        """Stop receiving updates."""
        self._fleet._subscriptions.discard(self)


class Fleet:
    """Follows every pod of a config concurrently.

    Use as `async with Fleet(config) as fleet:`; the monitors stop on exit.
    """

    def __init__(self, config: Config, pod_names: list[str] | None = None):
        self.config = config
        selected = [p for p in config.pods if pod_names is None or p.name in pod_names]
        self._monitors = {p.name: PodMonitor(p, config.defaults, self._on_update) for p in selected}
        self._pods: dict[str, PodSnapshot] = {name: m.snapshot for name, m in self._monitors.items()}
        self._cached: FleetSnapshot | None = None
        self._subscriptions: set[Subscription] = set()
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Fleet":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Start one monitor task per pod."""
        for name, monitor in self._monitors.items():
            self._tasks.append(asyncio.create_task(monitor.run(), name=f"gpuctl-pod-{name}"))

    async def stop(self) -> None:
        """Cancel every monitor and wait for their connections to close."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _on_update(self, snapshot: PodSnapshot) -> None:
        self._pods[snapshot.name] = snapshot
        self._cached = None
        for sub in self._subscriptions:
            sub._notify()

    def snapshot(self) -> FleetSnapshot:
        """The newest snapshot of every pod, in config order."""
        if self._cached is None:
            self._cached = FleetSnapshot(pods=tuple(self._pods.values()))
        return self._cached

    def subscribe(self) -> Subscription:
        """Updates as an async iterator; call `close()` on it when done."""
        sub = Subscription(self)
        self._subscriptions.add(sub)
        return sub

    async def wait_settled(self, timeout: float | None = None) -> FleetSnapshot:
        """Wait until every pod has answered or failed its first attempt.

        Each pod's first attempt is bounded by its own connect timeout, so a dead pod
        never delays the others beyond that; `timeout` is an overall safety net.
        """
        waits = [asyncio.create_task(m.settled.wait()) for m in self._monitors.values()]
        if waits:
            done, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()
        return self.snapshot()

    def set_interval(self, seconds: float, pod_name: str | None = None) -> None:
        """Change the telemetry interval of one pod, or all."""
        for name, monitor in self._monitors.items():
            if pod_name in (None, name):
                monitor.set_interval(seconds)
