"""Connects one session's followed log in the Fleet to a `LogView`.

The Fleet calls listeners from its monitor task for every log delta; posting a
Textual message per delta would flood the queue during a log burst. The feed buffers
the text and posts one `LogArrived` (which replaces an unhandled one); the view drains
everything that came meanwhile in one go.
"""

from __future__ import annotations

from typing import Any

from textual.message_pump import MessagePump

from tui.messages import LogArrived


class LogFeed:
    """Follow `session` on `pod` into `target` (a LogView) between `start` and `stop`."""

    def __init__(self, fleet: Any, pod: str, session: str, target: MessagePump) -> None:
        self.fleet = fleet
        self.pod = pod
        self.session = session
        self._target = target
        self._pending: list[tuple[str, str]] = []
        self._listening = False

    def start(self) -> str:
        """Begin listening; returns the recent text to show first. No delta can fall
        between the two: both happen before the monitor task runs again."""
        recent = self.fleet.recent_log(self.pod, self.session)
        self.fleet.add_log_listener(self.pod, self.session, self._on_log)
        self._listening = True
        return recent

    def stop(self) -> None:
        if self._listening:
            self.fleet.remove_log_listener(self.pod, self.session, self._on_log)
            self._listening = False
        self._pending.clear()

    def drain(self) -> list[tuple[str, str]]:
        """("text", data) and ("reset", why) items in arrival order."""
        items, self._pending = self._pending, []
        return items

    def _on_log(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event in ("truncated", "rotated"):
            self._pending.append(("reset", f"log {event}: a new file from here"))
        data = message.get("data")
        if data:
            self._pending.append(("text", data))
        if self._pending:
            self._target.post_message(LogArrived())
