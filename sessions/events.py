"""What `gpuctl watch` reports: one event per thing that happened, for people and scripts.

Every event becomes one JSON line on stdout with `--json` (`ts`, `pod`, `session`,
`kind`, `message`, then the kind's own keys), or one readable line otherwise, and is
handed to the notifiers (`sessions.watch.notify`). The TUI shows the same events as toasts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping


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


ALL_KINDS: tuple[str, ...] = tuple(v for k, v in vars(EventKind).items() if k.isupper())


@dataclass(frozen=True)
class WatchEvent:
    """One thing that happened.

    Attributes:
        kind: an `EventKind` value.
        pod: the pod's name.
        message: one plain sentence for people.
        session: the session's name, or None for pod-level events.
        ts: unix time it was noticed (this machine's clock).
        extra: the kind's own keys (see `EventKind`), JSON-serialisable.
    """

    kind: str
    pod: str
    message: str
    session: str | None = None
    ts: float = field(default_factory=time.time)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: the five fixed keys first, then the kind's own."""
        out: dict[str, Any] = {"ts": round(self.ts, 3), "pod": self.pod, "session": self.session,
                               "kind": self.kind, "message": self.message}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def json_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    def readable(self) -> str:
        """`2026-11-22 14:03:07  pod/session  kind  message` for a terminal or a log."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.ts))
        where = self.pod if self.session is None else f"{self.pod}/{self.session}"
        return f"{stamp}  {where}  {self.kind}  {self.message}"
