"""A session's live log with its title line and search box: the pod screen's log
panel and the full-screen log are both one of these."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input

from tui.log_feed import LogFeed
from tui.widgets.log_view import LogView


class LogPane(Vertical):
    """Follow one session's log at a time (`follow_session`); `/` searches it."""

    BINDINGS = [Binding("escape", "close_search", "Close search", id="log.close_search", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._feed: LogFeed | None = None
        self.session: str | None = None
        self.show_pod = False
        """Name the pod in the title (the full-screen log has no pod header)."""
        self._pod: str | None = None

    def compose(self) -> ComposeResult:
        self._view = LogView()
        yield self._view
        yield Input(placeholder="search the log (Enter: older match, Esc: close)", classes="log-search")

    def on_mount(self) -> None:
        self.query_one(".log-search").display = False
        self._title()

    @property
    def view(self) -> LogView:
        return self._view

    # -- which log -------------------------------------------------------------------

    def follow_session(self, fleet: Any, pod: str, session: str | None) -> None:
        """Show `session`'s log from its recent text on, live; None shows nothing."""
        if self._feed and (self._feed.pod, self._feed.session) == (pod, session):
            return
        self.stop()
        self.session = session
        self._pod = pod
        view = self.view
        view.clear()
        if session is not None and fleet is not None:
            self._feed = LogFeed(fleet, pod, session, view)
            view.feed = self._feed
            view.append(self._feed.start())
        self._title()

    def stop(self) -> None:
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
            self._view.feed = None

    def on_unmount(self) -> None:
        self.stop()

    # -- follow and search -------------------------------------------------------------

    def toggle_follow(self) -> None:
        self.view.toggle_follow()

    def open_search(self) -> None:
        box = self.query_one(".log-search", Input)
        box.display = True
        self.screen.set_focus(box)  # now, not after a refresh: keys typed right after `/` land here

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_search":
            return bool(self.query_one(".log-search").display)
        return True

    def action_close_search(self) -> None:
        box = self.query_one(".log-search", Input)
        box.value = ""
        box.display = False
        self.view.set_search("")
        self.screen.set_focus(None)

    @on(Input.Changed, ".log-search")
    def _search(self, event: Input.Changed) -> None:
        self.view.set_search(event.value)

    @on(Input.Submitted, ".log-search")
    def _older(self, _event: Input.Submitted) -> None:
        self.view.step_match(-1)

    @on(LogView.StatusChanged)
    def _title(self) -> None:
        view = self.view
        where = f"{self._pod} / {self.session}" if self.show_pod else self.session
        parts = [f"Log · {where}" if self.session else "Log · no session selected"]
        parts.append("following" if view.follow else f"paused ({view.unseen} new lines, f: follow)")
        if view.search:
            at, count = view.match_position
            parts.append(f"{count} matches" if not at else f"match {at}/{count}")
        self.border_title = " · ".join(parts)
