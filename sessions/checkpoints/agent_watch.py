"""The agent's checkpoint watch, gpuctl's side: asking for it, and reading its reports.

Auto-download used to learn of a new checkpoint from a listing exec every
`checkpoint_interval_s` (60 s by default), so a spot pod preempted within that minute
lost its newest checkpoint. The agent already runs on the pod, so it watches each
session's checkpoint globs (stats only, `backends/pod_agent/checkpoints.py`) and runs
the listing when they changed and settled: a new complete checkpoint is reported within
seconds. There is still one listing: the agent is handed the very command
`listing.listing_command` builds for an exec, and its output comes back to the very
parser and judge (`parse_listing`, `judge`), so "complete", "writing", the globs and the
record format have one definition.
"""

from __future__ import annotations

from typing import Any

from sessions.checkpoints.listing import (
    FRESH_S,
    Checkpoint,
    UnsafeName,
    judge,
    listing_command,
    parse_listing,
    patterns_for,
)
from sessions.config.model import SessionConfig
from sessions.tmux.commands import pod_path

QUIET_MARGIN_S = 0.5
"""The agent lists once the globs' stats stood still this much longer than `FRESH_S`, so
a checkpoint whose writes stopped is judged complete by that one listing."""


def watch_command(session: SessionConfig) -> dict[str, Any] | None:
    """The agent's `checkpoints` command for a session; None when its globs are unsafe
    (config check refuses those; the periodic listing then says why)."""
    try:
        patterns = patterns_for(session)
    except UnsafeName:
        return None
    return {"cmd": "checkpoints", "id": session.name, "root": pod_path(session.workdir),
            "patterns": list(patterns), "command": listing_command(session.workdir, patterns),
            "quiet_s": FRESH_S + QUIET_MARGIN_S}


def read_report(message: dict[str, Any]) -> tuple[Checkpoint, ...] | None:
    """The checkpoints a `checkpoints` message reports, judged as an exec's listing
    with no wait (markers and "modified just now"); None when the listing failed or
    was cut short: never a shorter list."""
    listing = message.get("listing")
    if not isinstance(listing, str) or message.get("exit_status") != 0:
        return None
    try:
        parsed = parse_listing(listing)
    except ValueError:
        return None
    return tuple(judge(parsed))
