"""A live log that never renders more than what is on screen.

Lines live in a bounded deque (the newest `MAX_LINES`); `render_line` draws only the
visible rows, each from a small cache of rendered strips (toolong's approach), so a
log flood costs a split and a regex per line, not a repaint of the buffer. Follow mode
keeps the newest line in view; scrolling up pauses it and counts the lines that
arrived meanwhile. Search highlights every match and steps between them.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.log_lines import LineClassifier, LineSplitter
from tui.messages import LogArrived
from tui.widgets.tones import TONE_CLASSES, ToneStyles

MAX_LINES = 20_000
CACHE_LINES = 512


class LogView(ScrollView, can_focus=True):
    """Append text with `append`; a `LogFeed` posts `LogArrived` and is drained here."""

    COMPONENT_CLASSES = set(TONE_CLASSES)

    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view. Scrolling up turns it off, to the end turns it on."""

    class StatusChanged(Message):
        """Follow, unseen lines or search position changed (for the title line)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feed = None  # a tui.log_feed.LogFeed, set by the screen
        self._lines: deque[tuple[str, str]] = deque(maxlen=MAX_LINES)
        self._first = 0  # absolute number of _lines[0]
        self._splitter = LineSplitter()
        self._classifier = LineClassifier()
        self._width = 0
        self._cache: OrderedDict[tuple, Strip] = OrderedDict()
        self._tone = ToneStyles(self)
        self.unseen = 0
        self.search = ""
        self._matches: list[int] = []
        self._current: int | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._restyle())

    def on_resize(self) -> None:
        if self.follow:  # text that arrived before the first layout had no height to scroll in
            self.scroll_end(animate=False, immediate=True)

    # -- content ---------------------------------------------------------------------

    def clear(self) -> None:
        self._lines.clear()
        self._first = 0
        self._splitter = LineSplitter()
        self._classifier = LineClassifier()
        self._width = 0
        self.unseen = 0
        self._matches = []
        self._current = None
        self._cache.clear()
        self._resize()

    def append(self, text: str) -> None:
        """Add streamed text (any chunking; `\\r` redraws; ANSI codes dropped)."""
        if not text:
            return
        lines = self._splitter.feed(text)
        before = len(self._lines)
        dropped = max(0, before + len(lines) - MAX_LINES)
        tone = self._classifier.tone
        for line in lines:
            self._lines.append((line, tone(line)))
            if len(line) > self._width:
                self._width = len(line)
        self._first += dropped
        self._cache.pop(("partial",), None)
        if self.search:
            needle = self.search
            start = self._first + len(self._lines) - len(lines)
            self._matches = [n for n in self._matches if n >= self._first]
            self._matches += [start + i for i, line in enumerate(lines) if needle in line.lower()]
        self._resize()
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        else:
            self.unseen += len(lines)
            if dropped:
                self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
            self.post_message(self.StatusChanged())
        self.refresh()

    def on_log_arrived(self, _message: LogArrived) -> None:
        if self.feed is not None:
            for kind, text in self.feed.drain():
                if kind == "reset":
                    self.append(f"\n── {text} ──\n")
                else:
                    self.append(text)

    @property
    def line_count(self) -> int:
        return len(self._lines) + (1 if self._splitter.tail else 0)

    def _resize(self) -> None:
        self.virtual_size = Size(min(self._width, 4000) + 1, self.line_count)

    # -- follow -----------------------------------------------------------------------

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        at_end = new >= self.max_scroll_y
        if not at_end and self.follow:
            self.follow = False
        elif at_end and not self.follow and not self.search and new > old:
            self.follow = True  # scrolled back down to the end: follow again

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

    # -- search -----------------------------------------------------------------------

    def set_search(self, term: str) -> None:
        """Highlight `term` (case-insensitive) and show its newest match."""
        self.search = term.lower()
        self._cache.clear()
        if not self.search:
            self._matches, self._current = [], None
        else:
            self._matches = [self._first + i for i, (line, _) in enumerate(self._lines) if self.search in line.lower()]
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
        row = self._current - self._first
        self.follow = False
        self.scroll_to(y=max(0, row - self.size.height // 2), animate=False, immediate=True)

    # -- drawing ----------------------------------------------------------------------

    def _restyle(self) -> None:
        self._tone.clear()
        self._cache.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_y) + y
        width = self.size.width
        base = self.rich_style
        if index >= len(self._lines):
            tail = self._splitter.tail if index == len(self._lines) else ""
            if not tail:
                return Strip([Segment(" " * width, base)], width)
            strip = self._strip(("partial",), tail, self._classifier.peek(tail), False)
        else:
            number = self._first + index
            line, tone = self._lines[index]
            strip = self._strip((number,), line, tone, number == self._current)
        return strip.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, base)

    def _strip(self, key: tuple, line: str, tone: str, current: bool) -> Strip:
        strip = self._cache.get(key)
        if strip is not None:
            self._cache.move_to_end(key)
            return strip
        text = Text(line, end="", no_wrap=True)
        if tone:  # as a span: Text.render ignores a Text's own style when it has no spans
            text.stylize(self._tone(tone))
        if self.search and self.search in line.lower():
            lower = line.lower()
            style = self._tone("current" if current else "match")
            start = lower.find(self.search)
            while start >= 0:
                text.stylize(style, start, start + len(self.search))
                start = lower.find(self.search, start + len(self.search))
        strip = Strip(text.render(self.app.console), text.cell_len).apply_style(self.rich_style)
        self._cache[key] = strip
        if len(self._cache) > CACHE_LINES:
            self._cache.popitem(last=False)
        return strip
