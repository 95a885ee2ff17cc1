"""What the app has told the user: the history, and the short form a toast shows. Pure.

Every notification goes through `GpuctlApp.notify`, which records it here in full
(the history screen, `m`, lists them with time, pod and severity) and shows a toast
of at most two lines: paths shortened (`…/a100x4/sft/checkpoint-400`), lines
joined, the rest cut with an ellipsis. A toast that took ten lines at 80x24 hid half
the fleet table; the full text is never lost, it is one key away.

Routine notices (a download finished, a download started) are recorded the same way
but shown as one line, for a few seconds.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KEPT = 2000
"""Notices the history keeps (the oldest go first): an auto-download every 30 s is
still 16 hours of them, in a few hundred KB."""

PATH_PARTS = 3
"""Trailing components a shortened path keeps: pod, session, checkpoint in
`…/a100x4/sft/checkpoint-400`, the part that tells two downloads apart."""

LONG_PATH = 32
"""A path longer than this (after making it relative) is cut to its last parts."""

_ABSOLUTE = re.compile(r"(?<![\w.~/-])(?:~|/)/?[^\s'\"`,;()\[\]<>]*")
"""An absolute or home path in running text: up to whitespace, a quote or a bracket.
Names with spaces are cut at the space; the toast is a summary, the history has all."""


@dataclass(frozen=True)
class Notice:
    """One notification, as it was raised.

    Attributes:
        title: where it comes from: usually the pod (`a100x4`, `a100x4 / sft`), else
            what (`config`, `Read-only`).
        message: the full text, before any shortening.
        severity: Textual's `information`, `warning` or `error`.
        routine: news nobody needs to act on (shown as one quiet line).
        at: unix time it was raised.
    """

    title: str
    message: str
    severity: str = "information"
    routine: bool = False
    at: float = field(default_factory=time.time)

    @property
    def clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.at))


class NoticeLog:
    """The newest `KEPT` notices, oldest first; `version` counts additions (a screen
    showing the log redraws when it moved)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._notices: deque[Notice] = deque(maxlen=kept)
        self.version = 0

    def add(self, notice: Notice) -> Notice:
        self._notices.append(notice)
        self.version += 1
        return notice

    def __iter__(self) -> Iterator[Notice]:
        return iter(tuple(self._notices))

    def __len__(self) -> int:
        return len(self._notices)

    def newest_first(self) -> list[Notice]:
        return list(reversed(self._notices))


def shorten_path(path: str, start_dir: Path | None = None, home: str | None = None) -> str:
    """`path` as short as it can be told apart: relative to `start_dir` (where gpuctl
    was started, where downloads land) or `~`, then cut to its last `PATH_PARTS`
    components when still long."""
    if not path:
        return path
    trail = "/" if path.endswith("/") and len(path) > 1 else ""
    text = path.rstrip("/") or path
    home = home if home is not None else os.path.expanduser("~")
    if start_dir is not None and text.startswith("/"):
        base = str(start_dir).rstrip("/")
        if base and text.startswith(base + "/"):
            text = text[len(base) + 1:]
    if home and home != "/" and (text == home or text.startswith(home + "/")):
        text = "~" + text[len(home):]
    parts = text.split("/")
    if len(text) > LONG_PATH and len(parts) > PATH_PARTS + 1:
        text = "…/" + "/".join(parts[-PATH_PARTS:])
    return text + trail


def shorten_paths(text: str, start_dir: Path | None = None, home: str | None = None) -> str:
    """Every absolute or `~` path in `text` shortened by `shorten_path`."""
    return _ABSOLUTE.sub(lambda m: shorten_path(m.group(0), start_dir, home) if len(m.group(0)) > 1 else m.group(0),
                         text)


def tidy(text: str) -> str:
    """Drop a phrase said twice in a row ("Download failed: download failed: x").

    Messages are composed in layers (the TUI's verb, the operation's reason, the
    library's exception text), and each layer may start with the same words."""
    parts = text.split(": ")
    kept = [parts[0]]
    for part in parts[1:]:
        said = kept[-1].strip().rstrip(".")
        if said and part.casefold().startswith(said.casefold()) and not part[len(said):len(said) + 1].isalnum():
            kept[-1] = said + part[len(said):]  # "Connection lost: Connection lost. Retrying." -> one
        else:
            kept.append(part)
    return ": ".join(kept)


def one_line(text: str) -> str:
    """The lines of a message joined with ` · ` (a provider result is three lines)."""
    return " · ".join(line.strip() for line in text.splitlines() if line.strip())


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, at a word when one is near, with `…`."""
    if len(text) <= limit:
        return text
    cut = text[:max(1, limit - 1)]
    space = cut.rfind(" ")
    if space > limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:·") + "…"
