"""The events checkpoints make: one wording and one set of keys, whoever acted.

A verified download is told the same whether `gpuctl watch`'s auto-download or a
person (`d` in the TUI, through `Fleet.download`) fetched it, and a local copy that
`keep_local` deleted is told once it is gone from the index: the views that follow
the fleet's event stream (`sessions.events`: watch's lines, notify targets, toasts,
the checkpoint pane) then agree on what is downloaded without listing anything.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sessions.events import EventKind, WatchEvent

if TYPE_CHECKING:
    from sessions.checkpoints.download import DownloadResult
    from sessions.checkpoints.index import IndexEntry


def downloaded_event(result: DownloadResult, ts: float | None = None) -> WatchEvent:
    """`checkpoint_downloaded` for a download that moved or linked bytes and verified them."""
    c = result.checkpoint
    return WatchEvent(EventKind.CHECKPOINT_DOWNLOADED, result.pod,
                      f"downloaded {c.name} to {result.local_path} (sha256 verified, "
                      f"{result.size / 1e6:.1f} MB in {result.seconds:.1f} s)", result.session,
                      ts=time.time() if ts is None else ts,
                      extra={"checkpoint": c.path, "name": c.name, "step": c.step,
                             "local_path": str(result.local_path), "sha256": result.sha256,
                             "size": result.size, "verified": True})


def pruned_event(pod: str, session: str, entry: IndexEntry, keep: int, ts: float | None = None) -> WatchEvent:
    """`checkpoint_pruned` for a verified local copy `keep_local: keep` deleted."""
    name = entry.remote_path.rstrip("/").rsplit("/", 1)[-1]
    return WatchEvent(EventKind.CHECKPOINT_PRUNED, pod,
                      f"deleted the local copy of {name} at {entry.local_path} (keep_local: {keep})", session,
                      ts=time.time() if ts is None else ts,
                      extra={"checkpoint": entry.remote_path, "local_path": entry.local_path, "keep_local": keep})
