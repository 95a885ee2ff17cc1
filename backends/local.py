"""The local backend: `host: local` follows the machine gpuctl itself runs on.

No SSH and no agent process: the agent's own collector runs in-process (in a worker
thread, since nvidia-smi and tmux are subprocesses), so a local pod's samples have
exactly the shape and the NVML-first behaviour of a remote one.
"""

from __future__ import annotations

import threading

from backends.agent_script import AgentState, collect_sample


class LocalSampler:
    """Collects samples of this machine; safe to call from `asyncio.to_thread`."""

    def __init__(self, disk_path: str = "~"):
        self._state = AgentState(disk_path=disk_path)
        self._lock = threading.Lock()  # one sample at a time even if a tick overruns

    def sample(self) -> dict:
        """One protocol sample (see backends/agent_script.py)."""
        with self._lock:
            return collect_sample(self._state)

    def close(self) -> None:
        """Release NVML if it was opened."""
        self._state.close()
