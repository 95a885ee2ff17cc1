"""May this pod be torn down? Only when its newest checkpoint has a verified local copy.

The real answer belongs to the checkpoints feature (`sessions.checkpoints`,
`sessions.checkpoint_index`: which checkpoint is newest on the pod, and whether a
download of it was verified by size and sha256). Until that lands, this guard cannot
check anything, so it refuses, and `--force` is the way through. The refusal says
so plainly rather than pretending a check happened.

To plug the real check in: make `guard` ask `sessions.checkpoints` for the pod's
newest checkpoint per session and `sessions.checkpoint_index` for a verified copy,
returning `(True, "step_1200.pt verified at ~/...")` or `(False, "step_1200.pt on
session train has no verified local copy")`. Callers (`gpuctl teardown`, the TUI's
`T`) already pass `guard` to `sessions.provider_ops.teardown`.
"""

from __future__ import annotations

from sessions.config import PodConfig

UNCHECKED = "cannot check its checkpoints (checkpoint tracking is not in this build)"


async def guard(pod: PodConfig) -> tuple[bool, str]:
    """(ok, description) for tearing down `pod`; see the module docstring."""
    return False, UNCHECKED
