"""Checkpoint downloads the TUI started, and the checkpoint list's lines: pure data.

The action worker (`tui.actions`) replaces a session's `DownloadState` as progress
arrives; the pod screen draws `checkpoint_lines` from the latest listing and these
states. No Textual, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui import humanize
from tui.notices import shorten_path

RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass(frozen=True)
class DownloadState:
    """One download of a session's checkpoint.

    Attributes:
        state: RUNNING, DONE or FAILED.
        name: the checkpoint's name, once known (None while it is being picked).
        done, total: bytes (done includes what an interrupted run had already).
        message: for DONE the local path, for FAILED why.
        started: `time.monotonic()` at the start, for the rate.
    """

    pod: str
    session: str
    state: str = RUNNING
    name: str | None = None
    done: int = 0
    total: int = 0
    message: str = ""
    started: float = 0.0

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    def progress_text(self, now: float | None = None) -> str:
        """'1.0G/2.3G 45% 296M/s'."""
        if not self.total:
            return "starting"
        pct = f"{100 * self.done / self.total:.0f}%"
        elapsed = (now if now is not None else time.monotonic()) - self.started
        rate = f" {humanize.rate(self.done / elapsed)}" if elapsed > 0.5 and self.done else ""
        return f"{humanize.size(self.done)}/{humanize.size(self.total)} {pct}{rate}"


def checkpoint_lines(listing: Sequence[Any] | None, download: DownloadState | None, *, error: str | None = None,
                     limit: int = 8, globs: Sequence[str] = (), since: float = 0.0) -> list[tuple[str, str]]:
    """(text, tone) lines: the download in progress or its outcome, then the
    checkpoints newest first, each with step, size, age, state and local copy.
    `globs`: the session's configured `checkpoints:`, named while none matches yet
    (a run that has not saved yet is the usual case, not a config problem).
    `since`: seconds since the listing, added to each age (taken at the listing's
    time, on the pod's clock), so ages keep counting between listings."""
    lines: list[tuple[str, str]] = []
    if download is not None:
        what = download.name or "the newest checkpoint"
        if download.state == RUNNING:
            lines.append((f"↓ downloading {what}: {download.progress_text()}", "running"))
        elif download.state == DONE:
            where = shorten_path(download.message, Path.cwd())  # downloads land under the start dir
            lines.append((f"✓ downloaded {what} to {where} (verified)", "ok"))
        else:
            lines.append((f"✗ download of {what} failed: {download.message}", "error"))
    if error:
        lines.append((error, "warning"))
    elif listing is None:
        lines.append(("listing checkpoints…", "muted"))
    elif not listing and globs:
        lines.append((f"No checkpoint yet (looking for {', '.join(globs)}).", "muted"))
    elif not listing:
        lines.append(("No checkpoints found (set the session's `checkpoints:` globs, relative to its workdir).",
                      "muted"))
    shown = list(listing or ())[:limit]
    width = min(28, max((len(c.name) + (c.kind == "dir") for c in shown), default=0))
    for c in shown:
        name = c.name + ("/" if c.kind == "dir" else "")
        step = f"step {c.step}" if c.step is not None else "no step"
        age_s = getattr(c, "age_s", None)
        age = humanize.duration(age_s + max(0.0, since)) + " ago" if age_s is not None else ""
        if download is not None and download.state == RUNNING and download.name == c.name:
            local, tone = f"downloading {download.progress_text()}", "running"
        elif c.verified_local:
            local, tone = "downloaded, verified", "ok"
        elif not c.complete:
            local, tone = "being written", "warning"
        else:
            local, tone = "not downloaded", ""
        lines.append((f"{name:<{width}}  {step:>10}  {humanize.size(c.size):>6}  {age:>10}  {local}", tone))
    return lines

