"""Route each watch event to the notifiers its pod's or session's `notify:` names.

`notify:` is a policy like any other (top level, pod, session; the innermost list
wins), so the targets are looked up per event. One `Notifier` per distinct list is
kept, so a webhook's connection pool is shared by every pod that uses it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from sessions.events import WatchEvent
from sessions.config.policy_model import effective, policies_for


class NotifyRouter:
    """`await router.send(event)` delivers to the event's targets; never raises."""

    def __init__(self, config: Any, on_error: Callable[[str], None] | None = None):
        self._config = config
        self._on_error = on_error
        self._notifiers: dict[tuple, Any] = {}
        self._sending: set[asyncio.Task] = set()

    def _targets(self, event: WatchEvent) -> tuple:
        try:
            pod = self._config.pod(event.pod)
            session = next((s for s in pod.sessions if s.name == event.session), None)
            return tuple(policies_for(self._config, pod, session).notify)
        except KeyError:  # not a configured pod: the top level's list applies
            return tuple(effective(self._config.policies).notify)

    def submit(self, event: WatchEvent) -> None:
        """Deliver in the background: the caller (the event loop of watch or the TUI)
        never waits for a slow webhook."""
        targets = self._targets(event)
        if not targets:
            return
        notifier = self._notifiers.get(targets)
        if notifier is None:
            from sessions.watch.notify import Notifier

            notifier = self._notifiers[targets] = Notifier(targets, on_error=self._on_error)
        task = asyncio.create_task(notifier.send(event))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let deliveries in flight finish (bounded), then close every notifier."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout)
        for notifier in self._notifiers.values():
            await notifier.aclose()
