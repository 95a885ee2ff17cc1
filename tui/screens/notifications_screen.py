"""`m`: every notification so far, in full: time, severity, pod, message, the newest last.

Toasts are cut to two lines and routine ones vanish after a few seconds; this is where
the whole sentence (the full local path of a download, every line of a provider's
answer) stays readable, for as long as the app runs (`tui.notices.KEPT` of them).
It follows new notices while open, the way a log does: the newest at the bottom, in
view, older ones a scroll up.

A `RichLog` renders each notice once, when it is written, and draws only the rows in
view; each notice is wrapped here into plain lines (a rich Table per notice cost ~8 ms
to render; one Table of 2,000 notices in a scrolled `Static` took a minute to open).
"""

from __future__ import annotations

import re
import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import RichLog

from themes.palettes import DIALOG_STYLESHEET
from tui.notices import Notice

SEVERITY_WORDS = {"error": "error", "warning": "warning", "information": "info"}
WHERE_WIDTH = 18
"""Cells for the pod (`rtx4090-spot / vit`); a longer title is cut (the toast had it whole)."""


class _PathWrapper(textwrap.TextWrapper):
    """Breaks at spaces, and a word too long for a line (a path) after its `/`s."""

    def _split(self, text: str) -> list[str]:
        chunks = super()._split(text)
        return [piece for chunk in chunks
                for piece in (_AFTER_SLASH.split(chunk) if len(chunk) > self.width else (chunk,)) if piece]


_AFTER_SLASH = re.compile(r"(?<=/)(?=[^/])")


def fold(line: str, width: int) -> list[str]:
    """`line` in lines of `width`: at spaces, a long path at its separators, never
    inside a name (`…/che` / `ckpoints/` was how the demo's download paths read). Only
    a single name longer than the line is cut, as nothing else can show it."""
    wrapper = _PathWrapper(width, break_on_hyphens=False)
    return wrapper.wrap(line) or [""]


class NotificationsScreen(ModalScreen[None]):
    CSS_PATH = str(DIALOG_STYLESHEET)
    BINDINGS = [Binding("escape,m", "dismiss", "Close", id="notices.close")]

    def __init__(self) -> None:
        super().__init__()
        self._written = 0  # the log's `version` written so far

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog notices"):
            yield RichLog(wrap=False, markup=False, auto_scroll=True, classes="notices-body")

    def on_mount(self) -> None:
        self.query_one(RichLog).focus()
        self.call_after_refresh(self.notices_changed)  # once the log knows its width

    def notices_changed(self) -> None:
        """The app added a notice (or the screen just opened): write what is new."""
        log = self.app.notices  # type: ignore[attr-defined]
        body = self.query_one(RichLog)
        width = body.scrollable_content_region.width
        if not self.is_attached or not width or log.version == self._written:
            return
        new = min(log.version - self._written, len(log))
        if not self._written and not new:
            body.write(Text("Nothing yet: connection changes, exits, alerts, downloads and the results of "
                            "your actions will be listed here.", style="dim"))
        rows = [self._row(notice, width) for notice in list(log)[len(log) - new:]]
        if rows:  # one write: RichLog's cost is per write (~5 ms), not per line
            body.write(Text("\n").join(rows), shrink=False)
        self._written = log.version
        self.query_one(".notices").border_title = f"Notifications: {len(log)}, the newest last (Esc closes)"

    def _row(self, notice: Notice, width: int) -> Text:
        """One notice as lines of `width`: time, severity and pod in columns, the
        message wrapped beside them (a path folds whole, never cut)."""
        theme = self.app.current_theme
        tone = {"error": f"bold {theme.error}", "warning": str(theme.warning)}.get(notice.severity, "dim")
        muted = "dim" if notice.routine else ""
        where = (notice.title or "-")[:WHERE_WIDTH]
        indent = len(notice.clock) + 1 + 8 + WHERE_WIDTH + 1
        room = max(20, width - indent)
        lines = [chunk for line in notice.message.splitlines() or [""] for chunk in fold(line, room)]
        row = Text.assemble((notice.clock + " ", "dim"), (f"{SEVERITY_WORDS.get(notice.severity, notice.severity):<8}", tone),
                            (f"{where:<{WHERE_WIDTH}} ", f"bold {muted}".strip()), (lines[0], muted))
        for line in lines[1:]:
            row.append("\n" + " " * indent)
            row.append(line, style=muted)
        return row
