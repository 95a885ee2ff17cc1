"""What one pod's monitor knows about its training sessions.

Four sources meet here: the sessions declared in config, the tmux sessions the agent
lists each tick (including ones started by hand, which gpuctl adopts), the log deltas
the agent streams for each of them, and the tracker files it reads in their workdirs
(`sessions.progress.trackers`). From those the book builds immutable `SessionSnapshot`s with
progress (step, rate, loss, ETA, each figure's source) and the stalled flag.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from sessions.checkpoints import agent_watch
from sessions.checkpoints.listing import Checkpoint
from sessions.config.model import PodConfig, SessionConfig
from sessions.config.policy_model import policies_for
from sessions.progress.tracker import ProgressTracker
from sessions.tmux.logs import default_log_path, log_path_for
from sessions.snapshot import SessionSnapshot, SessionState
from sessions.progress.trackers import TrackerReading, merge, readings_from, tracker_roots, with_config_total

RECENT_BYTES = 256 * 1024
"""Recent log text kept per session for viewers (the TUI's log pane, `logs -f` late
joiners); older text is dropped, so a chatty log cannot grow memory."""

LogListener = Callable[[dict[str, Any]], None]


@dataclass
class FollowedLog:
    """One followed log: where it is, how far we have read, its recent text."""

    path: str
    tracker: ProgressTracker
    offset: int | None = None
    requested: bool = False
    first_seen: bool = False
    recent: deque[str] = field(default_factory=deque)
    recent_bytes: int = 0

    def remember(self, text: str) -> None:
        self.recent.append(text)
        self.recent_bytes += len(text)
        while self.recent_bytes > RECENT_BYTES and len(self.recent) > 1:
            self.recent_bytes -= len(self.recent.popleft())


class SessionBook:
    """Sessions of one pod: config + tmux + logs -> `SessionSnapshot`s."""

    def __init__(self, pod: PodConfig, top: Any = None):
        """`top`: the whole `Config` (for its top-level `policies:`), None without one."""
        self._pod = pod
        self._top = top
        self._configured: dict[str, SessionConfig] = {s.name: s for s in pod.sessions}
        self._tmux: dict[str, dict[str, Any]] = {}
        self._logs: dict[str, FollowedLog] = {}
        self._listeners: dict[str, set[LogListener]] = {}
        self._trackers: dict[str, tuple[TrackerReading, ...]] = {}
        self._trackers_asked: set[str] = set()
        self._checkpoints: dict[str, tuple[Checkpoint, ...]] = {}
        self._checkpoints_asked: set[str] = set()
        self._stall_minutes: dict[str, float | None] = {}
        for session in pod.sessions:
            self._ensure_log(session.name)

    # -- inputs -------------------------------------------------------------------

    def _ensure_log(self, name: str) -> FollowedLog:
        log = self._logs.get(name)
        if log is None:
            config = self._configured.get(name)
            path = log_path_for(config) if config else default_log_path(name)
            log = FollowedLog(path=path, tracker=ProgressTracker(config.progress if config else None))
            self._logs[name] = log
        return log

    def on_tmux(self, entries: list[dict[str, Any]]) -> list[str]:
        """Take the agent's tmux list; returns names of sessions seen for the first time."""
        fresh = [e["name"] for e in entries if e.get("name") and e["name"] not in self._tmux]
        self._tmux = {e["name"]: e for e in entries if e.get("name")}
        for name in self._tmux:
            self._ensure_log(name)
        return fresh

    def on_log(self, message: dict[str, Any], now: float) -> str | None:
        """Take one `log` message from the agent; returns the session name it was for."""
        name = message.get("id")
        if not isinstance(name, str):
            return None
        log = self._logs.get(name)
        if log is None:
            return None
        if message.get("event") in ("truncated", "rotated"):
            # A new file is a new run (or a cleared log): old progress must not linger.
            log.tracker = ProgressTracker(self._configured[name].progress if name in self._configured else None)
        data = message.get("data") or ""
        if data:
            log.tracker.feed(data, now)
            log.remember(data)
        log.offset = message.get("offset", log.offset)
        log.first_seen = True
        for listener in tuple(self._listeners.get(name, ())):
            listener(message)
        return name

    def on_trackers(self, message: dict[str, Any]) -> str | None:
        """Take one `trackers` message from the agent; returns the session name it was for."""
        name = message.get("id")
        if not isinstance(name, str) or name not in self._configured:
            return None
        known = {r.source: r for r in self._trackers.get(name, ())}
        known.update((r.source, r) for r in readings_from(message))
        current = message.get("current")
        if isinstance(current, list):  # the agent sends what changed, and names what stands
            known = {source: known[source] for source in current if source in known}
        self._trackers[name] = tuple(known.values())
        return name

    def on_checkpoints(self, message: dict[str, Any]) -> str | None:
        """Take one `checkpoints` message from the agent; returns the session name when
        it changed what the book knows (a failed listing changes nothing: the periodic
        one says why)."""
        name = message.get("id")
        if not isinstance(name, str) or name not in self._configured:
            return None
        checkpoints = agent_watch.read_report(message)
        if checkpoints is None or checkpoints == self._checkpoints.get(name):
            return None
        self._checkpoints[name] = checkpoints
        return name

    # -- what the monitor must ask the agent ------------------------------------------

    def follow_requests(self, tail_lines: int) -> list[dict[str, Any]]:
        """`follow` commands for logs not yet requested on this agent.

        After a reconnect, a log already read continues from its byte offset, so
        nothing is parsed twice and nothing in between is lost.
        """
        commands = []
        for name, log in self._logs.items():
            if log.requested:
                continue
            log.requested = True
            command: dict[str, Any] = {"cmd": "follow", "id": name, "path": log.path}
            if log.offset is not None:
                command["from_offset"] = log.offset
            else:
                command["tail_lines"] = tail_lines
            commands.append(command)
        return commands + self._tracker_requests() + self._checkpoint_requests()

    def _tracker_requests(self) -> list[dict[str, Any]]:
        """`trackers` commands: each configured session's workdir (or its `trackers:`)."""
        commands = []
        for name, config in self._configured.items():
            roots = tracker_roots(config.workdir, config.trackers)
            if roots and name not in self._trackers_asked:
                self._trackers_asked.add(name)
                commands.append({"cmd": "trackers", "id": name, "roots": roots})
        return commands

    def _checkpoint_requests(self) -> list[dict[str, Any]]:
        """`checkpoints` commands: each configured session's globs, watched by the agent
        (not on a local pod, whose checkpoints are already here)."""
        if self._pod.is_local:
            return []
        commands = []
        for name, config in self._configured.items():
            command = agent_watch.watch_command(config)
            if command is not None and name not in self._checkpoints_asked:
                self._checkpoints_asked.add(name)
                commands.append(command)
        return commands

    def agent_restarted(self) -> None:
        """A new agent knows nothing we asked its predecessor."""
        for log in self._logs.values():
            log.requested = False
        self._trackers_asked.clear()
        self._checkpoints_asked.clear()

    def waiting_for_first_log(self) -> bool:
        """Whether some followed log (or tracker watch) has not answered yet (one-shot
        status waits a bit)."""
        return (any(log.requested and not log.first_seen for log in self._logs.values())
                or any(name not in self._trackers for name in self._trackers_asked))

    def uses_default_log(self, name: str) -> bool:
        """Whether gpuctl must capture this session's pane itself (no `log:` configured)."""
        config = self._configured.get(name)
        return config is None or not config.log

    # -- listeners ----------------------------------------------------------------

    def add_listener(self, name: str, listener: LogListener) -> None:
        self._listeners.setdefault(name, set()).add(listener)

    def remove_listener(self, name: str, listener: LogListener) -> None:
        self._listeners.get(name, set()).discard(listener)

    def recent_text(self, name: str) -> str:
        log = self._logs.get(name)
        return "".join(log.recent) if log else ""

    def log_path(self, name: str) -> str | None:
        log = self._logs.get(name)
        return log.path if log else None

    # -- output -------------------------------------------------------------------

    def view(self, now: float) -> tuple[SessionSnapshot, ...]:
        """Configured sessions first (config order), then adopted ones by name."""
        names = list(self._configured) + sorted(n for n in self._tmux if n not in self._configured)
        return tuple(self._snapshot(name, now) for name in names)

    def _stall_minutes_of(self, name: str, config: SessionConfig | None) -> float | None:
        """The session's stall threshold, merged once: its policy layers are config, fixed
        for the book's life, and the merge ran on every view (each pod's every sample)."""
        if name not in self._stall_minutes:
            self._stall_minutes[name] = policies_for(self._top, self._pod, config).alerts.stall_minutes
        return self._stall_minutes[name]

    def _snapshot(self, name: str, now: float) -> SessionSnapshot:
        tmux = self._tmux.get(name)
        config = self._configured.get(name)
        log = self._logs.get(name)
        progress = log.tracker.progress(now) if log else None  # the ETA counts down between lines
        if progress is not None and not progress.format:
            progress = None
        readings = self._trackers.get(name, ())
        merged = merge(progress, readings, started=tmux.get("created") if tmux else None)
        merged = with_config_total(merged, config.total_steps if config else None)
        progress = merged.progress
        state = SessionState.ABSENT
        if tmux is not None:
            state = SessionState.EXITED if tmux.get("state") == "exited" else SessionState.RUNNING
        # One stall threshold: the alerts policy in force for the session, which the
        # stall alert reads too (`policies_for` folds the old `stall_minutes` key in).
        minutes = self._stall_minutes_of(name, config)
        stuck_since = (log.tracker.stuck_since(now, 60.0 * minutes)
                       if state == SessionState.RUNNING and log and minutes is not None else None)
        return SessionSnapshot(
            name=name,
            state=state,
            exit_status=tmux.get("exit_status") if tmux else None,
            pid=tmux.get("pid") if tmux else None,
            attached=(tmux.get("attached") or 0) if tmux else 0,
            windows=tmux.get("windows") if tmux else None,
            created=tmux.get("created") if tmux else None,
            configured=config is not None,
            log=log.path if log else None,
            progress=progress if progress and progress.format else None,
            stalled=stuck_since is not None,
            stuck_since=stuck_since,
            sources=merged.sources,
            trackers=readings,
            loss_history=merged.loss_history,
            checkpoints=self._checkpoints.get(name),
        )

