"""The agent's wire format: the protocol version, error lines, and writing one JSON line.

Every message the agent sends goes through ``write_line`` (straight ``os.write``, no
buffer to lose at exit), and a reader gone away becomes ``ChannelClosed``, which ends the
agent: no orphan may outlive its SSH channel.
"""

from __future__ import annotations

import json
import os


AGENT_PROTOCOL_VERSION = 1


def make_error(message, command_id=None):
    """An error line; it carries the failed command's ``id`` when the command had one."""
    error = {"kind": "error", "v": AGENT_PROTOCOL_VERSION, "message": message}
    if command_id is not None:
        error["id"] = command_id
    return error


class ChannelClosed(Exception):
    """stdin reached EOF or stdout broke: the SSH channel is gone, so the agent stops."""


def write_line(fd, obj):
    """Write one JSON line straight to the fd (no buffer to flush at exit).

    Raises:
        ChannelClosed: the reader went away (BrokenPipe).
    """
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        while data:
            data = data[os.write(fd, data):]
    except (BrokenPipeError, ConnectionResetError):
        raise ChannelClosed() from None
