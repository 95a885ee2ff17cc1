"""A followed log as display rows: its newest lines, wrapped at the pane's width or not.

Pure, no Textual. `LogView` draws rows, not lines: with wrap on, one long line (a tqdm
bar with its counts, rate and ETA at the end) takes as many rows as it needs, so its end
is never cut off. Rows are kept as an index of (line, start, end) character ranges,
built once per line as it arrives and rebuilt only when the width or the wrap setting
changes, so drawing row N is a lookup, not a re-wrap of the buffer.

The unterminated last line (usually a live progress bar redrawn with `\\r`) is the
"tail": its rows follow the complete lines' and are replaced on every redraw.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from rich.cells import cell_len, get_character_cell_size

from tui.log_lines import fit_bar

MAX_LINES = 20_000

Row = tuple[int, int, int]
"""(absolute line number, start, end): character offsets into that line."""

TAIL = -1
"""The line number rows of the tail carry: it is not in `lines` yet."""


def wrap_ranges(line: str, width: int) -> list[tuple[int, int]]:
    """Where `line` breaks into rows of at most `width` cells; at least one row.

    Trailing blanks are not wrapped: tqdm pads each redraw to the previous one's length,
    which would otherwise end a bar with an empty row. Breaks fall at the width, not at
    spaces: a log line's columns (a bar, numbers) read best cut where they are.
    """
    end = len(line.rstrip())
    if width <= 0 or end <= width and line.isascii():
        return [(0, end)]
    if line.isascii():
        return [(start, min(end, start + width)) for start in range(0, end, width)] or [(0, 0)]
    ranges: list[tuple[int, int]] = []
    start, cells = 0, 0
    for index in range(end):
        size = get_character_cell_size(line[index])
        if cells + size > width and index > start:
            ranges.append((start, index))
            start, cells = index, 0
        cells += size
    ranges.append((start, end))
    return ranges


class LogRows:
    """Complete lines (with a tone each), the tail, and the rows they take."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.lines: deque[tuple[str, str]] = deque(maxlen=max_lines)
        self.first = 0
        """Absolute number of `lines[0]` (older lines were dropped)."""
        self.wrap = True
        self.width = 0
        """Wrap width in cells; 0 until the view knows its size (one row per line)."""
        self.widest = 0
        """Cells of the widest line seen (the virtual width when not wrapping)."""
        self.tail = ""
        self.tail_tone = ""
        self._rows: list[Row] = []
        self._head = 0  # rows before it belong to dropped lines; compacted now and then
        self._tail_rows: list[Row] = []

    def __len__(self) -> int:
        return len(self._rows) - self._head + len(self._tail_rows)

    @property
    def complete_rows(self) -> int:
        """Rows of complete lines: what comes after them (the tail) can change in place."""
        return len(self._rows) - self._head

    def clear(self) -> None:
        self.lines.clear()
        self.first = 0
        self.widest = 0
        self._rows, self._head = [], 0
        self.set_tail("", "")

    def add(self, lines: list[tuple[str, str]]) -> int:
        """Append complete (text, tone) lines; returns how many rows fell off the front."""
        if not lines:
            return 0
        maxlen = self.lines.maxlen or len(self.lines) + len(lines)
        dropped_lines = max(0, len(self.lines) + len(lines) - maxlen)
        number = self.first + len(self.lines)
        for text, tone in lines:
            self.lines.append((text, tone))
            self.widest = max(self.widest, cell_len(text))
            self._rows.extend((number, s, e) for s, e in self._ranges(text))
            number += 1
        self.first += dropped_lines
        return self._drop_rows_before(self.first)

    def set_tail(self, text: str, tone: str) -> None:
        self.tail, self.tail_tone = text, tone
        self._tail_rows = [(TAIL, s, e) for s, e in self._ranges(text)] if text else []
        if text:
            self.widest = max(self.widest, cell_len(text))

    def layout(self, width: int, wrap: bool) -> bool:
        """Re-wrap everything for a new width or wrap setting; True when rows changed."""
        width = max(0, width)
        if (width, wrap) == (self.width, self.wrap) or (not wrap and not self.wrap):
            self.width = width
            return False
        self.width, self.wrap = width, wrap
        rows: list[Row] = []
        for offset, (text, _tone) in enumerate(self.lines):
            number = self.first + offset
            rows.extend((number, s, e) for s, e in self._ranges(text))
        self._rows, self._head = rows, 0
        self.set_tail(self.tail, self.tail_tone)
        return True

    def row(self, index: int) -> tuple[int, str, str, int]:
        """(line number or TAIL, the row's text, tone, start offset in its shown line)."""
        number, start, end = self._row(index)
        text, tone = self.line_text(number)
        return number, self.shown(text)[start:end], tone, start

    def shown(self, text: str) -> str:
        """A line as drawn: wrapped, a tqdm bar is first narrowed to fit (`fit_bar`)."""
        return fit_bar(text, self.width) if self.wrap else text

    def line_of_row(self, index: int) -> int:
        """The absolute line number shown on row `index` (TAIL for the tail)."""
        return self._row(index)[0]

    def line_text(self, number: int) -> tuple[str, str]:
        """(text, tone) of a line by absolute number, or of the tail."""
        if number == TAIL:
            return self.tail, self.tail_tone
        return self.lines[number - self.first]

    def first_row_of(self, number: int) -> int:
        """The first row of absolute line `number` (the nearest one when it was dropped)."""
        index = bisect_right(self._rows, (number, -1, -1), lo=self._head)
        return max(0, index - self._head)

    def _row(self, index: int) -> Row:
        complete = len(self._rows) - self._head
        if index < complete:
            return self._rows[self._head + index]
        return self._tail_rows[index - complete]

    def _ranges(self, text: str) -> list[tuple[int, int]]:
        if not self.wrap:
            return [(0, len(text))]
        return wrap_ranges(self.shown(text), self.width)

    def _drop_rows_before(self, number: int) -> int:
        start = self._head
        head = bisect_right(self._rows, (number, -1, -1), lo=start)
        self._head = head
        if head > 4096 and head * 2 > len(self._rows):  # compact: dropped rows cost memory
            del self._rows[:head]
            self._head = 0
        return head - start
