"""What the parts of `gpuctl watch` share: the fleet, the state file, the event sink.

The watcher is split by job (`watch` notices changes, `watch_resume` relaunches,
`watch_downloads` fetches checkpoints, `watch_budget` enforces the budget); this is
the one object they all hold, so none of them reaches into another.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sessions.events import WatchEvent
from sessions.config.policy_model import EffectivePolicies, policies_for
from sessions.snapshot import PodSnapshot, PodState
from sessions.watch.state import WatchState


@dataclass
class WatchContext:
    """Shared by the watcher's parts.

    Attributes:
        fleet: the running `sessions.Fleet`.
        state: the persisted state (`save()` after changing it).
        emit: publishes each event, in order, to the Fleet's stream (`sessions.events`),
            whose subscribers print, notify, toast and redraw.
        start_dir: where relative download dirs are rooted (where watch started).
        actions: pod name -> whether watch may act on it (download, resume, budget
            actions); alerts and events flow regardless. The TUI toggles it per pod.
        clock: unix time (a parameter so tests can read it, not fake it).
    """

    fleet: Any
    state: WatchState
    emit: Callable[[WatchEvent], None]
    start_dir: Path
    actions: dict[str, bool] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _online: dict[str, asyncio.Event] = field(default_factory=dict)
    _pods: dict[str, PodSnapshot] = field(default_factory=dict)
    _policies: dict[tuple[str, str | None], EffectivePolicies] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.fleet.config

    def policies(self, pod_name: str, session_name: str | None = None) -> EffectivePolicies:
        """The policies in force, merged once per (pod, session): the config does not
        change while watch runs, and this is asked on every snapshot."""
        key = (pod_name, session_name)
        merged = self._policies.get(key)
        if merged is None:
            merged = self._policies[key] = policies_for(self.config, self.config.pod(pod_name), session_name)
        return merged

    def may_act(self, pod_name: str) -> bool:
        return self.actions.get(pod_name, True)

    def lock(self, pod_name: str, what: str = "action") -> asyncio.Lock:
        """One action at a time per pod and kind: `action` (resume, stop, teardown)
        and `download` (two downloads of one checkpoint would share its `.part`)."""
        return self._locks.setdefault(f"{pod_name}\0{what}", asyncio.Lock())

    def pod(self, pod_name: str) -> PodSnapshot | None:
        """The newest snapshot of the pod watch has seen."""
        return self._pods.get(pod_name)

    def set_pod(self, snapshot: PodSnapshot) -> None:
        self._pods[snapshot.name] = snapshot
        online = self._online.setdefault(snapshot.name, asyncio.Event())
        if snapshot.state == PodState.ONLINE:
            online.set()
        else:
            online.clear()

    async def wait_online(self, pod_name: str) -> None:
        """Return once the pod is online (at once if it is)."""
        await self._online.setdefault(pod_name, asyncio.Event()).wait()

    def say(self, kind: str, pod: str, message: str, session: str | None = None, *,
            before: str | None = None, after: str | None = None, **extra: Any) -> None:
        """Emit one event now (`before`/`after`: the states a change went between)."""
        self.emit(WatchEvent(kind=kind, pod=pod, message=message, session=session,
                             ts=self.clock(), extra=extra, before=before, after=after))
