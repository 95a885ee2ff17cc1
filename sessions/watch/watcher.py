"""`gpuctl watch`: follow the fleet unattended, report what happens, act by policy.

The Watcher subscribes to the Fleet and compares each pod's sessions with the state
file (so an exit that happened while watch itself was down is still noticed). What
changed becomes events: `session_exited` (with the exit status and the last log
lines), alerts; the parts it drives add `resumed`, `checkpoint_found`,
`checkpoint_downloaded` and `budget_action`. A pod's own state changes (`connected`,
`disconnected`, `preempted`) are the Fleet's news (`sessions.fleet.connection_news`),
which the Watcher hears to know a pod came back after an interruption.

Every event goes to the Fleet's one stream (`Fleet.events`, `sessions.events`), never
to a consumer directly: the headless command subscribes its printer and the notifiers,
the TUI (which runs the same Watcher, with actions switched per pod by `set_actions`)
its toasts, notifiers and checkpoint pane.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from sessions.events import EventKind, EventStream, WatchEvent
from sessions.fleet.connection_news import interrupted
from sessions.snapshot import PodSnapshot, PodState, SessionState
from sessions.watch.budget import BudgetGuard
from sessions.watch.context import WatchContext
from sessions.watch.downloads import AutoDownload
from sessions.watch.resume import AutoResume
from sessions.watch.state import WatchState, session_key

LAST_LINES = 15
"""Log lines carried by a `session_exited` event: enough to see the traceback's end."""

ALERT_STATE_SAVE_S = 60.0


