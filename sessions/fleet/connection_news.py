"""A pod's state changes as events, told by the Fleet for every front end.

The Fleet hands each snapshot it settles (`Fleet._on_update`: the monitor's
connection, the provider's state and gpuctl's own stops, decided once by
`sessions.providers.lifecycle`) to `ConnectionNews`, which turns a change of
`PodState` into one event on the fleet's stream: `connected`, `disconnected` (a lost
link, or a pod stopped or terminated, said in the lifecycle's words even after the link
had dropped) or `preempted`. So every Fleet that follows pods tells them, whether a
Watcher runs beside it or not (the TUI, `gpuctl watch`, a library caller), and each
transition is told once: the Fleet sees every snapshot, where a subscriber is handed
only the latest (a drop and return within one redraw was lost that way).

Before, the Watcher derived these from the snapshots it was handed; it now only
listens to them (`interrupted` marks a pod whose runs may need resuming).
"""

from __future__ import annotations

import time
from typing import Callable

from sessions.events import EventKind, WatchEvent
from sessions.snapshot import PodSnapshot, PodState

_DOWN = (PodState.RECONNECTING, PodState.OFFLINE, PodState.PREEMPTED, PodState.STOPPED, PodState.TERMINATED)
_ENDED = (PodState.STOPPED, PodState.TERMINATED)
"""Told even after the link had already dropped: the provider (or gpuctl) says why."""


def interrupted(old: str | None, new: str | None) -> bool:
    """Whether going from pod state `old` to `new` interrupted what ran there: a
    preemption, or an online pod going down. The Watcher's "came back" (sessions gone
    after it may be resumed) and the "back after an outage" wording both read it."""
    return new != old and (new == PodState.PREEMPTED or (old == PodState.ONLINE and new in _DOWN))


class ConnectionNews:
    """One pod state change -> at most one event, per pod, in the order seen."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._interrupted: set[str] = set()  # pods down since an interruption, until back online

    def change(self, before: PodSnapshot | None, pod: PodSnapshot, acting: str | None = None) -> WatchEvent | None:
        """The event for `before` -> `pod` (None: no state change, or none worth telling:
        a pod already down going down another way). `acting`: the stop or teardown
        gpuctl has in flight on the pod ("stop", "teardown"; `Fleet.stop_instance`):
        its link dropping then is that action, told as such (`"action"` key), never as
        a lost connection to retry."""
        old = before.state if before else PodState.CONNECTING
        new = pod.state
        if new == old:
            return None
        if interrupted(old, new):
            self._interrupted.add(pod.name)
        if new == PodState.ONLINE:
            back = " (back after an outage)" if pod.name in self._interrupted else ""
            self._interrupted.discard(pod.name)
            return self._event(EventKind.CONNECTED, pod, f"connected over {pod.transport or 'ssh'}{back}", old,
                               transport=pod.transport)
        if new == PodState.PREEMPTED:
            return self._event(EventKind.PREEMPTED, pod, pod.error or "the provider took the instance back", old,
                               provider_state=pod.provider_state)
        if new in _ENDED:
            return self._event(EventKind.DISCONNECTED, pod, pod.error or new, old,
                               error_kind=pod.error_kind, provider_state=pod.provider_state)
        if new in _DOWN and old not in _DOWN:
            if acting is not None:
                doing = "stopping" if acting == "stop" else "tearing down"
                return self._event(EventKind.DISCONNECTED, pod, f"{doing}: gpuctl is {doing} the instance", old,
                                   error_kind=pod.error_kind, action=acting)
            return self._event(EventKind.DISCONNECTED, pod, pod.error or "connection lost", old,
                               error_kind=pod.error_kind)
        return None

    def _event(self, kind: str, pod: PodSnapshot, message: str, old: str, **extra: object) -> WatchEvent:
        return WatchEvent(kind, pod.name, message, ts=self._clock(), extra=extra, before=old, after=pod.state)
