"""The events a pod operation makes: one wording and one set of keys, whoever asked.

A launch, a kill, a resume, a stop or a teardown is performed in one place, the Fleet
(`sessions.fleet.facade`, `sessions.fleet.operations`), so it is told from there, on
the fleet's one stream (`sessions.events`): the TUI's toast, the notify targets and a
`gpuctl watch` line follow from the same event, and no front end words the result on
its own. A download's events are `sessions.checkpoints.news`'s, auto-download's too.

Builders only: they read the operation's result and never act.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sessions.events import EventKind, WatchEvent

if TYPE_CHECKING:
    from sessions.checkpoints.resume import ResumeResult
    from sessions.providers.ops import ActionResult
    from sessions.tmux.control import KillResult, LaunchResult


def launched_event(pod: str, result: LaunchResult, command: str | None) -> WatchEvent:
    """`session_launched`: the session's `command:` now runs in tmux."""
    replaced = " (replacing its exited run)" if result.replaced else ""
    return WatchEvent(EventKind.SESSION_LAUNCHED, pod, f"launched session {result.name!r}{replaced}; "
                      f"log: {result.log_path}", result.name, ts=time.time(),
                      extra={"command": command, "log_path": result.log_path, "replaced": result.replaced})


def killed_event(pod: str, result: KillResult) -> WatchEvent:
    """`session_killed`: a kill gpuctl was asked for (or found nothing to kill)."""
    said = f"killed session {result.name!r}" if result.existed else f"session {result.name!r} had already ended"
    return WatchEvent(EventKind.SESSION_KILLED, pod, said, result.name, ts=time.time(),
                      extra={"existed": result.existed, "was_running": result.was_running,
                             "exit_status": result.exit_status})


def resumed_event(pod: str, session: str, result: ResumeResult) -> WatchEvent:
    """`resumed`, asked for (not auto-resume's): `attempt` and `max_restarts` are None,
    the brakes count only automatic restarts."""
    c = result.checkpoint
    killed = " (the running session was killed first)" if result.killed_running else ""
    return WatchEvent(EventKind.RESUMED, pod, f"resumed from {c.name}{killed}", session, ts=time.time(),
                      extra={"checkpoint": c.path, "step": c.step, "attempt": None, "max_restarts": None,
                             "command": result.command, "restarted": result.killed_running})


def provider_event(result: ActionResult) -> WatchEvent:
    """`provider_action`: how a stop or teardown through the pod's provider ended."""
    return WatchEvent(EventKind.PROVIDER_ACTION, result.pod, result.message, ts=time.time(),
                      extra={"action": result.action, "outcome": result.outcome, "state": result.state,
                             "kept": result.kept, "gone": result.gone})
