"""Watching a session's tracker files (``TrackerWatch``): found under a session's workdir
by a bounded search (or at paths config names), and re-read only when a file's size or
mtime moved: a tick with nothing new costs one stat per chosen file. A ``trackers``
message goes out only when a reading changed.
"""

from __future__ import annotations

from .protocol import AGENT_PROTOCOL_VERSION, make_error
from .tfevents import TfeventsFile
from .tracker_base import TRACKER_CHECK_S, TRACKER_RESCAN_S
from .tracker_files import CsvFile, MlflowRun, TrackerFile
from .tracker_search import _mtime_ns, find_trackers
from .wandb import WandbRun


#: Sources in the order their figures are trusted when several agree on a step.
TRACKER_SOURCES = ("trainer_state", "tfevents", "mlflow", "csv", "wandb")


def _tracker_file(kind, path):
    if kind == "tfevents":
        return TfeventsFile(path)
    if kind == "mlflow":
        return MlflowRun(path)
    if kind == "wandb" and path.endswith(".wandb"):
        return WandbRun(path)
    if kind == "csv":
        return CsvFile(path)
    return TrackerFile(kind, path)


class TrackerWatch:
    """One session's tracker files: found, chosen (the newest of each kind), re-read
    when they change; ``check`` answers a ``trackers`` message only when a reading did.

    Args:
        watch_id: the session name (the message's ``id``).
        roots: directories to search and files to read (``~`` expands here, on the pod).
    """

    def __init__(self, watch_id, roots, rescan_s=TRACKER_RESCAN_S, every_s=TRACKER_CHECK_S):
        self.id = watch_id
        self.roots = list(roots)
        self.rescan_s = rescan_s
        self.every_s = every_s
        self.files = {}  # kind -> TrackerFile
        self.info = None
        self._dirs = {}  # the last search's folders -> mtime_ns
        self._next_scan = None
        self._next_check = None
        self._sent = None

    def _dirs_unchanged(self):
        """Whether no folder the last search listed gained or lost an entry since (one
        stat each): then searching again cannot find anything new."""
        if not self._dirs:
            return False
        for path, mtime in self._dirs.items():
            if _mtime_ns(path) != mtime:
                return False
        return True

    def scan(self):
        """Search again, unless no folder changed; True when the chosen files changed."""
        if self._dirs_unchanged():
            return False
        dirs = {}
        found, self.info = find_trackers(self.roots, dirs=dirs)
        self._dirs = dirs
        files = {}
        for kind, (path, _) in found.items():
            old = self.files.get(kind)
            files[kind] = old if old is not None and old.path == path else _tracker_file(kind, path)
        changed = set(files) != set(self.files) or any(files[k] is not self.files.get(k) for k in files)
        self.files = files
        return changed

    def readings(self):
        return [self.files[k].reading for k in TRACKER_SOURCES if k in self.files and self.files[k].reading]

    def check(self, now):
        """Look once (search again when due); the message to send, or None.

        The first message holds every reading; later ones only the readings that changed
        (a live events file changes every step: resending the other files' histories
        each tick would cost more than reading them), and ``current`` always names every
        source chosen, so one that vanished is dropped.
        """
        if self._next_check is not None and now < self._next_check:
            return None
        self._next_check = now + self.every_s
        if self._next_scan is None or now >= self._next_scan:
            self.scan()
            self._next_scan = now + self.rescan_s
        changed = [k for k in TRACKER_SOURCES if k in self.files and self.files[k].refresh()]
        current = [k for k in TRACKER_SOURCES if k in self.files and self.files[k].reading]
        if self._sent is not None and not changed and current == self._sent:
            return None
        fresh = self._sent is None
        readings = [self.files[k].reading for k in current if fresh or k in changed or k not in self._sent]
        self._sent = current
        return make_trackers(self.id, self.roots, readings, current, self.info)


def check_tracker_watches(watches, now):
    """Check each watch once; the messages to send. A bug costs that watch's look."""
    messages = []
    for watch in list(watches):
        try:
            message = watch.check(now)
        except Exception as exc:
            message = make_error("trackers failed: %s: %s" % (type(exc).__name__, exc), watch.id)
        if message is not None:
            messages.append(message)
    return messages


def make_trackers(watch_id, roots, readings, current, info):
    """A ``trackers`` message: ``trackers`` holds the readings new since the last one,
    ``current`` the sources whose readings stand (see ``TrackerWatch.check``)."""
    return {
        "kind": "trackers", "v": AGENT_PROTOCOL_VERSION, "id": watch_id, "roots": roots,
        "trackers": readings, "current": current, "search": info,
    }
