"""What watch last said about why a session stopped or slowed (`stall_diagnosis` alerts,
`sessions.health.stall`), kept for the pod screen's session rows (pure, no Textual).

The diagnosis comes once per stall as an event; the rows are drawn on every snapshot, so
the app keeps the newest verdict per session here and a row shows it in place of
`stalled` while the session is still stalled (`hung`, `idle`, `dead`), or beside a
running session for `SLOW_SHOWN_S` after it was found `slow`.
"""

from __future__ import annotations

import time

from sessions.events import EventKind, WatchEvent

SLOW_SHOWN_S = 600.0
STALL_KINDS = ("hung", "idle", "dead")


class StallNotes:
    """(pod, session) -> (kind, when told); fed every event, asked per row."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, str], tuple[str, float]] = {}

    def take(self, event: WatchEvent, now: float | None = None) -> None:
        if event.kind != EventKind.ALERT or event.extra.get("alert") != "stall_diagnosis" or not event.session:
            return
        kind = event.extra.get("value")
        if isinstance(kind, str):
            self._notes[(event.pod, event.session)] = (kind, time.time() if now is None else now)

    def word(self, pod: str, session: str, stalled: bool, now: float | None = None) -> str | None:
        """The word for the row's state: the stall kind while stalled, `slow` for a while."""
        note = self._notes.get((pod, session))
        if note is None:
            return None
        kind, when = note
        if stalled:
            return kind if kind in STALL_KINDS else None
        if kind == "slow" and (time.time() if now is None else now) - when < SLOW_SHOWN_S:
            return kind
        return None
