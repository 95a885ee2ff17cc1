"""Scroll a widget's rows on the terminal itself, so a following log writes only its new rows.

Textual has no notion of scrolling the terminal: when a log view moves one line, every
row of it changes and the compositor writes them all, about 200 bytes a row at 160
columns, so a log at 10 lines/s in a 45-row pane costs ~100 KB/s of terminal output
(issue 16: the pod and log screens wrote 190-230 KB/s; over a jump host that is
2 Mbit/s). A terminal can do it for a few bytes: set the scroll margins to the pane's
rows (DECSTBM), scroll them up (SU), reset the margins. Then only the rows that are new
need painting.

This is only right when the rows moved are the widget's alone, so `scroll_band` checks,
and says no (the caller repaints the usual way) when:
  * the app is not drawing to a real terminal (headless tests, inline mode, a batch
    update or a suspend in progress), or the widget's screen is not the top one;
  * the compositor holds dirty regions in the band not yet painted: what is on the
    terminal there is not what Textual thinks it is;
  * the rows hold anything but the widget and its ancestors' blank padding across the
    whole terminal width (margins scroll whole rows: tmux has no left/right margins),
    or an ancestor draws a side border there.
Other widgets in the band (a toast drawn over the log) are allowed: the terminal moves
their cells too, so their cells, and the cells their copies moved to, are repainted.
A pending layout is allowed too (the pod screen lays out its GPU rows every second):
it repaints whatever it moves at its new place, and the old places of widgets in the
band are among the cells marked here, since the compositor's map is still the one the
terminal shows.
Textual caches a widget's rendered rows by position; after a terminal scroll those are
stale, so the widget's cache is dropped (nothing is repainted for that alone).

It reads a few private parts of Textual 8 (the compositor's map and dirty regions, the
the driver, a widget's row cache); any of them missing makes the answer "no", so a
Textual upgrade costs bytes, not a broken screen.
"""

from __future__ import annotations

from textual.geometry import Region
from textual.widget import Widget

NO_SIDE_BORDER = ("", "none", "hidden")


def scroll_band(widget: Widget, lines: int) -> bool:
    """Move the terminal rows of `widget`'s content up by `lines` if it is safe.

    Returns True when the terminal was told to scroll: the caller then repaints only
    the rows that came in at the bottom (and whatever else changed). Other widgets'
    cells in those rows are marked for repainting here.
    """
    content = widget.scrollable_content_region
    if lines <= 0 or lines >= content.height:
        return False
    try:
        app = widget.app
        screen = widget.screen
        driver = app._driver
        if (driver is None or app.is_headless or driver.is_inline or app._batch_count
                or screen is not app.screen):
            return False
        width = screen.size.width
        band = Region(0, content.y, width, content.height)
        compositor = screen._compositor
        if any(band.overlaps(region) for region in compositor._dirty_regions):
            return False
        ancestors = set(widget.ancestors_with_self)
        overlays: list[Region] = []
        for other, (region, clip) in compositor.visible_widgets.items():
            shown = region.intersection(clip)
            if not shown.overlaps(band):
                continue
            if other in ancestors:
                if other is not widget and not _blank_sides(other):
                    return False
                continue
            overlays.append(shown)
        # Save the cursor, margins to the band, scroll up, margins back, restore the cursor.
        driver.write(f"\x1b7\x1b[{band.y + 1};{band.bottom}r\x1b[{lines}S\x1b[r\x1b8")
        widget._styles_cache.clear()
    except (AttributeError, AssertionError, KeyError):
        return False
    # The terminal moved the overlays' cells up too: repaint where they are and where
    # their moved copies landed (the compositor draws every layer of a dirty region).
    parent = widget.parent if isinstance(widget.parent, Widget) else widget
    origin = parent.content_region.offset
    for shown in overlays:
        moved = Region(shown.x, shown.y - lines, shown.width, shown.height + lines).intersection(band)
        parent.refresh(moved.translate((-origin.x, -origin.y)))
    return True


def _blank_sides(widget: Widget) -> bool:
    """No border on the left or right: the widget's side columns are plain background."""
    styles = widget.styles
    return styles.border_left[0] in NO_SIDE_BORDER and styles.border_right[0] in NO_SIDE_BORDER

