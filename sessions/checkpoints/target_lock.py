"""One download per local target at a time, across gpuctl processes.

The TUI beside `gpuctl watch` on one config, or a person's `gpuctl download` while
watch auto-downloads, may want the same checkpoint in the same folder at once. Without
a rule both fetch it, the second trips over the first's locked `.part` and says
"auto-download failed: ... is being written by another download", then "works again".
So a download holds an advisory lock named after its target's real path for as long
as it works on it; a second one waits for it (polling, so it stays cancellable and
never blocks the event loop), then reads the index again and finds the copy the first
verified (`sessions.checkpoints.download` adopts it: nothing fetched twice, no alert).

The locks sit beside the index (`index.index_path()`'s folder), which is what the
processes must share to adopt each other's copies anyway; the download folder stays
free of gpuctl's bookkeeping files. A lock is released when its holder closes it or
dies (flock), so a crashed gpuctl never leaves a target locked.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from sessions.checkpoints import index

POLL_S = 0.2
"""How often a waiting download asks again (a short wait next to any checkpoint fetch)."""


def lock_path(target: Path) -> Path:
    """The lock file of a local target (its real path hashed: any name, any length)."""
    digest = hashlib.sha256(os.path.realpath(target).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return index.index_path().parent / "download-locks" / f"{digest}.lock"


@asynccontextmanager
async def hold(target: Path) -> AsyncIterator[bool]:
    """Hold the target's lock for the block; yields True when another download held it
    first (the caller then looks in the index before fetching anything)."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = True
                await asyncio.sleep(POLL_S)
        yield waited
    finally:
        os.close(fd)  # releases the flock
