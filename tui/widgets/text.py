"""Updating a `Static` cheaply and safely."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


def set_text(widget: Static, text: str) -> None:
    """Show `text` as plain content (pod and session names are data, never markup),
    and skip the refresh when it did not change: most values are the same each tick."""
    if getattr(widget, "_gpuctl_text", None) != text:
        widget._gpuctl_text = text  # type: ignore[attr-defined]
        widget.update(Content(text))
