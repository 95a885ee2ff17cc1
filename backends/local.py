"""The local backend: `host: local` follows the machine gpuctl itself runs on.

No SSH and no agent process: the agent's own collector runs in-process (in a worker
thread, since nvidia-smi and tmux are subprocesses), so a local pod's samples have
exactly the shape and the NVML-first behaviour of a remote one.
"""

from __future__ import annotations

import threading
import time

from backends.pod_agent.logs import FOLLOW_MAX_BYTES, FileProblem, Follow
from backends.pod_agent.protocol import make_error
from backends.pod_agent.sample import AgentState, collect_sample
from backends.pod_agent.trackers import TrackerWatch, check_tracker_watches


class LocalSampler:
    """Collects samples of this machine; safe to call from `asyncio.to_thread`."""

    def __init__(self, disk_path: str = "~"):
        self._state = AgentState(disk_path=disk_path)
        self._lock = threading.Lock()  # one sample at a time even if a tick overruns

    def sample(self) -> dict:
        """One protocol sample (see backends/pod_agent/sample.py)."""
        with self._lock:
            return collect_sample(self._state)

    def close(self) -> None:
        """Release NVML if it was opened."""
        self._state.close()


class LocalFollows:
    """The agent's log following, run in-process for `host: local`.

    Takes the same `follow` commands the monitor sends a remote agent and returns
    the same `log`/`error` messages, so the session book cannot tell the difference.
    Call from one thread at a time (the monitor's worker thread).
    """

    def __init__(self) -> None:
        self._follows: dict[str, Follow] = {}
        self._trackers: dict[str, TrackerWatch] = {}

    def start(self, command: dict) -> list[dict]:
        """Begin following per a `follow` command (or watching a session's tracker
        files per a `trackers` one); returns the first message."""
        if command.get("cmd") == "trackers":
            if not command["roots"]:
                self._trackers.pop(command["id"], None)
                return []
            watch = self._trackers[command["id"]] = TrackerWatch(command["id"], command["roots"])
            return check_tracker_watches([watch], time.monotonic())
        follow = Follow(command["id"], command["path"], command.get("max_bytes", FOLLOW_MAX_BYTES))
        try:
            first = follow.start(tail_lines=command.get("tail_lines", 0), from_offset=command.get("from_offset"))
        except FileProblem as exc:
            follow.close()
            return [make_error("follow: %s" % exc, command["id"])]
        old = self._follows.pop(follow.id, None)
        if old is not None:
            old.close()
        self._follows[follow.id] = follow
        return [first]

    def check(self) -> list[dict]:
        """Look at every followed file once; the messages for what changed."""
        messages: list[dict] = []
        for follow in list(self._follows.values()):
            try:
                messages.extend(follow.check())
            except (FileProblem, OSError) as exc:
                messages.append(make_error(str(exc), follow.id))
        messages.extend(check_tracker_watches(self._trackers.values(), time.monotonic()))
        return messages

    def close(self) -> None:
        for follow in self._follows.values():
            follow.close()
        self._follows.clear()
