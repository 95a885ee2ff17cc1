"""The selected session's checkpoints and what gpuctl has downloaded of them.

A Line API widget: the pod screen redraws the list every second so the ages count
("8s ago", "9s ago"...) between listings, and a `Static` would re-render and resend
the whole pane each time. Here a line is rendered again only when its text changed,
and only the cells that changed (the age column, as a rule) are marked for repaint,
so a tick sends a few bytes and nothing flickers.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.tones import TONE_CLASSES, ToneStyles


class CheckpointList(Widget):
    """Shows `(text, tone)` lines; the screen builds them (`tui.downloads.checkpoint_lines`)."""

    COMPONENT_CLASSES = set(TONE_CLASSES)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._tone = ToneStyles(self)
        self._lines: tuple[tuple[str, str], ...] = ()
        self._strips: dict[int, Strip] = {}

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._restyle())

    def show(self, lines: Sequence[tuple[str, str]]) -> None:
        lines = tuple(lines)
        if lines == self._lines:
            return
        old, self._lines = self._lines, lines
        if len(old) != len(lines):
            self._strips.clear()
            self.refresh(layout=True)  # the pane's height follows its lines
            return
        for y, (before, after) in enumerate(zip(old, lines)):
            if before != after:
                self._strips.pop(y, None)
                self.refresh(changed_cells(before, after, y, self.size.width))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self._lines))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if not 0 <= y < len(self._lines):
            return Strip([Segment(" " * width, base)], width)
        strip = self._strips.get(y)
        if strip is None or strip.cell_length != width:
            text, tone = self._lines[y]
            line = Text(text, style=base + self._tone(tone), no_wrap=True, end="")
            line.truncate(width, overflow="ellipsis")
            strip = self._strips[y] = Strip(list(line.render(self.app.console)), line.cell_len).crop_extend(
                0, width, base)
        return strip

    def render(self) -> Text:
        """The whole list as one Text (what it says; the screen draws `render_line`)."""
        return Text("\n".join(line for line, _tone in self._lines), end="")

    def _restyle(self) -> None:
        self._tone.clear()
        self._strips.clear()
        self.refresh()


def changed_cells(before: tuple[str, str], after: tuple[str, str], y: int, width: int) -> Region:
    """The cells of line `y` that differ between two of its versions: from the first
    changed character to the end of the longer one, or the whole line when the tone
    changed or a character is not one cell wide (the column count is then unsure)."""
    (old, old_tone), (new, new_tone) = before, after
    if old_tone != new_tone or not (old.isascii() and new.isascii()):
        return Region(0, y, width, 1)
    start = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    end = max(len(old), len(new))
    while end > start and end <= min(len(old), len(new)) and old[end - 1] == new[end - 1]:
        end -= 1
    return Region(start, y, max(1, end - start), 1)
