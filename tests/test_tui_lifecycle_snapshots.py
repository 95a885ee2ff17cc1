"""Stale, stopped and preempted pods as SVG snapshots at 80x24 and 160x48 (issue 12).

The snapshot of tests/support/fake_fleet.py with three pods moved out of `online` by
the one function that decides a pod's state (`sessions.providers.lifecycle.settle`):
a100-west stopped by gpuctl, l40s-spot preempted by its provider, h100-box reconnecting.
Their last values arrived ten and a half minutes ago, so every age reads "10m" however
long the drawing takes. The behaviour behind them runs against real pods and provider
stand-ins in test_lifecycle_views.py. Update after a deliberate change with
`pytest tests/test_tui_lifecycle_snapshots.py --snapshot-update`, and look at the SVGs.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from backends.providers.base import InstanceInfo, InstanceState
from sessions.providers.lifecycle import OwnAction, settle
from sessions.providers.poller import ProviderView
from sessions.snapshot import FleetSnapshot
from tests.support.fake_fleet import StaticFleet, demo_snapshot
from tests.test_tui_snapshots import SIZES, config
from tui.app import make_app


def lifecycle_snapshot() -> FleetSnapshot:
    now = time.time()
    arrived = now - 630.0
    pods = {p.name: replace(p, received_at=arrived) for p in demo_snapshot().pods}
    pods["a100-west"] = settle(pods["a100-west"], None, OwnAction("stopped", now), None)
    spot = ProviderView(InstanceInfo("sp1", InstanceState.STOPPED, "EXITED", preempted=True), preempted=True,
                        polled_at=now)
    pods["l40s-spot"] = settle(replace(pods["l40s-spot"], state="offline"), spot, None, None)
    pods["h100-box"] = settle(replace(pods["h100-box"], state="reconnecting", error="no telemetry for 10s"), None, None)
    # as the Fleet works it out after settling: no cost to finish for a run nobody sees
    return FleetSnapshot(tuple(p if p.state == "online" else replace(p, projected_usd=None) for p in pods.values()))


def app_for(tmp_path):
    fleet = StaticFleet(lifecycle_snapshot())
    app = make_app(config(tmp_path), fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json",
                   ui_interval=0)

    async def listing(target):
        return []

    app.actions.list_checkpoints = listing
    return app


def settled():
    """Wait for the pods (the shared `ready` waits for an online first pod: here it is stopped)."""

    async def run_before(pilot) -> None:
        for _ in range(100):
            await pilot.pause()
            if pilot.app.fleet is not None and pilot.app.snapshot.pods:
                break
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_fleet_screen_with_stopped_preempted_and_stale_pods(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=settled())


@pytest.mark.parametrize("size", SIZES)
def test_pod_screen_of_a_stopped_pod(snap_compare, tmp_path, size):
    async def run_before(pilot) -> None:
        await settled()(pilot)
        await pilot.press("enter")
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=run_before)



@pytest.mark.parametrize("theme", ["gpuctl-dark", "gpuctl-light"])  # high contrast dims nothing, on purpose
async def test_a_stale_value_is_drawn_dimmer_than_a_live_one(tmp_path, theme):
    """`$text-muted` is a translucent `auto` colour: a table cell must blend it over the
    background as Textual does for a widget's text, not draw it opaque (white: brighter
    than live text on the dark theme, invisible on the light one, as the stale rows were)."""
    from rich.color import Color as RichColor

    from tests.test_tui_snapshots import app_for as themed_app
    from tui.widgets.fleet_table import FleetTable
    from tui.widgets.key_bar import KeyBar
    from tui.widgets.tones import component_style

    def distance(a: RichColor | None, b: tuple[int, int, int]) -> float:
        assert a is not None
        return sum(abs(x - y) for x, y in zip(a.get_truecolor(), b))

    app = themed_app(tmp_path, theme=theme)
    async with app.run_test(size=(160, 48)) as pilot:
        await settled()(pilot)
        assert app.theme == theme
        table = app.screen.query_one(FleetTable)
        under = table.background_colors[1].rgb
        live = distance(table.rich_style.color, under)
        for tone in ("stale", "stopped", "muted"):
            assert 0 < distance(table._tone(tone).color, under) < live, tone
        bar = app.screen.query_one(KeyBar)
        under = bar.background_colors[1].rgb
        off = distance(component_style(bar, "key-bar--disabled").color, under)
        assert 0 < off < distance(component_style(bar, "key-bar--description").color, under)


async def test_a_stopped_pods_checkpoint_pane_shows_its_verified_copies(tmp_path):
    """QA (issue 12, item 7): the pane said only 'Pod is stopped: checkpoints are listed
    when it is online.' though verified local copies were here: it shows them, from the
    index (reads no pod), with that note."""
    from sessions.checkpoints import index as checkpoint_index
    from tui.widgets.checkpoint_list import CheckpointList

    app = app_for(tmp_path)
    pod = config(tmp_path).pod("a100-west")
    copy = tmp_path / "step_400.pt"
    copy.write_bytes(b"weights")
    checkpoint_index.record(checkpoint_index.IndexEntry(
        host=checkpoint_index.host_identity(pod, config(tmp_path).defaults),
        remote_path="/workspace/out/step_400.pt", size=7, mtime=1.0e9, local_path=str(copy),
        sha256="ab" * 32, pod="a100-west", session="train", local_stamp=checkpoint_index.local_stamp(copy) or ""))
    async with app.run_test(size=(160, 48)) as pilot:
        await settled()(pilot)
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause(0.05)
            lines = [text for text, _tone in app.screen.query_one(CheckpointList)._lines]
            if len(lines) > 1:
                break
    assert lines[0] == "Pod is stopped; verified copies here (its list needs it online):"
    assert lines[1].startswith("out/step_400.pt") and "step 400" in lines[1]
    assert lines[1].endswith("downloaded, verified")


async def test_a_stale_pods_meters_are_dimmed_like_its_values(tmp_path):
    """QA (issue 12, item 8): the pod screen's GPU and session meters stayed in the live
    accent colour on a stopped pod. A stale row's meters are dimmed; a live pod's are not."""
    from tui.screens.pod_screen import PodScreen
    from tui.widgets.meter import Meter

    app = app_for(tmp_path)
    fills: dict[str, set] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await settled()(pilot)
        for pod in app.snapshot.pods:
            if not pod.gpus or pod.state not in ("online", "stopped"):
                continue
            await app.push_screen(PodScreen(pod.name))
            await pilot.pause(0.2)
            fills[pod.state] = {m.get_component_rich_style("meter--fill").color for m in app.screen.query(Meter)
                                if m.fraction}
            app.pop_screen()
            await pilot.pause(0.1)
    assert fills["online"] and fills["stopped"]
    assert not fills["online"] & fills["stopped"]  # no stale meter in a live colour
    assert len(fills["stopped"]) == 1  # GPUs and sessions alike, one dimmed colour
