"""One pod in detail: GPUs with history, sessions with progress and loss, the selected
session's live log, and its checkpoints. Up/down select the session.

The checkpoint pane lists the pod every `CHECKPOINT_REFRESH_S`, but changes with the
fleet's events at once (`take_event`): a checkpoint downloaded shows as verified with
its toast, a local copy `keep_local` pruned stops showing as downloaded the moment it
is deleted, a new checkpoint is listed when watch finds it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.widgets import Static

from sessions.events import EventKind, WatchEvent
from sessions.snapshot import FleetSnapshot, PodSnapshot
from themes.palettes import POD_STYLESHEET
from tui import fleet_rows, humanize
from tui.actions import Target, error_text
from tui.bindings import HELP, POD_ACTIONS, POD_SCREEN
from tui.downloads import RUNNING, checkpoint_lines
from tui.screens.opaque import OpaqueScreen
from tui.screens.pod_actions import PodActionsMixin
from tui.status_table import billed_price
from tui.widgets.checkpoint_list import CheckpointList
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.log_pane import LogKeys, LogPane
from tui.widgets.sessions_panel import SessionsPanel
from tui.widgets.text import set_text


SPEND_FROM_WORDS = {"provider": "from provider start", "uptime": "from boot",
                    "first_seen": "since gpuctl first saw it"}
"""`PodSnapshot.spend_from` in words, for the pod header."""


def pod_header(pod: PodSnapshot, paused: bool = False, now: float | None = None) -> str:
    """'a100-west · online · $1.29/h · spent $2.10 over 1h38m (from provider start) · $0.59 to
    finish · disk 23G/252G · load 7.90 · root@203.0.113.7:22', most important first: a
    narrow terminal cuts the end. A pod that is not online says why right after its state
    (the lifecycle's reason: "stopped (runpod says the instance is stopped)"), then how old
    its values are; its price only while it is billed (`status_table.billed_price`).

    The instance's run time is the spend's ("over 1h38m", from the same clock); the
    machine's own uptime is said only where no run time is known, as "host up": in a
    container (RunPod, Vast, the demo) it is the host's boot, the same in every pod."""
    now = time.time() if now is None else now
    age = fleet_rows.age_text(pod, now)
    why = (pod.error or "").removeprefix(f"{pod.state}: ") if pod.state != "online" else ""
    parts = [pod.name, f"{pod.state} ({why})" if why else pod.state] + ([f"values from {age}"] if age else []) + (
        [fleet_rows.PAUSED_WORDS] if paused else [])
    price = billed_price(pod)
    if price is not None:
        parts.append(f"${price:.2f}/h")
    cost = fleet_rows.spent(pod)
    if cost is not None:
        # which clock the spend counts from and over how long, so "up 59m" (the machine's,
        # in a container the host's) beside "spent $0.00" explains itself; see
        # sessions/providers/spend.py
        origin = SPEND_FROM_WORDS.get(pod.spend_from or "")
        running = pod.state == "online" and pod.spend_since is not None
        over = f" over {humanize.duration(max(0.0, now - pod.spend_since))}" if running else ""  # type: ignore[operator]
        parts.append(f"spent ${cost:,.2f}{over}" + (f" ({origin})" if origin else ""))
    if pod.projected_usd is not None:
        parts.append(f"${pod.projected_usd:,.2f} to finish")
    if pod.uptime_s is not None and pod.spend_since is None and pod.state == "online":
        parts.append(f"host up {humanize.duration(pod.uptime_s)}")
    if pod.disk and pod.disk.total_bytes:
        parts.append(f"disk {humanize.size(pod.disk.used_bytes)}/{humanize.size(pod.disk.total_bytes)}")
    if pod.load:
        parts.append(f"load {pod.load[0]:.2f}")
    parts.append(pod.host)  # last: the fleet screen shows it too, and it is the longest
    return " · ".join(parts)


def verified_copies(config: Any, pod_name: str, session: str) -> list[Any]:
    """The session's verified local copies, untouched since they were hashed, newest
    first, as checkpoints (`verified_local`), from the index alone: what the pane can
    show of a pod that is not running (QA of issue 12: a stopped pod's pane said only
    that it is stopped, though verified copies were here)."""
    from sessions.checkpoints import index as checkpoint_index
    from sessions.checkpoints.listing import Checkpoint, step_of

    try:
        pod = config.pod(pod_name)
        workdir = next((s.workdir for s in pod.sessions if s.name == session), None)
        entries = checkpoint_index.verified_here(checkpoint_index.host_identity(pod, config.defaults), session)
    except (KeyError, OSError, AttributeError):
        return []
    found = []
    for e in entries:
        top = (workdir or "").rstrip("/") + "/"
        name = e.remote_path[len(top):] if workdir and e.remote_path.startswith(top) else e.remote_path.rsplit("/", 1)[-1]
        kind = "dir" if e.files > 1 or Path(e.local_path).is_dir() else "file"
        found.append(Checkpoint(name, e.remote_path, kind, step_of(name), e.size, e.mtime, verified_local=True,
                                files=e.files))
    return found


CHECKPOINT_REFRESH_S = 30.0
"""How often the open pod screen lists the selected session's checkpoints again."""

CHECKPOINT_NEWS = (EventKind.CHECKPOINT_FOUND, EventKind.CHECKPOINT_DOWNLOADED, EventKind.CHECKPOINT_PRUNED)


class PodScreen(LogKeys, PodActionsMixin, OpaqueScreen):
    """Follows one pod through the snapshots the app hands it (`show`)."""

    CSS_PATH = str(POD_STYLESHEET)

    BINDINGS = [HELP, *POD_ACTIONS, *POD_SCREEN]

    clock = staticmethod(time.monotonic)
    """What checkpoint ages count on with (snapshot tests hold it still)."""

    def __init__(self, pod_name: str) -> None:
        super().__init__()
        self.pod_name = pod_name
        self.snapshot: FleetSnapshot = FleetSnapshot()
        self._drawn: FleetSnapshot | None = None
        self._composed = False
        self._checkpoints: tuple[str | None, list[Any] | None, str | None] = (None, None, None)
        """(session, listing or None while listing, why there is none)."""
        self._news: list[WatchEvent] | None = None
        """Checkpoint events that arrived while a listing ran (None: none is running):
        applied to its result, which may have read the index before them."""
        self._listed = self.clock()
        """When the shown listing arrived: its ages count on from then (`_tick_ages`)."""

    def compose(self) -> ComposeResult:
        yield Static(id="pod-header")
        yield GpuPanel(id="gpu-panel")
        yield SessionsPanel(id="sessions-panel")
        yield LogPane(id="log-pane")
        yield CheckpointList(id="checkpoint-list")
        yield KeyBar()

    def on_mount(self) -> None:
        self._composed = True
        self.query_one(GpuPanel).border_title = "GPUs"
        self.query_one(SessionsPanel).border_title = "Sessions"
        self.query_one(CheckpointList).border_title = "Checkpoints"
        self.show(self.app.snapshot)  # type: ignore[attr-defined]
        self.set_interval(CHECKPOINT_REFRESH_S, self.refresh_checkpoints)
        self.set_interval(1.0, self._tick_ages)

    # -- data ------------------------------------------------------------------------

    def show(self, snapshot: FleetSnapshot) -> None:
        self.snapshot = snapshot
        # A snapshot can arrive between push_screen and compose: on_mount draws it then.
        # is_active, not is_current: see FleetScreen.show (under the full-screen log).
        if self._composed and (self.is_active or self._drawn is None):
            self._draw()

    def on_screen_resume(self) -> None:
        if self._drawn is not self.snapshot:
            self._draw()

    @property
    def pod(self) -> PodSnapshot | None:
        try:
            return self.snapshot.pod(self.pod_name)
        except KeyError:
            return None

    def _draw(self) -> None:
        self._drawn = self.snapshot
        pod = self.pod
        if pod is None:
            return
        history = self.app.history  # type: ignore[attr-defined]
        try:
            header = self.query_one("#pod-header", Static)
        except NoMatches:  # the screen is being taken down (Esc) as an update arrives
            return
        set_text(header, pod_header(pod, self.pod_name in self.paused_pods()))
        header.set_class(pod.state in ("offline", "preempted"), "-offline")
        header.set_class(pod.state in ("stopped", "terminated"), "-muted")
        header.set_class(pod.state == "reconnecting", "-reconnecting")
        self.query_one(GpuPanel).show(pod, lambda i: history.gpu(pod.name, i))
        notes = getattr(self.app, "stall_notes", None)  # what watch diagnosed (tui/stall_notes.py)
        self.query_one(SessionsPanel).show(pod, lambda s: history.loss(pod.name, s),
                                           (lambda s, stalled: notes.word(pod.name, s, stalled)) if notes else None)
        self._follow_log()
        self.query_one(LogPane).set_stale(f"pod {pod.state}: last lines" if pod.stale else None)
        self._draw_checkpoints()
        self.refresh_actions()

    def _follow_log(self) -> None:
        session = self.query_one(SessionsPanel).selected
        self.query_one(LogPane).follow_session(self.app.fleet, self.pod_name, session)  # type: ignore[attr-defined]

    @on(SessionsPanel.Selected)
    def _session_selected(self) -> None:
        self._follow_log()
        self.refresh_actions()
        self.refresh_checkpoints()

    # -- checkpoints -------------------------------------------------------------------

    @work(exclusive=True, group="checkpoints", exit_on_error=False)
    async def refresh_checkpoints(self) -> None:
        """List the selected session's checkpoints on the pod (a remote `find`)."""
        target = self.target()
        pod = self.pod
        session = target.session if target else None
        if target is None or session is None or pod is None:
            self._checkpoints = (session, [], None)
        elif pod.state != "online":
            # stats (and for a folder walks) each copy: off the UI's loop
            copies = await asyncio.to_thread(verified_copies, self.app.config, self.pod_name, session)  # type: ignore[attr-defined]
            said = (f"Pod is {pod.state}; verified copies here (its list needs it online):" if copies
                    else f"Pod is {pod.state}: checkpoints are listed when it is online.")
            self._checkpoints = (session, copies, said)
        elif not any(s.name == session for s in self.app.config.pod(self.pod_name).sessions):  # type: ignore[attr-defined]
            self._checkpoints = (session, None, f"Session {session!r} is not in config: no checkpoint globs to look for.")
        else:
            if self._checkpoints[0] != session:
                self._checkpoints = (session, None, None)
                self._draw_checkpoints()
            news: list[WatchEvent] = []
            self._news = news
            try:
                found = await self.app.actions.list_checkpoints(target)  # type: ignore[attr-defined]
                for event in news:
                    found = marked(found, event)
                self._checkpoints = (session, found, None)
                self._listed = self.clock()
            except Exception as exc:  # noqa: BLE001 - the list says why, the screen stays
                self._checkpoints = (session, None, f"Could not list checkpoints: {error_text(exc)}")
            finally:
                if self._news is news:  # not a newer listing's (an exclusive worker replaced this one)
                    self._news = None
        self._draw_checkpoints()

    def take_event(self, event: WatchEvent) -> None:
        """A checkpoint of the session shown was found, downloaded or pruned: the pane
        says so now, with the toast, not at the next listing."""
        if event.pod != self.pod_name or event.kind not in CHECKPOINT_NEWS:
            return
        session, listing, why = self._checkpoints
        if session is None or event.session != session:
            return
        if self._news is not None:
            self._news.append(event)
        path = event.extra.get("checkpoint")
        if event.kind == EventKind.CHECKPOINT_FOUND or listing is None or all(c.path != path for c in listing):
            self.refresh_checkpoints()  # one the pane has not listed yet
            return
        self._checkpoints = (session, marked(listing, event), why)
        self._draw_checkpoints()

    def _draw_checkpoints(self) -> None:
        session, listing, why = self._checkpoints
        selected = self.query_one(SessionsPanel).selected
        if session != selected:
            listing, why = None, None
        download = self.app.actions.downloads.get((self.pod_name, selected)) if selected else None  # type: ignore[attr-defined]
        since = self.clock() - self._listed
        lines = (checkpoint_lines(listing, download, error=why, globs=self._globs(selected), since=since) if selected
                 else [("No session selected.", "muted")])
        self.query_one(CheckpointList).show(lines)

    def _tick_ages(self) -> None:
        """Each second: the listed checkpoints' ages count on (only changed cells repaint)."""
        if self.is_active and self._checkpoints[1]:
            self._draw_checkpoints()

    def _globs(self, session: str) -> tuple[str, ...]:
        """The session's configured `checkpoints:` globs (none when unset or not in config)."""
        config = self.app.config  # type: ignore[attr-defined]
        try:
            return config.pod(self.pod_name).session(session).checkpoints if config is not None else ()
        except KeyError:
            return ()

    def downloads_changed(self) -> None:
        """A download's progress or outcome (from the app): redraw; list again when one ended."""
        self._draw_checkpoints()
        selected = self.query_one(SessionsPanel).selected
        download = self.app.actions.downloads.get((self.pod_name, selected)) if selected else None  # type: ignore[attr-defined]
        if download is not None and download.state != RUNNING and download is not getattr(self, "_ended", None):
            self._ended = download
            self.refresh_checkpoints()

    # -- actions -----------------------------------------------------------------------

    def target(self) -> Target | None:
        if self.pod is None:
            return None
        return Target(self.pod_name, self.query_one(SessionsPanel).selected)

    def action_select_session(self, step: int) -> None:
        self.query_one(SessionsPanel).move(step)

    def action_back(self) -> None:
        self.app.pop_screen()


def marked(listing: list[Any], event: WatchEvent) -> list[Any]:
    """The listing as `event` leaves it: the checkpoint it names (by its path on the
    pod) verified here after `checkpoint_downloaded`, no longer after `checkpoint_pruned`."""
    if event.kind not in (EventKind.CHECKPOINT_DOWNLOADED, EventKind.CHECKPOINT_PRUNED):
        return listing
    verified = event.kind == EventKind.CHECKPOINT_DOWNLOADED
    path = event.extra.get("checkpoint")
    return [replace(c, verified_local=verified) if c.path == path else c for c in listing]
