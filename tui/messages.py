"""Messages that carry data up from workers to screens ("attributes down, messages up")."""

from __future__ import annotations

from textual.message import Message

from sessions.events import WatchEvent
from sessions.snapshot import FleetSnapshot


class FleetUpdated(Message):
    """A new fleet snapshot. Replaces an unhandled older one in a queue: a busy UI
    shows the latest state, never a backlog (toolong's `can_replace`)."""

    def __init__(self, snapshot: FleetSnapshot, received: float) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.received = received
        """`time.perf_counter()` when the worker got it from the Fleet (for bench/)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetUpdated)


class LogArrived(Message):
    """New text for a followed log is waiting in the sender's buffer. Posted once per
    batch, not per chunk: the handler drains everything that arrived meanwhile."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogArrived)


class DownloadsChanged(Message):
    """The app's table of checkpoint downloads changed (progress, done, failed)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DownloadsChanged)


class EventArrived(Message):
    """A domain event from the fleet's one stream (`sessions.events`): the app toasts
    it and hands it to the screens (the checkpoint pane). Never replaced: every event
    is news once."""

    def __init__(self, event: WatchEvent) -> None:
        super().__init__()
        self.event = event
