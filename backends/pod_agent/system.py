"""Disk, load and uptime of the pod, from ``statvfs`` and ``/proc``: no exec.
"""

from __future__ import annotations

import os

from .values import _to_float


def parse_uptime(text: str):
    """First number of /proc/uptime (seconds since boot), or None."""
    fields = text.split()
    return _to_float(fields[0]) if fields else None


def read_disk(path):
    """Used and total bytes of the filesystem holding ``path`` (home if it is missing).

    The reported path is the one actually measured, so a fallback to home is visible.
    """
    for candidate in (path, os.path.expanduser("~")):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return {
            "path": candidate,
            "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "total_bytes": st.f_blocks * st.f_frsize,
        }
    return None


def read_load():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def read_uptime():
    try:
        with open("/proc/uptime") as handle:
            return parse_uptime(handle.read())
    except (OSError, ValueError):
        return None
