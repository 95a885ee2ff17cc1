"""One session's log, full screen: follow on/off, search, wrap, scroll with the keyboard."""

from __future__ import annotations

from textual.app import ComposeResult

from themes.palettes import POD_STYLESHEET
from tui.bindings import LOG
from tui.screens.opaque import OpaqueScreen
from tui.widgets.key_bar import KeyBar
from tui.widgets.log_pane import LogKeys, LogPane


class LogScreen(LogKeys, OpaqueScreen):
    CSS_PATH = str(POD_STYLESHEET)
    BINDINGS = LOG

    def __init__(self, pod: str, session: str) -> None:
        super().__init__()
        self.pod = pod
        self.session = session

    def compose(self) -> ComposeResult:
        yield LogPane(id="full-log")
        yield KeyBar()

    def on_mount(self) -> None:
        pane = self.query_one(LogPane)
        pane.show_pod = True
        pane.follow_session(self.app.fleet, self.pod, self.session)  # type: ignore[attr-defined]
        pane.view.focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_match(self) -> None:
        self.query_one(LogPane).view.step_match(1)

    def action_previous_match(self) -> None:
        self.query_one(LogPane).view.step_match(-1)
