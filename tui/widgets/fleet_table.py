"""The fleet table: one row per pod, updated cell by cell as snapshots arrive.

Rows are keyed by pod name. A new snapshot changes only the cells whose text or tone
changed (`update_cell`); rows are added or removed only when the filter or the pod set
changes, and re-ordered only when the sort order actually moved, so nothing flickers
and the highlighted pod stays highlighted. Columns are rebuilt only on resize, when a
different set of them fits (`fleet_rows.visible_columns`).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from sessions.snapshot import FleetSnapshot, PodSnapshot
from tui import fleet_rows
from tui.fleet_rows import Cell, Column
from tui.widgets.tones import TONE_CLASSES, ToneStyles


class FleetTable(DataTable):
    """Shows a `FleetSnapshot`; the screen sets `filter_text`, `sort` and `reverse`."""

    COMPONENT_CLASSES = set(TONE_CLASSES)

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.filter_text = ""
        self.sort_key = "config"
        self.reverse = False
        self._fleet = FleetSnapshot()
        self._columns: list[Column] = []
        self._shown: dict[str, dict[str, Cell]] = {}
        self._order: list[str] = []
        self._tone = ToneStyles(self)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())

    # -- public --------------------------------------------------------------------

    @property
    def selected_pod(self) -> str | None:
        """Name of the highlighted pod, if any row is shown."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - the cursor can sit past the end for a moment
            return None

    def show(self, fleet: FleetSnapshot) -> None:
        """Bring the table to `fleet`, touching only what changed."""
        self._fleet = fleet
        if not self._columns:
            self._build_columns()
        pods = [p for p in fleet.pods if fleet_rows.matches(p, self.filter_text)]
        order = [p.name for p in fleet_rows.ordered(pods, self.sort_key, self.reverse)]
        keep = set(order)
        selected = self.selected_pod
        for name in [n for n in self._order if n not in keep]:
            self.remove_row(name)
            self._shown.pop(name, None)
            self._order.remove(name)
        for pod in pods:
            self._show_pod(pod)
        if order != self._order:
            rank = {name: i for i, name in enumerate(order)}
            self.sort(key=lambda row: rank[row[0].plain])
            self._order = order
            if selected in rank:
                self.move_cursor(row=rank[selected], animate=False, scroll=False)

    def on_resize(self) -> None:
        wanted = fleet_rows.visible_columns(self.size.width, self._pod_width())
        if [c.key for c in wanted] != [c.key for c in self._columns]:
            self._build_columns()

    # -- internals -----------------------------------------------------------------

    def _pod_width(self) -> int:
        longest = max((len(p.name) for p in self._fleet.pods), default=8)
        return max(8, min(longest, 24))

    def _build_columns(self) -> None:
        selected = self.selected_pod
        self.clear(columns=True)
        self._shown.clear()
        self._order = []
        self._columns = fleet_rows.visible_columns(self.size.width or 80, self._pod_width())
        for col in self._columns:
            label = Text(col.label, justify="right" if col.right else "left")
            self.add_column(label, width=col.width, key=col.key)
        if self._fleet.pods:
            self.show(self._fleet)
            if selected in self._order:
                self.move_cursor(row=self._order.index(selected), animate=False)

    def _show_pod(self, pod: PodSnapshot) -> None:
        cells = fleet_rows.pod_cells(pod)
        old = self._shown.get(pod.name)
        if old is None:
            self.add_row(*(self._text(c, cells[c.key]) for c in self._columns), key=pod.name)
            self._order.append(pod.name)
        else:
            for col in self._columns:
                if old[col.key] != cells[col.key]:
                    self.update_cell(pod.name, col.key, self._text(col, cells[col.key]))
        self._shown[pod.name] = cells

    def _text(self, col: Column, cell: Cell) -> Text:
        text = Text(justify="right" if col.right else "left", no_wrap=True, end="")
        for part, tone in cell:
            text.append(part, self._tone(tone))
        if text.cell_len > col.width and col.key != "pod":  # the pod cell keeps its full name: it sorts by it
            text.truncate(col.width, overflow="ellipsis")
        return text

    def _restyle(self) -> None:
        """A new theme: rebuild every cell from the last snapshot with its styles."""
        self._tone.clear()
        self._shown = {name: {k: () for k in cells} for name, cells in self._shown.items()}
        self.show(self._fleet)
