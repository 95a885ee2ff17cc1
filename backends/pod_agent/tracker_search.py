"""Finding a session's tracker files: a bounded walk of its workdir (depth, entries, big
data folders skipped) that keeps the newest file of each kind and the folders it listed,
so the next search can be skipped while none of them changed.
"""

from __future__ import annotations

import os

from .tracker_base import MLFLOW_MAX_METRICS, tracker_kind

#: The search looks this many directories deep (``mlruns/<exp>/<run>/metrics`` is 4).
TRACKER_MAX_DEPTH = 5


#: Directory entries one search may look at; past it the search stops (``truncated``).
TRACKER_MAX_ENTRIES = 5000
#: A directory with more entries than this holds data (images, shards), not a run: skipped.
TRACKER_MAX_DIR_ENTRIES = 1000
#: Never descended into: version control, environments, caches, wandb's per-run
#: folders (``latest-run`` is read directly) and MLflow's artifacts.
TRACKER_SKIP_DIRS = frozenset((
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "env",
    "site-packages", "dist-packages", ".cache", ".ipynb_checkpoints", "artifacts",
))


def _natural(path):
    """A path's sort key with its numbers as numbers: checkpoint-100 after checkpoint-20."""
    key, number = [], ""
    for char in path:
        if char.isdigit():
            number += char
            continue
        if number:
            key.append((1, int(number), ""))
            number = ""
        key.append((0, 0, char))
    if number:
        key.append((1, int(number), ""))
    return key


def _newer(found, kind, path, mtime):
    """Keep the newest file of each kind; on equal mtimes (checkpoints saved within one
    second, a filesystem with coarse times), the higher-numbered path."""
    best = found.get(kind)
    if best is None or (mtime, _natural(path)) > (best[1], _natural(best[0])):
        found[kind] = (path, mtime)


def _mlflow_runs(folder, found, budget):
    """``mlruns/<experiment>/<run>/metrics``: the run whose metrics changed last."""
    for exp in _listdir_entries(folder, budget):
        if not _is_dir(exp) or exp.name in TRACKER_SKIP_DIRS or exp.name.startswith("."):
            continue
        for run in _listdir_entries(exp.path, budget):
            if not _is_dir(run):
                continue
            try:
                metrics = _listdir_entries(os.path.join(run.path, "metrics"), budget)
            except OSError:
                continue
            newest = None
            for metric in metrics[:MLFLOW_MAX_METRICS]:
                try:
                    mtime = metric.stat().st_mtime
                except OSError:
                    continue
                newest = mtime if newest is None else max(newest, mtime)
            if newest is not None:
                _newer(found, "mlflow", run.path, newest)


def _is_dir(entry):
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _listdir_entries(path, budget):
    """A directory's entries, counted against the search's budget; a huge one is skipped.
    Its mtime goes into ``budget["dirs"]``: the search's signature (see ``TrackerWatch``)."""
    entries = []
    dirs = budget.get("dirs")
    if dirs is not None:
        dirs[path] = os.stat(path).st_mtime_ns  # before listing: a change after it shows next time
    with os.scandir(path) as it:
        for entry in it:
            entries.append(entry)
            if len(entries) > TRACKER_MAX_DIR_ENTRIES:
                budget["skipped"] += 1
                return []
    budget["left"] -= len(entries)
    return entries


def _special_dir(name, path, found, budget):
    """W&B keeps one folder per run (only ``latest-run`` counts); MLflow has its layout."""
    try:
        if name == "wandb":
            latest = os.path.join(path, "latest-run")
            if budget.get("dirs") is not None:  # a new run moves the link; its file appears in latest
                budget["dirs"][path] = os.stat(path).st_mtime_ns
                budget["dirs"][latest] = os.stat(latest).st_mtime_ns
            runs = sorted(n for n in os.listdir(latest) if n.endswith(".wandb"))
            if runs:  # the run's own record log: history, and the only record of an offline run
                run = os.path.join(latest, runs[-1])
            else:
                run = os.path.join(latest, "files", "wandb-summary.json")
            _newer(found, "wandb", run, os.stat(run).st_mtime)
        else:
            _mlflow_runs(path, found, budget)
    except OSError:
        pass


def find_trackers(roots, max_depth=TRACKER_MAX_DEPTH, dirs=None):
    """The newest tracker file of each kind under ``roots`` (a bounded search).

    Args:
        dirs: filled with ``path -> mtime_ns`` of every folder listed (and each root),
            so a caller can tell later whether a new search could find anything new.

    Returns:
        ``(found, info)``: ``found`` maps a kind to ``(path, mtime)``; ``info`` says how
        many entries were looked at and whether the search stopped at its limit.
    """
    found = {}
    budget = {"left": TRACKER_MAX_ENTRIES, "skipped": 0, "dirs": dirs}
    stack = []
    for root in roots:
        root = os.path.expanduser(root)
        if dirs is not None:
            dirs[root] = _mtime_ns(root)
        if os.path.isdir(root):
            name = os.path.basename(os.path.normpath(root))
            if name == "mlruns" or (name == "wandb" and os.path.isdir(os.path.join(root, "latest-run"))):
                _special_dir(name, root, found, budget)
            else:
                stack.append((root, 0))
        else:
            kind = tracker_kind(root)
            try:
                mtime = os.stat(root).st_mtime
            except OSError:
                continue
            if kind:
                _newer(found, kind, root, mtime)
    truncated = False
    while stack:
        if budget["left"] <= 0:
            truncated = True
            break
        path, depth = stack.pop()
        try:
            entries = _listdir_entries(path, budget)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if _is_dir(entry):
                if name in TRACKER_SKIP_DIRS or depth + 1 > max_depth:
                    continue
                if name in ("wandb", "mlruns"):
                    _special_dir(name, entry.path, found, budget)
                    continue
                stack.append((entry.path, depth + 1))
                continue
            kind = tracker_kind(name)
            if kind is None or (kind == "csv" and name != "metrics.csv"):
                continue
            try:
                if entry.is_file():
                    _newer(found, kind, entry.path, entry.stat().st_mtime)
            except OSError:
                continue
    info = {"entries": TRACKER_MAX_ENTRIES - budget["left"], "truncated": truncated,
            "skipped_dirs": budget["skipped"]}
    return found, info


def _mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
