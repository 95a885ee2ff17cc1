"""One stream of typed domain events: what happened to a pod, a session or a checkpoint.

Producers publish each event once to the Fleet's `EventStream` (`Fleet.events`): the
Watcher (connection changes, preemption, session exits, alerts, checkpoints found,
downloaded and pruned, auto-resumes, budget actions) and the Fleet's own operations,
where each is performed whoever asked (a download, launch, kill, resume, stop or
teardown: `sessions.fleet.news`). Consumers subscribe, and none derives its own news from
snapshots: `gpuctl watch` prints each event as one line (JSON with `--json`: `ts`,
`pod`, `session`, `kind`, `message`, then the kind's own keys; readable otherwise),
the notifiers (`sessions.watch.notify`) deliver them, the TUI toasts them
(`tui.event_toasts`) and its checkpoint pane redraws from them. So a download shown
as verified, or a copy pruned, is told the same everywhere at the same moment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


class EventKind:
    """The `kind` values, as scripts match them."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    SESSION_EXITED = "session_exited"      # extra: exit_status, last_lines
    PREEMPTED = "preempted"
    RESUMED = "resumed"                    # extra: checkpoint, attempt, max_restarts, command
    CHECKPOINT_FOUND = "checkpoint_found"  # extra: checkpoint, step, size
    CHECKPOINT_DOWNLOADED = "checkpoint_downloaded"  # extra: checkpoint, local_path, sha256, size
    ALERT = "alert"                        # extra: alert (its name), value, threshold
    ALERT_CLEARED = "alert_cleared"        # extra: alert
    BUDGET_ACTION = "budget_action"        # extra: action, spend_usd, max_usd, result
    CHECKPOINT_PRUNED = "checkpoint_pruned"  # extra: checkpoint, local_path (keep_local deleted the copy)
    # What a pod operation did, told by the Fleet that performed it (sessions/fleet/news.py),
    # whichever front end asked; a person's resume is `resumed` with attempt/max_restarts None.
    SESSION_LAUNCHED = "session_launched"  # extra: command, log_path, replaced
    SESSION_KILLED = "session_killed"      # extra: existed, was_running, exit_status
    PROVIDER_ACTION = "provider_action"    # extra: action (stop|teardown), outcome, state, kept, gone


POD_STATE_KINDS = (EventKind.CONNECTED, EventKind.DISCONNECTED, EventKind.PREEMPTED)
"""Kinds that are a pod's state change: their JSON carries the new state as `state`."""

ALL_KINDS: tuple[str, ...] = tuple(v for k, v in vars(EventKind).items() if k.isupper())


@dataclass(frozen=True)
class WatchEvent:
    """One thing that happened (the stream's one event type; the name is watch's, kept).

    Attributes:
        kind: an `EventKind` value.
        pod: the pod's name.
        message: one plain sentence for people.
        session: the session's name, or None for pod-level events.
        ts: unix time it was noticed (this machine's clock).
        extra: the kind's own keys (see `EventKind`), JSON-serialisable.
        before, after: the state before and after the change, where the kind is one:
            pod states for `connected`/`disconnected`/`preempted`, session states for
            `session_exited`. For consumers in this process (a toast says "restored"
            only after an outage, "exited" only for an exit, not a kill); kept out of
            the JSON line, so scripts see the keys they always saw, except that a pod
            state change adds `after` as `"state"` (last, a key of its own), the
            same word `gpuctl status` shows.
    """

    kind: str
    pod: str
    message: str
    session: str | None = None
    ts: float = field(default_factory=time.time)
    extra: Mapping[str, Any] = field(default_factory=dict)
    before: str | None = None
    after: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: the five fixed keys first, then the kind's own."""
        out: dict[str, Any] = {"ts": round(self.ts, 3), "pod": self.pod, "session": self.session,
                               "kind": self.kind, "message": self.message}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        if self.kind in POD_STATE_KINDS and self.after is not None:
            out.setdefault("state", self.after)  # the lifecycle's word, as status says it
        return out

    def json_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    def readable(self) -> str:
        """`2026-11-22 14:03:07  pod/session  kind  message` for a terminal or a log."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.ts))
        where = self.pod if self.session is None else f"{self.pod}/{self.session}"
        return f"{stamp}  {where}  {self.kind}  {self.message}"


Consumer = Callable[[WatchEvent], None]


class EventStream:
    """Publish once, every subscriber told in order, on the caller's loop.

    Delivery is synchronous and cheap by contract: a consumer that has slow work
    (a webhook, a redraw) hands it off (`NotifyRouter.submit`, a Textual message).
    One consumer that raises does not keep the event from the others; the first
    error is raised to the producer after everyone was told, as a failing `emit`
    always was (a closed stdout ends `gpuctl watch`).
    """

    def __init__(self) -> None:
        self._consumers: list[Consumer] = []

    def subscribe(self, consumer: Consumer) -> Callable[[], None]:
        """Tell `consumer` every event from now on; returns the call that stops it."""
        self._consumers.append(consumer)

        def unsubscribe() -> None:
            if consumer in self._consumers:
                self._consumers.remove(consumer)

        return unsubscribe

    def publish(self, event: WatchEvent) -> None:
        failed: BaseException | None = None
        for consumer in list(self._consumers):
            try:
                consumer(event)
            except Exception as exc:  # noqa: BLE001 - raised below, once all were told
                failed = failed or exc
        if failed is not None:
            raise failed
