"""Running the pod's tools (nvidia-smi, tmux): one exec with a timeout, lenient decoding,
and a cached PATH lookup. Each reader built on these returns plain data and never raises
for an expected failure.
"""

from __future__ import annotations

import shutil
import subprocess


#: A tool missing from PATH is looked for again this often (it may get installed).
WHICH_RECHECK_S = 30.0


def run_command(argv, timeout):
    """Run a tool, return ``(returncode, stdout, stderr)`` decoded leniently.

    Raises:
        subprocess.TimeoutExpired: the tool did not finish (it has been killed).
        OSError: the tool could not be started.
    """
    done = subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=timeout,
    )
    return done.returncode, _decode(done.stdout), _decode(done.stderr)


def _decode(data):
    """Tools print in the pod's locale; a stray byte must not cost the tick."""
    return data.decode("utf-8", "replace")


class ToolLocator:
    """Caches ``shutil.which(name)``; looks again for a missing tool only now and then.

    Scanning PATH every tick for 200 followed pods is waste; a tool that appears later
    (installed mid-run) is still found within ``recheck_s``.
    """

    def __init__(self, name, recheck_s=WHICH_RECHECK_S):
        self.name = name
        self.recheck_s = recheck_s
        self._path = None
        self._checked_at = None

    def get(self, now):
        """Return the tool's path or None, looking PATH up only when due."""
        due = self._checked_at is None or now - self._checked_at >= self.recheck_s
        if self._path is None and due:
            self._path = shutil.which(self.name)
            self._checked_at = now
        return self._path

    def forget(self, now):
        """The cached path stopped working: treat the tool as missing until rechecked."""
        self._path = None
        self._checked_at = now


def _quietly(fn):
    try:
        fn()
    except Exception:
        pass
