"""Process-tree helpers for stopping sshd the way a pod reboot does (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable


def _stat_tail(pid: int | str) -> bytes | None:
    """Fields after ``comm`` in /proc/PID/stat (``state ppid ...``), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may itself contain spaces and parentheses.
    return stat[stat.rfind(b")") + 2 :]


def descendants(root_pid: int) -> list[int]:
    """PIDs of every process below ``root_pid`` (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit() and (tail := _stat_tail(entry)) is not None:
            children.setdefault(int(tail.split()[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each PID, ignoring those that are gone or not ours."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie we cannot reap (not our child) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    tail = _stat_tail(pid)
    return tail is not None and tail[:1] != b"Z"


def end(child: "subprocess.Popen[bytes]") -> None:
    """A test's cleanup of a child it may have killed already: SIGKILL and reap it if it
    still runs (reaped once: a second `communicate` on closed pipes raises)."""
    if child.poll() is None:
        child.kill()
        child.communicate()
