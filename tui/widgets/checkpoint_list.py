"""The selected session's checkpoints and what gpuctl has downloaded of them."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from tui.widgets.tones import TONE_CLASSES, ToneStyles


class CheckpointList(Static):
    """Shows `(text, tone)` lines; the screen builds them (`tui.actions.checkpoint_lines`)."""

    COMPONENT_CLASSES = set(TONE_CLASSES)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._tone = ToneStyles(self)
        self._lines: tuple[tuple[str, str], ...] = ()

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._restyle())

    def show(self, lines: Sequence[tuple[str, str]]) -> None:
        lines = tuple(lines)
        if lines != self._lines:
            self._lines = lines
            self._draw()

    def _draw(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, (line, tone) in enumerate(self._lines):
            if i:
                text.append("\n")
            text.append(line, style=self._tone(tone))
        self.update(text)

    def _restyle(self) -> None:
        self._tone.clear()
        self._draw()
