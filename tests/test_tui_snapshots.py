"""Screens as SVG snapshots (pytest-textual-snapshot) at 80x24 and 160x48.

These test layout, so the data is fixed: a Fleet stand-in publishes one snapshot of
five pods in every state the screens draw (tests/support/fake_fleet.py). Every
behaviour is tested against real pods in test_tui_pilot.py. Update after a deliberate
change with `pytest tests/test_tui_snapshots.py --snapshot-update`, and look at the
SVGs before committing them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from sessions.checkpoints.listing import Checkpoint
from sessions.config.loader import parse_config
from tests.support.fake_fleet import DEMO_LOG, StaticFleet, demo_snapshot
from tui.app import make_app

GIB = 2**30
CHECKPOINTS = [
    Checkpoint("checkpoint-1200", "/workspace/checkpoint-1200", "dir", 1200, int(4.2 * GIB), 9990.0, "writing",
               files=6, listed_at=10000.0),
    Checkpoint("checkpoint-1000", "/workspace/checkpoint-1000", "dir", 1000, int(4.2 * GIB), 9000.0,
               files=6, listed_at=10000.0),
    Checkpoint("checkpoint-800", "/workspace/checkpoint-800", "dir", 800, int(4.2 * GIB), 8000.0,
               verified_local=True, files=6, listed_at=10000.0),
]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


def config(tmp_path, **top):
    pods = [{"name": p.name, "host": p.host.split("@")[1].split(":")[0]} for p in demo_snapshot().pods]
    pods[0]["sessions"] = [{"name": "train", "workdir": "/workspace", "command": "python train.py --bf16",
                            "log": "train.log"}, {"name": "eval", "command": "python eval.py"}]
    pods[0]["provider"] = {"type": "runpod", "id": "k3x9a1b2c3", "api_key_env": "GPUCTL_TEST_RUNPOD_KEY"}
    return parse_config(yaml.safe_dump({**top, "pods": pods}, sort_keys=False), tmp_path / "config.yaml")


@pytest.fixture(autouse=True)
def runpod_key(monkeypatch):
    """The teardown dialog builds the RunPod backend (never called) to say what is lost."""
    monkeypatch.setenv("GPUCTL_TEST_RUNPOD_KEY", "not-used")


@pytest.fixture(autouse=True)
def still_ages(monkeypatch):
    """Checkpoint ages count on each second on the pod screen: held still for the SVG."""
    from tui.screens.pod_screen import PodScreen

    monkeypatch.setattr(PodScreen, "clock", staticmethod(lambda: 0.0))


def app_for(tmp_path, **top):
    snapshot = demo_snapshot()
    fleet = StaticFleet(snapshot, logs={("a100-west", "train"): DEMO_LOG})
    app = make_app(config(tmp_path, **top), fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json",
                   ui_interval=0)

    async def listing(target):  # what the pod would list; the real listing runs in test_tui_pilot.py
        return CHECKPOINTS

    app.actions.list_checkpoints = listing
    # Five minutes of history, so the sparklines have a shape to draw.
    base = snapshot.pods[0]
    for t in range(60):
        util = [50 + (t * 7) % 50, 90 + (t % 10)]
        gpus = tuple(replace(g, util_pct=float(util[i])) for i, g in enumerate(base.gpus))
        train = base.sessions[0]
        p = replace(train.progress, step=600 + 10 * t, loss=2.5 - t / 40 + (t % 3) / 20)
        pod = replace(base, sampled_at=float(t), gpus=gpus, sessions=(replace(train, progress=p), base.sessions[1]))
        app.history.feed(replace(snapshot, pods=(pod, *snapshot.pods[1:])))
    return app


def ready(*keys: str, after=None):
    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(100):
            await pilot.pause()
            if app.fleet is not None and app.snapshot.pods[0].state == "online":
                break
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if after is not None:
            await after(pilot)
        for widget in app.screen.query("Input"):
            widget.cursor_blink = False
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_fleet_screen(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready())


@pytest.mark.parametrize("size", SIZES)
def test_pod_screen(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready("enter"))


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready("question_mark"))


@pytest.mark.parametrize("size", SIZES)
def test_kill_confirmation(snap_compare, tmp_path, size):
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready("enter", "k"))


@pytest.mark.parametrize("size", SIZES)
def test_teardown_confirmation_asks_for_the_pod_name(snap_compare, tmp_path, size, monkeypatch):
    async def unsafe(pod):  # the real guard would try to reach the example pod over SSH
        return False, "session train's newest checkpoint checkpoint-1200 has no verified local copy"

    # The TUI asks the Fleet for the guard (`Fleet.guard_for`, over the pod's link).
    monkeypatch.setattr(StaticFleet, "guard_for", lambda self, steps=None: unsafe, raising=False)

    async def typed_half(pilot) -> None:
        for _ in range(50):
            await pilot.pause()
            if pilot.app.screen.query("#typed"):
                break
        await pilot.press(*"a100")

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=ready("T", after=typed_half))


@pytest.mark.parametrize("theme", ["gpuctl-light", "gpuctl-high-contrast"])
def test_fleet_screen_in_other_themes(snap_compare, tmp_path, theme):
    assert snap_compare(app_for(tmp_path, theme=theme), terminal_size=(80, 24), run_before=ready())


def test_read_only_fleet_screen(snap_compare, tmp_path):
    assert snap_compare(app_for(tmp_path, read_only=True), terminal_size=(80, 24), run_before=ready())
