"""Tones: the few meanings colour carries (hot, stalled, offline...), as theme styles.

A widget that draws styled text inside one renderable (a table cell, a log line) cannot
put a CSS class on a span, so it declares the component classes `tone--<name>` and asks
for their style here; `themes/gpuctl.tcss` maps each to theme variables. Widgets that
are one value each (the temperature of a GPU) use the plain classes `-hot`, `-warm`...
"""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

TONES = ("online", "connecting", "reconnecting", "offline", "preempted", "stopped", "terminated", "stale", "hot", "warm", "stalled",
         "exited", "failed", "muted", "error", "warning", "match", "current", "ok", "running")
TONE_CLASSES = frozenset(f"tone--{tone}" for tone in TONES)


class ToneStyles:
    """Caches `tone -> rich Style` for one widget until the theme changes."""

    def __init__(self, widget: Widget) -> None:
        self._widget = widget
        self._cache: dict[str, Style] = {}

    def __call__(self, tone: str) -> Style:
        if not tone:
            return Style()
        style = self._cache.get(tone)
        if style is None:
            style = self._cache[tone] = component_style(self._widget, f"tone--{tone}")
        return style

    def clear(self) -> None:
        self._cache.clear()


def component_style(widget: Widget, name: str) -> Style:
    """A component class's style for text drawn inside one renderable, with its
    translucent or `auto` colours blended over the widget's background, as Textual does
    for a widget's own text. A partial rich style carries `$text-muted` (auto 60%) and
    `$text-disabled` as opaque white, so a dimmed value came out brighter than live text
    (and `$log-match`, 35%, as a solid block)."""
    style = widget.get_component_rich_style(name, partial=True)
    styles = widget.get_component_styles(name)
    under = widget.background_colors[1]
    blended: dict[str, object] = {}
    if styles.has_rule("background") and styles.background.a < 1:
        under = under + styles.background
        blended["bgcolor"] = under.rich_color
    if styles.has_rule("color"):
        auto = styles.has_rule("auto_color") and styles.auto_color
        color = under.get_contrast_text(styles.color.a) if auto else styles.color
        if auto or color.a < 1:
            blended["color"] = (under + color).rich_color
    return style + Style(**blended) if blended else style  # type: ignore[arg-type]
