"""The fleet table: one row per pod, redrawn row by row as snapshots arrive.

A Line API widget rather than Textual's DataTable: DataTable's `update_cell` bumps a
counter that is part of every row's render-cache key, so one changed cell re-renders
every visible cell, and 50 pods ticking at 1 Hz cost a quarter of a core
(bench/tui_fleet.py). Here each row is rendered once into a strip when its cells
change, and only changed rows are repainted; rows are added, removed or re-ordered only
when the filter, the pod set or the sort order actually changes, so nothing flickers
and the highlighted pod stays highlighted. The header line stays put while rows scroll.
Columns are chosen on resize, when a different set fits (`fleet_rows.visible_columns`).

A `jobs:` entry is one row of its own (`tui/job_rows.py`), sorted among the pods' rows
by its own value for the sort key (first in config order), with its
nodes' rows folded under it in rank order when expanded (`expanded`, toggled by the
screen); a pod of a job is never also a row of its own. Rows are keyed by pod name, a
job's by `job_key(name)`, which no pod name can equal. A `kind: slurm` pod's jobs
(`slurm`: the Fleet's poller's views) are rows under the login node's row, keyed by
`slurm_key(pod, job id)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sessions.config.model import JobConfig
from sessions.jobs.summary import JobSummary, summarize
from sessions.snapshot import FleetSnapshot, PodSnapshot
from tui import fleet_rows, job_rows
from tui.fleet_rows import Cell, Column
from tui.status_table import hot_at, pod_alerts
from tui.widgets.tones import ToneStyles

if TYPE_CHECKING:  # sessions.slurm.jobs imports asyncssh: not before the first frame
    from sessions.slurm.jobs import JobView

PAD = fleet_rows.CELL_PADDING
JOB_PREFIX = "\x00job:"
"""Row keys of job rows start with it (a NUL: never in a pod's name)."""


SLURM_PREFIX = "\x00slurm:"


def job_key(name: str) -> str:
    """The row key of the job `name`."""
    return JOB_PREFIX + name


def slurm_key(pod: str, job_id: str) -> str:
    """The row key of a Slurm job listed by the `kind: slurm` pod `pod`."""
    return f"{SLURM_PREFIX}{pod}:{job_id}"


@dataclass(frozen=True)
class _JobRow:
    """A job as the table places it: its summary, its nodes in the snapshot (the row's
    figures and sort value) and those the filter keeps (shown under it when unfolded)."""

    job: JobConfig
    summary: JobSummary
    nodes: list[PodSnapshot]
    members: list[PodSnapshot]


class FleetTable(ScrollView, can_focus=True):
    """Shows a `FleetSnapshot`; the screen sets `filter_text`, `sort_key` and `reverse`."""

    # Only the tones a row uses: Textual resolves every component class's style when
    # the widget is styled, and this is on the path to the first frame.
    COMPONENT_CLASSES = {f"tone--{t}" for t in fleet_rows.TONES} | {"fleet-table--header", "fleet-table--cursor"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", id="fleet.up", show=False),
        Binding("down", "cursor(1)", "Down", id="fleet.down", show=False),
        Binding("pageup", "page(-1)", "Page up", id="fleet.page_up", show=False),
        Binding("pagedown", "page(1)", "Page down", id="fleet.page_down", show=False),
        Binding("home", "cursor_to(0)", "First pod", id="fleet.first", show=False),
        Binding("end", "cursor_to(-1)", "Last pod", id="fleet.last", show=False),
    ]

    class Highlighted(Message):
        """The highlighted pod changed (None: no row)."""

        def __init__(self, pod: str | None) -> None:
            super().__init__()
            self.pod = pod

    class Selected(Message):
        """Enter (or a click on the highlighted row) on a pod, or a job (`job_key`)."""

        def __init__(self, pod: str) -> None:
            super().__init__()
            self.pod = pod

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self.sort_key = "config"
        self.reverse = False
        self.cursor = 0
        self._fleet = FleetSnapshot()
        self._columns: list[Column] = []
        self._names: tuple[str, ...] = ()
        self.expanded: set[str] = set()
        """Jobs whose nodes are shown under their row (collapsed by default: the job row
        carries the summary and names a straggler, and a 16-node job would push every
        other pod off a 24-line terminal)."""
        self._order: list[str] = []
        self._cells: dict[str, dict[str, Cell]] = {}
        self._strips: dict[str, Strip] = {}
        self._header: Strip | None = None
        self._tone = ToneStyles(self)
        self._jobs_width = 0

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())

    # -- public --------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        """Key of the highlighted row (a pod's name or `job_key`), if any row is shown."""
        return self._order[self.cursor] if 0 <= self.cursor < len(self._order) else None

    @property
    def selected_pod(self) -> str | None:
        """Name of the highlighted pod (None on a job's row)."""
        key = self.selected_key
        return None if key is None or key.startswith("\x00") else key

    @property
    def selected_job(self) -> str | None:
        """Name of the job whose row is highlighted, if it is a job's row."""
        key = self.selected_key
        return key[len(JOB_PREFIX):] if key is not None and key.startswith(JOB_PREFIX) else None

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def rows(self) -> list[str]:
        """Row keys in display order: pod names, and `job_key(name)` for a job's row."""
        return list(self._order)

    def cell_texts(self, pod: str) -> list[str]:
        """What the row of `pod` shows, one string per visible column (for tests)."""
        cells = self._cells[pod]
        return ["".join(part for part, _ in cells[c.key]) for c in self._columns]

    def show(self, fleet: FleetSnapshot, paused: frozenset[str] = frozenset(),
             jobs: Sequence[JobConfig] = (), slurm: Mapping[str, Sequence[JobView]] | None = None) -> None:
        """Bring the table to `fleet`, repainting only the rows that changed; `paused`:
        pods whose policies are paused (marked after their state); `jobs`: the config's
        jobs, each drawn as one row sorted among the other pods; `slurm`: per `kind: slurm`
        pod, its Slurm jobs, drawn under its row."""
        self._fleet = fleet
        names = tuple(p.name for p in fleet.pods) + tuple(job_key(j.name) for j in jobs)
        if names != self._names:  # the pod column fits the longest name
            self._names = names
            # a job's row: its fold mark and name; its nodes: their indent and name
            self._jobs_width = max([len(j.name) + 2 for j in jobs] + [len(n) + 3 for j in jobs for n in j.pods],
                                   default=0)
            self._columns = self._fitting_columns()
            self._restyle()
        selected = self.selected_key
        pods = [p for p in fleet.pods if fleet_rows.matches(p, self.filter_text)]
        config = getattr(self.app, "config", None)
        rows: dict[str, dict[str, Cell]] = {}

        def pod_row(pod, mark: str = "") -> None:
            # The temperature turns hot at the pod's alert threshold: colour, toast and
            # alert read the same policy value.
            cells = fleet_rows.pod_cells(pod, pod.name in paused, hot_at(pod_alerts(config, pod.name)))
            rows[pod.name] = {**cells, "pod": ((mark, "muted"), *cells["pod"])} if mark else cells

        by_name = {p.name: p for p in pods}
        present = {p.name: p for p in fleet.pods}
        placed: set[str] = set()  # pods shown (or folded) under a job
        # A job's row sorts among the pods' by its own value for the sort key (its $/h
        # summed, its GPUs' mean utilization...); in config order the jobs come first.
        shown: list[_JobRow | PodSnapshot] = []
        for job in jobs:
            members = [by_name[n] for n in job.pods if n in by_name and n not in placed]
            if not members and self.filter_text.lower() not in job.name.lower():
                continue
            placed.update(p.name for p in members)
            shown.append(_JobRow(job, summarize(job, fleet), [present[n] for n in job.pods if n in present], members))
        shown += [p for p in pods if p.name not in placed]

        def value(row: _JobRow | PodSnapshot) -> object:
            if isinstance(row, _JobRow):
                return job_rows.sort_value(self.sort_key, row.summary, row.nodes)
            return fleet_rows.SORTS[self.sort_key][1](row)

        def stale(row: _JobRow | PodSnapshot) -> bool:
            return all(p.stale for p in row.nodes) if isinstance(row, _JobRow) else row.stale

        for row in fleet_rows.ordered_rows(shown, self.sort_key, self.reverse, value, stale):
            if isinstance(row, _JobRow):
                open_ = row.job.name in self.expanded
                rows[job_key(row.job.name)] = job_rows.job_cells(row.summary, row.nodes, open_)
                if open_:
                    for i, pod in enumerate(row.members):
                        pod_row(pod, job_rows.node_mark(i == len(row.members) - 1))
                continue
            pod_row(row)
            listed = (slurm or {}).get(row.name, ())
            for i, view in enumerate(listed):
                rows[slurm_key(row.name, view.job.job_id)] = job_rows.slurm_cells(view, i == len(listed) - 1)
        order = list(rows)
        changed: list[str] = []
        for key, cells in rows.items():
            if self._cells.get(key) != cells:
                self._cells[key] = cells
                self._strips.pop(key, None)
                changed.append(key)
        for gone in set(self._cells) - set(rows):
            del self._cells[gone]
            self._strips.pop(gone, None)
        if order != self._order:
            self._order = order
            self.virtual_size = Size(self.size.width, len(order) + 1)
            self._move_to(order.index(selected) if selected in order else min(self.cursor, len(order) - 1),
                          announce=selected not in order)
            self.refresh()
        else:
            rank = {name: i for i, name in enumerate(order)}
            for name in changed:
                self.refresh_line(rank[name] + 1)

    def move_cursor(self, row: int) -> None:
        self._move_to(row)

    # -- navigation ------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._move_to(self.cursor + step * max(1, self.size.height - 2))

    def action_cursor_to(self, row: int) -> None:
        self._move_to(row if row >= 0 else len(self._order) - 1)

    def action_select(self) -> None:
        if self.selected_key is not None:
            self.post_message(self.Selected(self.selected_key))

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= row < len(self._order):
            if row == self.cursor:
                self.action_select()
            self._move_to(row)

    def _move_to(self, row: int, announce: bool = True) -> None:
        old = self.cursor
        self.cursor = max(0, min(row, len(self._order) - 1)) if self._order else 0
        visible = max(1, self.size.height - 1)
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)
        if old != self.cursor or announce:
            self.refresh_line(old + 1)
            self.refresh_line(self.cursor + 1)
            self.post_message(self.Highlighted(self.selected_pod))

    # -- columns and drawing -----------------------------------------------------------

    def _fitting_columns(self) -> list[Column]:
        longest = max([len(p.name) for p in self._fleet.pods] + [self._jobs_width], default=8)
        return fleet_rows.visible_columns(self.size.width or 80, max(8, min(longest, 24)))

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._order) + 1)
        wanted = self._fitting_columns()
        if [c.key for c in wanted] != [c.key for c in self._columns]:
            self._columns = wanted
            self._restyle()

    def _restyle(self) -> None:
        """New columns or a new theme: every row is rendered again."""
        self._tone.clear()
        self._strips.clear()
        self._header = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            if self._header is None:
                labels = {c.key: ((c.label, ""),) for c in self._columns}
                self._header = self._render_row(labels, self.get_component_rich_style("fleet-table--header"))
            return self._header.crop_extend(0, width, base)
        row = int(self.scroll_y) + y - 1
        if not 0 <= row < len(self._order):
            return Strip([Segment(" " * width, base)], width)
        name = self._order[row]
        if row == self.cursor:
            style = self.get_component_rich_style("fleet-table--cursor")
            return self._render_row(self._cells[name], style, plain=True).crop_extend(0, width, base)
        strip = self._strips.get(name)
        if strip is None:
            strip = self._strips[name] = self._render_row(self._cells[name], base)
        return strip.crop_extend(0, width, base)

    def _render_row(self, cells: dict[str, Cell], style: Style, plain: bool = False) -> Strip:
        text = Text(no_wrap=True, end="")
        for col in self._columns:
            cell = Text(no_wrap=True, end="")
            for part, tone in cells[col.key]:
                cell.append(part, None if plain else self._tone(tone))
            if cell.cell_len > col.width:
                cell.truncate(col.width, overflow="ellipsis")
            pad = " " * (col.width - cell.cell_len)
            text.append(" " * PAD)
            if col.right:
                text.append(pad)
                text.append_text(cell)
            else:
                text.append_text(cell)
                text.append(pad)
            text.append(" " * PAD)
        segments = Segment.apply_style(text.render(self.app.console), style)  # under the tones
        return Strip(list(segments), text.cell_len)