def last_lines(text: str, count: int = LAST_LINES) -> list[str]:
    """The last `count` non-empty lines of a log, `\\r` progress redraws collapsed."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in lines if line][-count:]


class Watcher:
    """Turns fleet snapshots into events and policy actions.

    Use `await watcher.run()` (until cancelled) next to a started Fleet, then
    `await watcher.aclose()`.
    """

    def __init__(self, fleet: Any, state: WatchState, emit: Callable[[WatchEvent], None] | None = None, *,
                 start_dir: Path | None = None, clock: Callable[[], float] = time.time):
        """`emit`, when given, is subscribed to the stream until `aclose` (a fleet
        without a stream of its own, as in some tests, gets a private one)."""
        from sessions.watch.alerts import AlertTracker

        stream = getattr(fleet, "events", None)
        self.events: EventStream = stream if isinstance(stream, EventStream) else EventStream()
        self._unsubscribe = self.events.subscribe(emit) if emit is not None else None
        self.ctx = WatchContext(fleet=fleet, state=state, emit=self.events.publish,
                                start_dir=Path(start_dir or Path.cwd()), clock=clock)
        self.resume = AutoResume(self.ctx)
        self.downloads = AutoDownload(self.ctx)
        self.budget = BudgetGuard(self.ctx, self.downloads)
        self.alerts = AlertTracker()
        if state.alerts:
            self.alerts.load_state(state.alerts)
        self._interrupted: dict[str, str] = {}
        """Pods that went down since their sessions last ran -> what it was, in words
        ("a preemption", "an outage"), for the exit and the auto-resume's reason."""
        self._killed: dict[tuple[str, str], int | None] = {}
        """(pod, session) -> the pane pid a Fleet kill ended: its `session_killed` told it,
        so the session's end is not told again as `session_exited`."""
        self._unheard = self.events.subscribe(self._hear)
        self._alerts_saved = 0.0

    def set_actions(self, pod: str, enabled: bool) -> None:
        """Allow or forbid watch's actions on a pod (events and alerts continue)."""
        self.ctx.actions[pod] = enabled

    def actions_enabled(self, pod: str) -> bool:
        return self.ctx.may_act(pod)

    async def run(self) -> None:
        """Follow the fleet until cancelled."""
        subscription = self.ctx.fleet.subscribe()
        try:
            async for fleet_snapshot in subscription:
                for pod in fleet_snapshot.pods:
                    self.observe(pod)
        finally:
            subscription.close()

    def observe(self, pod: PodSnapshot) -> None:
        """React to one pod's newest snapshot."""
        before = self.ctx.pod(pod.name)
        if before is pod:
            return
        self.ctx.set_pod(pod)
        if pod.state == PodState.ONLINE:
            self._sessions(pod)
            self.downloads.ensure(pod.name)
            self.downloads.offer(before, pod)
        self._alerts(pod)
        self.budget.check(pod.name, pod.spend_usd)

    # -- sessions ------------------------------------------------------------------

    def _sessions(self, pod: PodSnapshot) -> None:
        state = self.ctx.state
        came_back = self._interrupted.pop(pod.name, None)
        changed = False
        for s in pod.sessions:
            key = session_key(pod.name, s.name)
            stale = self.resume.stale.get((pod.name, s.name))
            if stale is not None:
                if (s.created, s.pid) == stale:
                    continue  # still the pane a restart replaced
                del self.resume.stale[(pod.name, s.name)]
            last = state.sessions.get(key)
            if s.state == SessionState.RUNNING:
                self.resume.note_progress(pod.name, s)
                self.resume.consider_hang(pod.name, s)
            killed = (pod.name, s.name) in self._killed
            if killed and (s.state != SessionState.RUNNING or s.pid != self._killed[(pod.name, s.name)]):
                del self._killed[(pod.name, s.name)]  # seen ended, or already a new pane
            if last == SessionState.RUNNING and s.state != SessionState.RUNNING:
                if killed:
                    self.downloads.poke(pod.name, s.name)  # told by the kill; its last checkpoint may be new
                else:
                    self._exited(pod, s, came_back)
            if last != s.state:
                state.sessions[key] = s.state
                changed = True
        if changed:
            state.save()

    def _exited(self, pod: PodSnapshot, s: Any, came_back: str | None) -> None:
        lines = last_lines(self.ctx.fleet.recent_log(pod.name, s.name)) if s.state == SessionState.EXITED else []
        if s.state == SessionState.EXITED:
            status = "unknown status" if s.exit_status is None else f"status {s.exit_status}"
            message = f"session exited with {status}"
        elif came_back:
            message = "session is gone: the pod restarted while it ran"
        else:
            message = "tmux session ended (killed by hand?)"
        step = s.progress.step if s.progress else None
        self.ctx.say(EventKind.SESSION_EXITED, pod.name, message, s.name, before=SessionState.RUNNING,
                     after=s.state, exit_status=s.exit_status, last_lines=lines, step=step)
        self.downloads.poke(pod.name, s.name)
        if s.state == SessionState.EXITED and s.exit_status not in (0, None):
            self.resume.consider(pod.name, s.name, f"exit status {s.exit_status}")
        elif came_back and s.state != SessionState.RUNNING:
            self.resume.consider(pod.name, s.name, f"the pod came back from {came_back}")

    def _hear(self, event: WatchEvent) -> None:
        """What the Fleet told that the Watcher acts on: a pod interrupted (its
        `disconnected` or `preempted`, `sessions.fleet.connection_news`), whose sessions
        found gone once it is back may be resumed; a kill the Fleet performed
        (`session_killed`, `sessions.fleet.news`), whose end is that event's news, not an
        exit to tell or to resume."""
        if event.kind in (EventKind.DISCONNECTED, EventKind.PREEMPTED) and interrupted(event.before, event.after):
            preempted = event.kind == EventKind.PREEMPTED or event.after == PodState.PREEMPTED
            if preempted or event.pod not in self._interrupted:  # a preemption is the news, once told
                self._interrupted[event.pod] = "a preemption" if preempted else "an outage"
        elif event.kind == EventKind.SESSION_KILLED and event.session is not None and event.extra.get("existed"):
            snap = self.ctx.pod(event.pod)
            pane = next((s for s in snap.sessions if s.name == event.session), None) if snap else None
            self._killed[(event.pod, event.session)] = pane.pid if pane is not None else None

    # -- alerts --------------------------------------------------------------------

    def _alerts(self, pod: PodSnapshot) -> None:
        ctx = self.ctx
        pod_alerts = ctx.policies(pod.name).alerts
        cfg = ctx.config.pod(pod.name)
        configured = {s.name for s in cfg.sessions}

        def session_alerts(name: str):
            return ctx.policies(pod.name, name if name in configured else None).alerts

        now = ctx.clock()
        events = self.alerts.update(pod, pod_alerts, session_alerts, now)
        for event in events:
            ctx.emit(event)
        # The tracker's clocks (idle since, stalled since) must survive a restart too,
        # so they are saved now and then even when nothing was raised.
        if events or now - self._alerts_saved > ALERT_STATE_SAVE_S:
            ctx.state.alerts = self.alerts.to_state()
            ctx.state.save()
            self._alerts_saved = now

    async def aclose(self) -> None:
        """Stop every task watch started (downloads in flight keep their `.part`)."""
        await self.resume.aclose()
        await self.downloads.aclose()
        await self.budget.aclose()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._unheard()

