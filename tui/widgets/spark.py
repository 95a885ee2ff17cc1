"""A one-line sparkline of the newest points that fit, on a fixed or a data range.

Textual's `Sparkline` always scales to the data's own min..max, which makes 94-97 %
utilization look like wild swings; utilization and temperature need a fixed range,
a loss curve its own. One point per cell, newest at the right (a minute of 1 Hz
samples fills 60 cells), so the line scrolls left as it grows like `top`'s graphs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

BLOCKS = "▁▂▃▄▅▆▇█"


def spark_text(values: Sequence[float], width: int, low: float | None = None, high: float | None = None) -> str:
    """The newest `width` values as block characters, right-aligned."""
    points = list(values)[-width:] if width > 0 else []
    if not points:
        return ""
    lo = min(points) if low is None else low
    hi = max(points) if high is None else high
    span = hi - lo
    top = len(BLOCKS) - 1
    if span <= 0:
        chars = BLOCKS[top // 2] * len(points)
    else:
        chars = "".join(BLOCKS[max(0, min(top, round((v - lo) / span * top)))] for v in points)
    return chars.rjust(width)


class Spark(Widget):
    """Call `show(values)`; set `low`/`high` for a fixed range (None: the data's)."""

    COMPONENT_CLASSES = {"spark--line"}
    DEFAULT_CSS = """
    Spark { height: 1; width: 1fr; min-width: 4; }
    Spark > .spark--line { color: $primary; }
    Spark.-hot > .spark--line { color: $error; }
    """

    def __init__(self, *, low: float | None = None, high: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low = low
        self.high = high
        self._values: tuple[float, ...] = ()

    def show(self, values: Sequence[float]) -> None:
        values = tuple(values[-512:])
        if values != self._values:
            self._values = values
            self.refresh()

    def render(self) -> Text:
        style = self.get_component_rich_style("spark--line", partial=True)
        return Text(spark_text(self._values, self.size.width, self.low, self.high), style=style, end="")
