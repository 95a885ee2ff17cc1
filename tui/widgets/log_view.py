"""A live log that never renders more than what is on screen, and repaints only what moved.

Lines live in `LogRows` (the newest `MAX_LINES`, as display rows: wrapped at the pane's
width by default, `z` toggles cropping with horizontal scroll); `render_line` draws only
visible rows, each from a small cache of rendered strips (toolong's approach), so a log
flood costs a split and a regex per line, not a repaint of the buffer.

Terminal output is the other cost (issue 16: 190-230 KB/s at 160x48 for a log at 10
lines/s). So appending never invalidates the whole view: the virtual size is set without
a layout pass, a follow step asks the terminal to scroll the pane's rows itself
(`band_scroll`) and repaints only the rows that came in, and lines arriving while paused
repaint nothing. When the terminal cannot be asked (tests, an overlay that moved, a
pending layout) a follow step repaints the view as before.

Follow mode keeps the newest row in view; scrolling up pauses it and counts the lines
that arrived meanwhile; End (or scrolling back to the bottom) follows again. Search
highlights every match and steps between them.
"""

from __future__ import annotations

from collections import OrderedDict

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from tui.log_lines import LineClassifier, LineSplitter
from tui.log_rows import MAX_LINES, TAIL, LogRows
from tui.messages import LogArrived
from tui.widgets.band_scroll import scroll_band
from tui.widgets.tones import TONE_CLASSES, ToneStyles

__all__ = ["MAX_LINES", "LogView"]

CACHE_LINES = 512


