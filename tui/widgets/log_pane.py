"""A session's live log with its title line and search box: the pod screen's log
panel and the full-screen log are both one of these. `LogKeys` holds the log keys'
actions for the screens that show one (their bindings are in `tui.bindings`)."""

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
        self._stale: str | None = None

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

    def set_stale(self, note: str | None) -> None:
        """`note` ('pod stopped: last lines') while the pod is not online, so the title
        does not say "following" over a log nothing can follow; None when it is."""
        if note != self._stale:
            self._stale = note
            self._title()

    @on(LogView.StatusChanged)
    def _title(self) -> None:
        self.border_title = log_title(self.view, self.session, self._pod if self.show_pod else None, self._stale)


def log_title(view: LogView, session: str | None, pod: str | None = None, stale: str | None = None) -> str:
    """'Log · pretrain · paused at line 120/5,000 (3 new lines, End: follow) · no wrap';
    `stale` replaces "following" while the pod is not online."""
    where = f"{pod} / {session}" if pod else session
    parts = [f"Log · {where}" if session else "Log · no session selected"]
    if view.follow and stale:
        parts.append(stale)
    elif view.follow:
        parts.append("following")
    else:
        at, kept = view.position
        new = f"{view.unseen:,} new line{'' if view.unseen == 1 else 's'}, " if view.unseen else ""
        parts.append(f"paused at line {at:,}/{kept:,} ({new}End: follow)")
    if not view.wrap:
        parts.append("no wrap")
    if view.search:
        at, count = view.match_position
        parts.append(f"{count} match{'' if count == 1 else 'es'}" if not at else f"match {at}/{count}")
    return " · ".join(parts)


class LogKeys:
    """The log keys' actions, for a screen with one `LogPane` (the pod screen, the log)."""

    def _log(self) -> LogPane:
        return self.query_one(LogPane)  # type: ignore[attr-defined]

    def action_search(self) -> None:
        self._log().open_search()

    def action_follow(self) -> None:
        self._log().toggle_follow()

    def action_wrap(self) -> None:
        view = self._log().view
        view.set_wrap(not view.wrap)

    def action_log_top(self) -> None:
        self._log().view.jump_top()

    def action_log_end(self) -> None:
        self._log().view.jump_end()

    def action_log_page(self, direction: int) -> None:
        view = self._log().view
        if direction < 0:
            view.scroll_page_up(animate=False)
        else:
            view.scroll_page_down(animate=False)

    def action_log_side(self, direction: int) -> None:
        self._log().view.scroll_side(direction)
