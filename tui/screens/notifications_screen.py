"""`m`: every notification so far, newest first, in full: time, severity, pod, message.

Toasts are cut to two lines and routine ones vanish after a few seconds; this is where
the whole sentence (the full local path of a download, every line of a provider's
answer) stays readable, for as long as the app runs (`tui.notices.KEPT` of them).
It follows new notices while open.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from themes.palettes import DIALOG_STYLESHEET
from tui.notices import Notice

SEVERITY_WORDS = {"error": "error", "warning": "warning", "information": "info"}


class NotificationsScreen(ModalScreen[None]):
    CSS_PATH = str(DIALOG_STYLESHEET)
    BINDINGS = [Binding("escape,m", "dismiss", "Close", id="notices.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog notices"):
            yield Static(classes="notices-body")

    def on_mount(self) -> None:
        self._drawn = -1
        self.notices_changed()
        self.query_one(".notices", VerticalScroll).focus()

    def notices_changed(self) -> None:
        """The app added a notice (or the screen just opened): redraw the list."""
        log = self.app.notices  # type: ignore[attr-defined]
        if log.version == getattr(self, "_drawn", log.version):  # unchanged, or not mounted yet
            return
        self._drawn = log.version
        self.query_one(".notices").border_title = f"Notifications: {len(log)}, newest first (Esc closes)"
        self.query_one(".notices-body", Static).update(self._table(log.newest_first()))

    def _table(self, notices: list[Notice]) -> Table | Text:
        if not notices:
            return Text("Nothing yet: connection changes, exits, alerts, downloads and the results of "
                        "your actions will be listed here.", style="dim")
        theme = self.app.current_theme
        tone = {"error": f"bold {theme.error}", "warning": str(theme.warning)}
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, style="dim")
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column(ratio=1, overflow="fold")  # a path wraps whole, never cut
        for notice in notices:
            muted = "dim" if notice.routine else ""
            table.add_row(notice.clock, Text(SEVERITY_WORDS.get(notice.severity, notice.severity),
                                             style=tone.get(notice.severity, "dim")),
                          Text(notice.title or "-", style=muted), Text(notice.message, style=muted))
        return table
