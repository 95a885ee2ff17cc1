"""A one-line bar for a fraction (GPU utilization, memory, training progress)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.renderables.bar import Bar
from textual.widget import Widget


class Meter(Widget):
    """`fraction` in 0..1, or None for unknown (drawn as a dotted line).

    Last known values (inside a GpuRow or SessionRow marked `-stale`: the pod is not
    online) are dimmed like the text beside them, never in the live accent colour: a
    rule in themes/pod.tcss, since this DEFAULT_CSS is scoped to the Meter itself."""

    COMPONENT_CLASSES = {"meter--fill", "meter--empty"}
    DEFAULT_CSS = """
    Meter { width: 10; height: 1; }
    Meter > .meter--fill { color: $primary; }
    Meter > .meter--empty { color: $foreground 15%; }
    Meter.-hot > .meter--fill { color: $error; }
    Meter.-warm > .meter--fill { color: $warning; }
    Meter.-done > .meter--fill { color: $success; }
    """

    fraction: reactive[float | None] = reactive(None)
    """How full the bar is, 0..1; None when unknown."""

    def render(self) -> Text | Bar:
        width = self.size.width
        empty = self.get_component_rich_style("meter--empty", partial=True)
        if self.fraction is None:
            return Text("·" * width, style=empty, end="")
        filled = max(0.0, min(1.0, self.fraction)) * width
        return Bar((0, filled), self.get_component_rich_style("meter--fill", partial=True), empty, width=width)