class LogView(ScrollView, can_focus=True):
    """Append text with `append`; a `LogFeed` posts `LogArrived` and is drained here."""

    COMPONENT_CLASSES = set(TONE_CLASSES)

    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view. Scrolling up turns it off, to the end turns it on."""

    class StatusChanged(Message):
        """Follow, unseen lines, wrap, position or search changed (for the title line)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feed = None  # a tui.log_feed.LogFeed, set by the screen
        self._rows = LogRows()
        self._splitter = LineSplitter()
        self._classifier = LineClassifier()
        self._cache: OrderedDict[tuple, Strip] = OrderedDict()
        self._tone = ToneStyles(self)
        self._quiet_scroll = False  # the terminal scrolled the rows: do not repaint them all
        self._unpainted: set[int] = set()  # view rows marked for a repaint not yet drawn
        self._behind = False  # lines arrived while the screen was not shown
        self.unseen = 0
        self.search = ""
        self._matches: list[int] = []
        self._current: int | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._restyle())
        self.screen.screen_layout_refresh_signal.subscribe(self, lambda _s: self._catch_up())

    def on_resize(self) -> None:
        top = self._top_line()
        if self._rows.layout(self._content_width(), self._rows.wrap):
            self._cache.clear()
            self._sync_virtual_size()
            self.refresh()  # the first frame at this size was drawn before the re-wrap
            if not self.follow and top is not None:
                self.scroll_to(y=self._rows.first_row_of(top), animate=False, immediate=True, force=True)
        if self.follow:  # text that arrived before the first layout had no height to scroll in
            self.scroll_end(animate=False, immediate=True)

    # -- content ---------------------------------------------------------------------

    @property
    def wrap(self) -> bool:
        return self._rows.wrap

    @property
    def line_count(self) -> int:
        """Display rows (a wrapped line counts each of its rows)."""
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()
        self._splitter = LineSplitter()
        self._classifier = LineClassifier()
        self.unseen = 0
        self._matches = []
        self._current = None
        self._cache.clear()
        self._sync_virtual_size()
        self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        self.refresh()

    def append(self, text: str) -> None:
        """Add streamed text (any chunking; `\\r` redraws; ANSI codes dropped)."""
        if not text:
            return
        rows = self._rows
        changed_from = rows.complete_rows  # the tail's rows may be redrawn in place
        lines = self._splitter.feed(text)
        tone = self._classifier.tone
        dropped = rows.add([(line, tone(line)) for line in lines])
        tail = self._splitter.tail
        rows.set_tail(tail, self._classifier.peek(tail) if tail else "")
        for key in [k for k in self._cache if k[0] == TAIL]:
            del self._cache[key]
        changed_from -= dropped
        if self.search and lines:
            start = rows.first + len(rows.lines) - len(lines)
            self._matches = [n for n in self._matches if n >= rows.first]
            self._matches += [start + i for i, line in enumerate(lines) if self.search in line.lower()]
        if not self.screen.is_active:
            # Under another screen (the pod screen's pane while the full-screen log is
            # open): Textual forwards a lower screen's repaints to the top one, so keep
            # still and catch up when this screen is shown again.
            self._behind = True
            self.unseen += 0 if self.follow else len(lines)
            return
        if self.follow:
            self._sync_virtual_size()
            self._follow_rows(changed_from)
        else:
            top = int(self.scroll_y) - dropped  # the rows on screen moved up by what fell off
            self._sync_virtual_size()
            if dropped:
                self._quiet_scroll = True
                try:
                    self.scroll_to(y=max(0, top), animate=False, immediate=True, force=True)
                finally:
                    self._quiet_scroll = False
                if top < 0:
                    self.refresh()
            self._repaint_from(changed_from - int(self.scroll_y))
            self.unseen += len(lines)
            if lines:
                self.post_message(self.StatusChanged())

    def on_log_arrived(self, _message: LogArrived) -> None:
        if self.feed is not None:
            for kind, text in self.feed.drain():
                if kind == "reset":
                    self.append(f"\n── {text} ──\n")
                else:
                    self.append(text)

    def _catch_up(self) -> None:
        """This screen is laid out again (shown): draw what arrived while it was not."""
        if self._behind and self.screen.is_active:
            self._behind = False
            self._sync_virtual_size()
            if self.follow:
                self.scroll_end(animate=False, immediate=True)
            self.refresh()
            self.post_message(self.StatusChanged())

    def set_wrap(self, wrap: bool) -> None:
        """Wrap long lines at the pane's width, or crop them and scroll sideways."""
        top = self._top_line()
        self._rows.layout(self._content_width(), wrap)
        self._cache.clear()
        self._sync_virtual_size()
        self.scroll_to(x=0, animate=False, immediate=True, force=True)
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        elif top is not None:
            self.scroll_to(y=self._rows.first_row_of(top), animate=False, immediate=True, force=True)
        self.refresh()
        self.post_message(self.StatusChanged())

    def _content_width(self) -> int:
        return self.scrollable_content_region.width

    def _top_line(self) -> int | None:
        if not len(self._rows):
            return None
        return self._rows.line_of_row(min(int(self.scroll_y), len(self._rows) - 1))

    def _sync_virtual_size(self) -> None:
        """The virtual size without a layout pass: the view's own size never depends on
        it, and a layout marks the whole view dirty (every row rewritten per line)."""
        width = self._content_width() if self.wrap else min(self._rows.widest, 4000) + 1
        size = Size(width, len(self._rows))
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._refresh_scrollbars()

    # -- repainting only what changed ----------------------------------------------------

    def _follow_rows(self, changed_from: int) -> None:
        """Show the newest rows: scroll the terminal's rows where it can, then paint only
        the rows that changed (`changed_from` on: the tail and what came after it)."""
        height = self.scrollable_content_region.height
        old_top = int(self.scroll_y)
        new_top = max(0, len(self._rows) - height)
        shift = new_top - old_top
        if shift < 0 or (shift and not scroll_band(self, shift)):
            self.scroll_to(y=new_top, animate=False, immediate=True, force=True)
            return
        if shift:
            self._quiet_scroll = True
            try:
                self.scroll_to(y=new_top, animate=False, immediate=True, force=True)
            finally:
                self._quiet_scroll = False
            # Rows marked but not drawn yet were moved up with the rest: still to draw.
            self._unpainted = {row - shift for row in self._unpainted if row - shift >= 0}
        first = min([changed_from - new_top, height - shift, *self._unpainted])
        self._repaint_from(first)

    def _repaint_from(self, row: int) -> None:
        """Repaint view rows from `row` to the bottom (nothing when below the view)."""
        height = self.size.height
        row = max(0, row)
        if row >= height:
            return
        self._unpainted.update(range(row, height))
        self.refresh(Region(0, row, self.size.width, height - row))

    def watch_scroll_y(self, old: float, new: float) -> None:
        if self._quiet_scroll:
            pass  # the terminal moved the rows; the caller repaints what is new
        else:
            super().watch_scroll_y(old, new)
        at_end = new >= self.max_scroll_y
        if not at_end and self.follow:
            self.follow = False
        elif at_end and not self.follow and not self.search and new > old:
            self.follow = True  # scrolled back down to the end: follow again
        elif round(old) != round(new) and not self.follow:
            self.post_message(self.StatusChanged())  # the title shows the position

    # -- follow -----------------------------------------------------------------------

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.unseen = 0
            self.scroll_end(animate=False, immediate=True)
        self.post_message(self.StatusChanged())

    def toggle_follow(self) -> None:
        self.follow = not self.follow
        if not self.follow and self.max_scroll_y > 0:
            # Pausing at the end would resume at once (at_end): step one line up.
            self.scroll_to(y=self.max_scroll_y - 1, animate=False, immediate=True)

    def jump_top(self) -> None:
        """The oldest line kept (pauses following)."""
        self.follow = False
        self.scroll_to(x=0, y=0, animate=False, immediate=True, force=True)

    def jump_end(self) -> None:
        """The newest line, and follow from there on."""
        self.scroll_to(x=0, animate=False, immediate=True, force=True)
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        self.follow = True

    def scroll_side(self, direction: int) -> None:
        """Scroll a cropped (no wrap) log sideways by half a pane: a column at a time
        would take dozens of presses to reach a tqdm bar's ETA."""
        if not self.wrap:
            step = max(1, self.size.width // 2)
            self.scroll_to(x=max(0, self.scroll_x + direction * step), animate=False, immediate=True, force=True)

    @property
    def position(self) -> tuple[int, int]:
        """(1-based number of the top line on screen among those kept, lines kept)."""
        top = self._top_line()
        rows = self._rows
        kept = len(rows.lines) + (1 if rows.tail else 0)
        if top is None:
            return (0, kept)
        return ((len(rows.lines) if top == TAIL else top - rows.first) + 1, kept)

    # -- search -----------------------------------------------------------------------

    def set_search(self, term: str) -> None:
        """Highlight `term` (case-insensitive) and show its newest match."""
        self.search = term.lower()
        self._cache.clear()
        rows = self._rows
        if not self.search:
            self._matches, self._current = [], None
        else:
            self._matches = [rows.first + i for i, (line, _) in enumerate(rows.lines) if self.search in line.lower()]
            self._current = self._matches[-1] if self._matches else None
            self._show_current()
        self.refresh()
        self.post_message(self.StatusChanged())

    def step_match(self, direction: int) -> None:
        """Go to the next older (-1) or newer (+1) match."""
        if not self._matches:
            return
        if self._current not in self._matches:
            self._current = self._matches[-1]
        else:
            i = self._matches.index(self._current) + direction
            self._current = self._matches[max(0, min(len(self._matches) - 1, i))]
        self._cache.clear()
        self._show_current()
        self.refresh()
        self.post_message(self.StatusChanged())

    @property
    def match_position(self) -> tuple[int, int]:
        """(1-based index of the current match, number of matches)."""
        if self._current is None or self._current not in self._matches:
            return (0, len(self._matches))
        return (self._matches.index(self._current) + 1, len(self._matches))

    def _show_current(self) -> None:
        if self._current is None:
            return
        row = self._rows.first_row_of(self._current)
        self.follow = False
        self.scroll_to(y=max(0, row - self.size.height // 2), animate=False, immediate=True, force=True)

    # -- drawing ----------------------------------------------------------------------

    def _restyle(self) -> None:
        self._tone.clear()
        self._cache.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        self._unpainted.discard(y)
        index = int(self.scroll_y) + y
        width = self.size.width
        base = self.rich_style
        if index >= len(self._rows):
            return Strip([Segment(" " * width, base)], width)
        number, text, tone, start = self._rows.row(index)
        strip = self._strip((number, start), text, tone, start, number)
        left = 0 if self.wrap else int(self.scroll_x)
        return strip.crop_extend(left, left + width, base)

    def _strip(self, key: tuple, text: str, tone: str, start: int, number: int) -> Strip:
        strip = self._cache.get(key)
        if strip is not None:
            self._cache.move_to_end(key)
            return strip
        rich_text = Text(text, end="", no_wrap=True)
        if tone:  # as a span: Text.render ignores a Text's own style when it has no spans
            rich_text.stylize(self._tone(tone))
        if self.search:
            # Matches are found in the whole line: one may cross this row's edges.
            line = self._rows.shown(self._rows.line_text(number)[0]).lower()
            style = self._tone("current" if number == self._current else "match")
            size = len(self.search)
            at = line.find(self.search, max(0, start - size + 1))
            while 0 <= at < start + len(text):
                rich_text.stylize(style, max(0, at - start), at - start + size)
                at = line.find(self.search, at + size)
        strip = Strip(rich_text.render(self.app.console), rich_text.cell_len).apply_style(self.rich_style)
        self._cache[key] = strip
        if len(self._cache) > CACHE_LINES:
            self._cache.popitem(last=False)
        return strip

    # -- keys of the focused view (the full-screen log) ---------------------------------

    def action_scroll_home(self) -> None:
        self.jump_top()

    def action_scroll_end(self) -> None:
        self.jump_end()

    def action_scroll_left(self) -> None:
        self.scroll_side(-1)

    def action_scroll_right(self) -> None:
        self.scroll_side(1)
