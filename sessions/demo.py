"""`gpuctl demo`'s entry point for the front end: the simulated pods, seen from `sessions`.

The demo's machinery (SSH servers, simulated GPUs, a RunPod stand-in) lives in
`backends.demo`, because it *is* the far side of gpuctl's connections. The CLI that
starts it may import only `sessions` (tests/test_architecture.py, the import-linter
contracts), so this module re-exports the few names `tui/commands/demo_cmd.py` needs,
unchanged: one definition each, and the front end depends on `sessions` alone.
Import it only from the demo command; it loads asyncssh's server side.
"""

from __future__ import annotations

from backends.demo.demo import MAX_PODS, Demo, DemoError, require_tmux
from backends.demo.gpu_sim import FAULTS
from backends.demo.thread import DemoThread

__all__ = ["FAULTS", "MAX_PODS", "Demo", "DemoError", "DemoThread", "require_tmux"]
