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
            style = self._cache[tone] = self._widget.get_component_rich_style(f"tone--{tone}", partial=True)
        return style

    def clear(self) -> None:
        self._cache.clear()
