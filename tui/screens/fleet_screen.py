"""The home screen: one row per pod, live; Enter opens a pod, `/` filters, `o` sorts.

A `jobs:` entry is one row (its nodes folded under it; space unfolds them, Enter or `J`
opens the job's screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from sessions.config.model import JobConfig
from sessions.jobs.summary import summarize
from sessions.snapshot import FleetSnapshot
from tui import fleet_rows, job_rows
from tui.actions import Target
from tui.bindings import FLEET, POD_ACTIONS, applies
from tui.screens.pod_actions import POD_ACTION_NAMES, PodActionsMixin
from tui.widgets.fleet_table import FleetTable, job_key, slurm_key
from tui.widgets.key_bar import KeyBar
from tui.widgets.text import set_text

_OPEN_JOB = next(b for b in FLEET if b.action == "open_job")

if TYPE_CHECKING:  # sessions.slurm.jobs imports asyncssh: not before the first frame
    from sessions.slurm.jobs import JobView
    from textual.widgets import Input


LOADING = "Reading config…"
"""The header until the app has read its config (bench/tui_startup.py waits for it)."""


class FleetScreen(PodActionsMixin, Screen):
    """Receives snapshots from the app (`show`); draws them only while on top."""

    BINDINGS = [FLEET[0], *POD_ACTIONS, *FLEET[1:],
                Binding("escape", "clear_filter", "Clear filter", id="fleet.clear_filter", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = FleetSnapshot()
        self._drawn: FleetSnapshot | None = None
        self._composed = False

    def compose(self) -> ComposeResult:
        from textual.widgets import Input

        yield Static(id="fleet-header")
        yield FleetTable(id="fleet-table")
        yield Static(id="fleet-detail")
        # Mounted now and hidden, not on `/`, and `/` is a priority binding (run by the app
        # before it hands the next key on): keys typed or pasted in one burst after `/` went
        # to the table, where `a` attaches and `l` opens a log, instead of the filter.
        box = Input(placeholder="filter: pod, host, state, GPU or session (Enter: keep, Esc: clear)", id="fleet-filter")
        box.display = False
        yield box
        yield KeyBar()

    def on_mount(self) -> None:
        self._composed = True
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    # -- data ------------------------------------------------------------------------

    def show(self, snapshot: FleetSnapshot) -> None:
        """Take a new snapshot; drawn now if this screen is visible, else on resume."""
        self.snapshot = snapshot
        # is_active, not is_current: Textual 8 counts the screen under the top one as
        # current and forwards its repaints to the top screen (a full repaint per draw).
        # A snapshot can arrive before compose has finished (NoMatches 'FleetTable', seen
        # in a test run): on_mount draws the newest one then, as PodScreen does.
        if self._composed and (self.is_active or self._drawn is None):
            self._draw()

    def on_screen_resume(self) -> None:
        if self._drawn is not self.snapshot:
            self._draw()

    def _draw(self) -> None:
        try:
            table = self.table
        except NoMatches:  # taken down (the app quitting) as an update arrived
            return
        snapshot = self._drawn = self.snapshot
        table.show(snapshot, self.paused_pods(), self._config_jobs(), self._slurm_views())
        if self.app.config is None:  # type: ignore[attr-defined]
            header = LOADING  # the app reads it after this first frame
        else:
            header = fleet_rows.header_text(snapshot, sort=table.sort_key, reverse=table.reverse,
                                            filter_text=table.filter_text, shown=table.row_count)
        read_only = self.app.actions.read_only  # type: ignore[attr-defined]
        self.set_class(read_only, "-read-only")  # config can turn it on once read
        if read_only:
            header = "READ-ONLY · " + header
        set_text(self.query_one("#fleet-header", Static), header)
        self._detail()
        self.refresh_actions()

    def _config_jobs(self) -> tuple[JobConfig, ...]:
        config = self.app.config  # type: ignore[attr-defined]
        return tuple(config.jobs) if config is not None else ()

    def _slurm_views(self) -> dict[str, tuple[JobView, ...]]:
        """The Fleet's last look at each `kind: slurm` pod's jobs (sessions/slurm/poller.py)."""
        poller = getattr(self.app.fleet, "slurm", None)  # type: ignore[attr-defined]
        return poller.views if poller is not None else {}

    def _slurm_selected(self) -> tuple[str, JobView] | None:
        key = self.table.selected_key or ""
        for pod, views in self._slurm_views().items():
            for view in views:
                if key == slurm_key(pod, view.job.job_id):
                    return pod, view
        return None

    def _job(self, name: str | None) -> JobConfig | None:
        return next((j for j in self._config_jobs() if j.name == name), None)

    def _row_job(self) -> JobConfig | None:
        """The job of the highlighted row: a job's row, or a node's row under it."""
        job = self._job(self.table.selected_job)
        if job is None:
            name = self.table.selected_pod
            job = next((j for j in self._config_jobs() if name in j.pods), None)
        return job

    def _detail(self) -> None:
        name = self.table.selected_pod
        detail = self.query_one("#fleet-detail", Static)
        text, tone = ("", "")
        job = self._job(self.table.selected_job)
        slurm = self._slurm_selected()
        if job is not None:
            text, tone = job_rows.detail_text(summarize(job, self.snapshot))
        elif slurm is not None:
            text = job_rows.slurm_detail(*slurm)
        elif name is not None:
            text, tone = fleet_rows.detail_line(self.snapshot.pod(name), name in self.paused_pods())
            poller = getattr(self.app.fleet, "slurm", None)  # type: ignore[attr-defined]
            error = poller.errors.get(name) if poller is not None else None
            if error and not tone:  # a login node that answers SSH but not squeue says so
                text, tone = f"{text} · Slurm jobs: {error}", "reconnecting"
        elif self.snapshot.pods:
            text = "No pod matches the filter."
        for cls in ("-failed", "-reconnecting"):
            detail.set_class(cls == f"-{tone}", cls)
        set_text(detail, text)

    @on(FleetTable.Highlighted)
    def _highlighted(self) -> None:
        self._detail()
        self.refresh_actions()

    # -- targets and actions --------------------------------------------------------

    def _capabilities(self) -> tuple:
        """The mixin's, and which job's row (or node's) is highlighted: the key bar
        offers the job keys there and no pod keys on a job's row."""
        job = self._row_job()
        return (self.table.selected_key, job.name if job else None, *super()._capabilities())

    def target(self) -> Target | None:
        name = self.table.selected_pod
        if name is None:
            return None
        session = fleet_rows.main_session(self.snapshot.pod(name))
        return Target(name, session.name if session else None)

    def action_open_pod(self) -> None:
        from tui.screens.pod_screen import PodScreen

        if self.table.selected_job is not None or self._slurm_selected() is not None:
            self.action_open_job()
            return
        name = self.table.selected_pod
        if name is not None:
            self.app.push_screen(PodScreen(name))

    def action_open_job(self) -> None:
        from tui.screens.job_screen import JobScreen

        slurm = self._slurm_selected()
        if slurm is not None:
            from tui.screens.slurm_job_screen import SlurmJobScreen

            self.app.push_screen(SlurmJobScreen(*slurm))
            return
        job = self._row_job()
        if job is not None:
            self.app.push_screen(JobScreen(job))

    def action_toggle_job(self) -> None:
        """Fold or unfold the nodes of the highlighted job (on a node's row: its job)."""
        table = self.table
        job = self._row_job()
        if job is None:
            return
        table.expanded.symmetric_difference_update({job.name})
        self._draw()
        table.move_cursor(table.rows.index(job_key(job.name)))  # stays on the job as its nodes fold

    @on(FleetTable.Selected)
    def _selected(self) -> None:
        self.action_open_pod()

    def action_sort(self) -> None:
        order = fleet_rows.SORT_ORDER
        table = self.table
        table.sort_key = order[(order.index(table.sort_key) + 1) % len(order)]
        self._draw()  # the header says "sorted by …": no toast repeats it

    def action_reverse_sort(self) -> None:
        self.table.reverse = not self.table.reverse
        self._draw()

    # -- filter ----------------------------------------------------------------------

    def _filter_box(self) -> Input | None:
        found = self.query("#fleet-filter")
        return found.first() if found else None  # type: ignore[return-value]

    def action_filter(self) -> None:
        box = self._filter_box()
        if box is not None:
            box.display = True
            self.set_focus(box)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":  # a priority key: once the filter has the focus, `/` is text
            box = self._filter_box()
            return not (box is not None and box.display and self.focused is box)
        if action == "open_job" and self._slurm_selected() is not None:
            return True  # a Slurm job's row, whatever the config's jobs:
        if action in ("open_job", "toggle_job"):  # offered (key bar, palette) on a job's row or its node's
            return applies(_OPEN_JOB, self.app.config) and self._row_job() is not None  # type: ignore[attr-defined]
        if action in POD_ACTION_NAMES and self.table.selected_key is not None and self.table.selected_pod is None:
            return False  # a job's row (or a Slurm job's): no pod keys in the key bar; they act on a node's row
        if action == "clear_filter":
            box = self._filter_box()
            return bool(self.table.filter_text) or bool(box is not None and box.display)
        return super().check_action(action, parameters)

    def action_clear_filter(self) -> None:
        box = self._filter_box()
        if box is not None:
            box.value = ""
            box.display = False
        self.table.focus()

    def on_input_changed(self, event) -> None:
        if event.input.id == "fleet-filter":
            self.table.filter_text = event.value.strip()
            self._draw()

    def on_input_submitted(self, event) -> None:
        if event.input.id == "fleet-filter":
            event.input.display = bool(event.value.strip())
            self.table.focus()
