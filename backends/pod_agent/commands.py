"""The commands the agent accepts on stdin, one handler each, dispatched through
``COMMANDS``. A wrong argument is a ``CommandError``, answered with an error line.
"""

from __future__ import annotations

import math
import time

from .checkpoints import (
    CHECKPOINT_BUSY_S,
    CHECKPOINT_CHECK_S,
    CHECKPOINT_QUIET_S,
    MAX_CHECKPOINT_WATCHES,
    CheckpointWatch,
)
from .logs import FOLLOW_MAX_BYTES, FileProblem, Follow, MAX_FOLLOWS, MAX_FOLLOW_MAX_BYTES, MAX_TAIL_LINES, read_tail
from .protocol import AGENT_PROTOCOL_VERSION, make_error
from .tracker_base import MAX_TRACKER_WATCHES, TRACKER_CHECK_S
from .trackers import TrackerWatch, check_tracker_watches


class CommandError(Exception):
    """A command's arguments are wrong; the message goes back as an error line."""


def _number_arg(message, key, default=None):
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError("%s needs a number, got %r" % (key, value))
    return value


def _int_arg(message, key, default, low, high):
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError("%s must be a whole number from %d to %d, got %r" % (key, low, high, value))
    return value


def _str_arg(message, key):
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise CommandError("%s needs a non-empty string, got %r" % (key, value))
    return value


def _cmd_interval(agent, message):
    seconds = message.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        agent.emit(make_error("interval needs a number of seconds, got %r" % (seconds,)))
        return
    agent.set_interval(seconds)


def _cmd_sample(agent, message):
    agent.emit_sample(fresh=True)


def _cmd_follow(agent, message):
    """``{"cmd": "follow", "id", "path", "tail_lines"?, "from_offset"?, "max_bytes"?}``."""
    follow_id, path = _str_arg(message, "id"), _str_arg(message, "path")
    tail_lines = _int_arg(message, "tail_lines", 0, 0, MAX_TAIL_LINES)
    from_offset = message.get("from_offset")
    if from_offset is not None:
        from_offset = _int_arg(message, "from_offset", None, 0, 1 << 62)
    max_bytes = _int_arg(message, "max_bytes", FOLLOW_MAX_BYTES, 64, MAX_FOLLOW_MAX_BYTES)
    if follow_id not in agent.follows and len(agent.follows) >= MAX_FOLLOWS:
        raise CommandError("already following %d files; unfollow some first" % MAX_FOLLOWS)
    follow = Follow(follow_id, path, max_bytes)
    try:
        first = follow.start(tail_lines=tail_lines, from_offset=from_offset)
    except FileProblem as exc:
        follow.close()
        raise CommandError(str(exc)) from exc
    agent.add_follow(follow)
    agent.emit(first)


def _cmd_unfollow(agent, message):
    """``{"cmd": "unfollow", "id"}``: no more messages for that id."""
    follow = agent.follows.pop(_str_arg(message, "id"), None)
    if follow is None:
        raise CommandError("not following anything with id %r" % message["id"])
    follow.close()


def _cmd_follow_interval(agent, message):
    """``{"cmd": "follow_interval", "seconds"}``: how often followed files are looked at."""
    agent.set_follow_interval(_number_arg(message, "seconds"))


def _cmd_tail(agent, message):
    """``{"cmd": "tail", "id", "path", "lines", "max_bytes"?}``: one answer, never a crash."""
    tail_id, path = _str_arg(message, "id"), _str_arg(message, "path")
    lines = _int_arg(message, "lines", None, 0, MAX_TAIL_LINES)
    max_bytes = _int_arg(message, "max_bytes", FOLLOW_MAX_BYTES, 64, MAX_FOLLOW_MAX_BYTES)
    try:
        data, size = read_tail(path, lines, max_bytes)
        error = None
    except FileProblem as exc:
        data, size, error = "", None, str(exc)
    agent.emit({
        "kind": "tail", "v": AGENT_PROTOCOL_VERSION, "id": tail_id, "path": path,
        "data": data, "size": size, "error": error,
    })


def _cmd_trackers(agent, message):
    """``{"cmd": "trackers", "id", "roots"}``: watch a session's tracker files (checked
    each tick); no roots: stop."""
    watch_id = _str_arg(message, "id")
    roots = message.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise CommandError("roots needs a list of paths, got %r" % (roots,))
    if not roots:
        agent.trackers.pop(watch_id, None)
        return
    if watch_id not in agent.trackers and len(agent.trackers) >= MAX_TRACKER_WATCHES:
        raise CommandError("already watching %d sessions' trackers" % MAX_TRACKER_WATCHES)
    every = _number_arg(message, "every_s", TRACKER_CHECK_S)
    watch = agent.trackers[watch_id] = TrackerWatch(watch_id, roots, every_s=min(3600.0, max(0.0, every)))
    # Answer at once, not a tick later: a one-shot `gpuctl sessions` waits for this.
    for reply in check_tracker_watches([watch], time.monotonic()):
        agent.emit(reply)


def _cmd_checkpoints(agent, message):
    """``{"cmd": "checkpoints", "id", "root", "patterns", "command", "every_s"?, "quiet_s"?,
    "busy_s"?}``: watch a session's checkpoint globs and run ``command`` (gpuctl's
    listing) when they changed (see ``checkpoints``); no patterns: stop."""
    watch_id = _str_arg(message, "id")
    patterns = message.get("patterns")
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise CommandError("patterns needs a list of globs, got %r" % (patterns,))
    old = agent.checkpoints.pop(watch_id, None)
    if old is not None:
        old.close()
    if not patterns:
        return
    if len(agent.checkpoints) >= MAX_CHECKPOINT_WATCHES:
        raise CommandError("already watching %d sessions' checkpoints" % MAX_CHECKPOINT_WATCHES)
    root, command = _str_arg(message, "root"), _str_arg(message, "command")
    every, quiet, busy = (min(3600.0, max(0.0, _number_arg(message, key, default))) for key, default in (
        ("every_s", CHECKPOINT_CHECK_S), ("quiet_s", CHECKPOINT_QUIET_S), ("busy_s", CHECKPOINT_BUSY_S)))
    agent.checkpoints[watch_id] = CheckpointWatch(watch_id, root, patterns, command, every, quiet, busy)
    agent.check_checkpoints()  # the first listing starts now, not a tick later


#: Command name -> handler(agent, message). Later protocol additions register here.
COMMANDS = {
    "interval": _cmd_interval, "sample": _cmd_sample, "follow": _cmd_follow,
    "unfollow": _cmd_unfollow, "follow_interval": _cmd_follow_interval, "tail": _cmd_tail,
    "trackers": _cmd_trackers, "checkpoints": _cmd_checkpoints,
}
