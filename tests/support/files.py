"""Checkpoint files on a test pod that look finished (pytest-free, for bench/ too).

gpuctl treats a file modified in the last seconds as still being written, so test
checkpoints are dated an hour back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

OLD = time.time() - 3600
"""An mtime old enough that no checkpoint counts as `writing`."""


def put(path: Path, data: bytes, mtime: float = OLD) -> Path:
    """Write `data` at `path` (parents made) with an old mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def age_tree(root: Path) -> None:
    """Date a folder and everything in it an hour back (links themselves, not targets)."""
    for p in [*root.rglob("*"), root]:
        os.utime(p, (OLD, OLD), follow_symlinks=False)
