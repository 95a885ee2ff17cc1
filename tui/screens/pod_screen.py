"""One pod in detail: GPUs with history, sessions with progress and loss, the selected
session's live log, and its checkpoints. Up/down select the session."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from sessions.snapshot import FleetSnapshot, PodSnapshot
from tui import fleet_rows, humanize
from tui.actions import Target
from tui.bindings import HELP, POD_ACTIONS, POD_SCREEN
from tui.screens.pod_actions import PodActionsMixin
from tui.widgets.checkpoint_list import CheckpointList
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.log_pane import LogPane
from tui.widgets.sessions_panel import SessionsPanel
from tui.widgets.text import set_text


def pod_header(pod: PodSnapshot) -> str:
    """'a100-west · online · root@203.0.113.7:22 · $1.29/h · spent $2.10 · up 1h38m · disk 23G/252G'."""
    parts = [pod.name, pod.state, pod.host]
    if pod.price_per_hour is not None:
        parts.append(f"${pod.price_per_hour:.2f}/h")
    cost = fleet_rows.spent(pod)
    if cost is not None:
        parts.append(f"spent ${cost:,.2f}")
    if pod.uptime_s is not None:
        parts.append(f"up {humanize.duration(pod.uptime_s)}")
    if pod.disk and pod.disk.total_bytes:
        parts.append(f"disk {humanize.size(pod.disk.used_bytes)}/{humanize.size(pod.disk.total_bytes)}")
    if pod.load:
        parts.append(f"load {pod.load[0]:.2f}")
    return " · ".join(parts)


class PodScreen(PodActionsMixin, Screen):
    """Follows one pod through the snapshots the app hands it (`show`)."""

    BINDINGS = [HELP, *POD_ACTIONS, *POD_SCREEN]

    def __init__(self, pod_name: str) -> None:
        super().__init__()
        self.pod_name = pod_name
        self.snapshot: FleetSnapshot = FleetSnapshot()
        self._drawn: FleetSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="pod-header")
        yield GpuPanel(id="gpu-panel")
        yield SessionsPanel(id="sessions-panel")
        yield LogPane(id="log-pane")
        yield CheckpointList(id="checkpoint-list")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(GpuPanel).border_title = "GPUs"
        self.query_one(SessionsPanel).border_title = "Sessions"
        self.query_one(CheckpointList).border_title = "Checkpoints"
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    # -- data ------------------------------------------------------------------------

    def show(self, snapshot: FleetSnapshot) -> None:
        self.snapshot = snapshot
        if self.is_current or self._drawn is None:
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
        header = self.query_one("#pod-header", Static)
        set_text(header, pod_header(pod) + (f" · {pod.error}" if pod.error and pod.state != "online" else ""))
        header.set_class(pod.state == "offline", "-offline")
        header.set_class(pod.state == "reconnecting", "-reconnecting")
        self.query_one(GpuPanel).show(pod, lambda i: history.gpu(pod.name, i))
        self.query_one(SessionsPanel).show(pod, lambda s: history.loss(pod.name, s))
        self._follow_log()
        self.query_one(CheckpointList).show(self.app.actions.checkpoint_lines(self.target()))  # type: ignore[attr-defined]
        self.refresh_actions()

    def _follow_log(self) -> None:
        session = self.query_one(SessionsPanel).selected
        self.query_one(LogPane).follow_session(self.app.fleet, self.pod_name, session)  # type: ignore[attr-defined]

    @on(SessionsPanel.Selected)
    def _session_selected(self) -> None:
        self._follow_log()
        self.refresh_actions()

    # -- actions -----------------------------------------------------------------------

    def target(self) -> Target | None:
        if self.pod is None:
            return None
        return Target(self.pod_name, self.query_one(SessionsPanel).selected)

    def action_select_session(self, step: int) -> None:
        self.query_one(SessionsPanel).move(step)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_search(self) -> None:
        self.query_one(LogPane).open_search()

    def action_follow(self) -> None:
        self.query_one(LogPane).toggle_follow()

    def action_log_page(self, direction: int) -> None:
        view = self.query_one(LogPane).view
        if direction < 0:
            view.scroll_page_up(animate=False)
        else:
            view.scroll_page_down(animate=False)
