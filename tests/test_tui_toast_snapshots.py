"""Toasts over the fleet screen as SVG snapshots: where they go and how long they are.

The fixed five-pod fleet of test_tui_snapshots.py, with the toasts a bad minute
brings: a lost connection (the SSH layer's reason says "connection lost" again), a
provider's three-line answer, and the policies' routine downloads with their long
local paths. At 80x24 they must leave every table row readable; at 160x48 too.
"""

from __future__ import annotations

import pytest

from tests.test_tui_snapshots import SIZES, app_for, ready

DOWNLOADED = ("downloaded checkpoints/checkpoint-1000 to /tmp/gpuctl-demo-m2uzahog/downloads/a100-west/train/"
              "checkpoints/checkpoint-1000 (sha256 verified, 4.2 GB in 31.0 s)")


async def bad_minute(pilot) -> None:
    app = pilot.app
    app.notify("Connection lost: connection lost: Connection lost. Retrying.", title="l40s-spot", severity="error",
               timeout=60)
    app.notify("Pod 'h100-box' is stopped.\nKept: the volume (2000G)\nGone: the GPUs and the container disk",
               title="h100-box", timeout=60)
    app.notify(DOWNLOADED, title="a100-west / train", routine=True, timeout=60,
               brief="✓ checkpoint-1000 downloaded and verified")
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES)
def test_toasts_over_the_fleet_leave_its_rows_readable(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready(after=bad_minute))
