"""A `Notice` as the toast Textual shows: the pod in bold, then the short text.

Textual draws a notification's title on a line of its own; here the title leads the
text on the same line, so a toast is one or two lines in all (`tui.notices` cuts the
text to fit). Where toasts go is gpuctl.tcss: a band above the key line, taken out of
the screen's layout, so no toast covers a table row.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from textual.markup import escape
from textual.notifications import Notification

from tui.notices import Notice, clip, one_line, shorten_paths

ROUTINE_S = 4.0
"""Seconds a routine notice (a download done) shows: long enough to read one line,
short enough that the policies' downloads (one every 20-50 s in the demo) rarely
stack."""

WIDTH = 72
"""Cells a toast is wide at most (gpuctl.tcss `Toast { width }`); the border and the
padding take 3 of them."""

GRACE_S = 1.0
"""How long after its toast's own timer a notification leaves Textual's collection."""


class _Shown(Notification):
    """A notification that outlives its toast's timer by `GRACE_S`.

    Textual removes a notification from its collection once it is past its time, and
    its toast when that timer fires a few milliseconds later. A notification raised
    in between makes the toast rack drop the stale toast but keep the holder around
    it, one empty row each; in a band that the layout gives up (gpuctl.tcss) that row
    would be taken from the table for good. Expiring for the collection a moment
    later lets the toast's own timer remove toast and holder together."""

    @property
    def has_expired(self) -> bool:
        return self.time_left <= -GRACE_S


def toast(notice: Notice, *, screen_width: int, timeout: float, brief: str | None = None,
          start_dir: Path | None = None) -> Notification:
    """The notification for `notice`: one line when routine, else two at most.

    `brief` replaces the message in the toast (the history keeps the message);
    `start_dir` is where paths are told relative to."""
    width = max(20, min(WIDTH, screen_width or WIDTH) - 3)
    lead = f"{notice.title}  " if notice.title else ""
    text = lead + shorten_paths(one_line(brief or notice.message), start_dir)
    lines = wrap(text, 1 if notice.routine else 2, width)
    body = "\n".join(escape(line) for line in lines)
    if lead:
        body = f"[b]{escape(notice.title)}[/b]" + body[len(escape(notice.title)):]
    return _Shown(body, "", notice.severity, timeout, markup=True)  # type: ignore[arg-type]


def wrap(text: str, lines: int, width: int) -> list[str]:
    """`text` in at most `lines` lines of `width`, the last ending in `…` when cut.

    Wrapped here rather than by the toast, so the cut is visible: a toast's
    `max-height` would drop the third line without a sign."""
    wrapped = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(wrapped) <= lines:
        return wrapped
    rest = " ".join(wrapped[lines - 1:])
    return wrapped[:lines - 1] + [clip(rest, width)]
