"""The fleet screen's job lines (tui/job_rows.py): pure text, then drawn by the app.

The Pilot test uses the fixed-data Fleet stand-in (tests/support/fake_fleet.py), as the
layout tests do: what is checked is what the screen draws from a snapshot; the
readings themselves are tested against real pods in tests/test_jobs.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sessions.config.loader import parse_config
from sessions.snapshot import FleetSnapshot, PodSnapshot, SessionSnapshot
from tests.support.fake_fleet import StaticFleet, gpus, progress
from tui import job_rows
from tui.app import make_app


def _config(tmp_path: Path, jobs: bool = True):
    pods = [{"name": n, "host": f"10.0.0.{i}", "sessions": [{"name": "train", "command": "python train.py"}]}
            for i, n in enumerate(("a", "b", "c"))]
    doc = {"pods": pods, **({"jobs": [{"name": "pair", "pods": ["a", "b", "c"], "session": "train"}]} if jobs else {})}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), tmp_path / "config.yaml")


def _snapshot() -> FleetSnapshot:
    def pod(name: str, step: int, rate: float) -> PodSnapshot:
        return PodSnapshot(name=name, host=name, state="online", sampled_at=1.0, transport="agent",
                           gpu_status="ok", spend_usd=2.5, gpus=gpus(2, "NVIDIA A100", (50,), (90,)),
                           sessions=(SessionSnapshot("train", state="running", configured=True,
                                                     progress=progress(step, 5000, rate, 1.5 + step / 1e4)),))
    return FleetSnapshot((pod("a", 1200, 2.0), pod("b", 1100, 1.0), pod("c", 1210, 2.1)))


def test_job_line_and_its_straggler(tmp_path):
    text, flagged = job_rows.jobs_text(_config(tmp_path).jobs, _snapshot())
    assert flagged
    assert text.splitlines() == [
        "job pair  3/3 nodes · 6 GPUs · pace 1/s · skew 110 · loss 1.62 · ETA 1h05m · $7.50",
        "  straggler: rank 1 on b (2 GPUs)",
    ]


async def test_fleet_screen_draws_the_job_above_its_pods(tmp_path):
    for with_jobs in (True, False):
        fleet = StaticFleet(_snapshot())
        app = make_app(_config(tmp_path, with_jobs), fleet_factory=lambda _config, f=fleet: f,
                       state_file=tmp_path / "tui.json", ui_interval=0)
        async with app.run_test(size=(120, 30)) as pilot:
            for _ in range(100):
                await pilot.pause()
                if app.snapshot.pods:
                    break
            await pilot.pause()
            box = app.screen.query_one("#fleet-jobs")
            assert box.display is with_jobs
            if with_jobs:
                assert "job pair  3/3 nodes" in str(box.render()) and box.has_class("-findings")


async def test_J_opens_the_job_screen_with_every_node_side_by_side(tmp_path):
    from tui.screens.job_screen import JobScreen

    fleet = StaticFleet(_snapshot(), logs={("a", "train"): "step 1/5000 loss 2.0\nstep 2/5000 loss 1.9\n",
                                           ("b", "train"): " 10%|#    | 1/10\r 20%|##   | 2/10\n"})
    app = make_app(_config(tmp_path), fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json",
                   ui_interval=0)
    async with app.run_test(size=(160, 40)) as pilot:
        for _ in range(100):
            await pilot.pause()
            if app.snapshot.pods:
                break
        await pilot.press("J")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.job.name == "pair"
        ranks = str(screen.query_one("#job-ranks").render()).splitlines()
        assert ranks[1] == "rank 1  b  running  step 1100  1/s  loss 1.61  ETA 1h05m  ← straggler"
        panels = [screen.query_one(f"#job-gpus-{i}") for i in range(3)]
        assert [p.border_title for p in panels] == ["rank 0 · a", "rank 1 · b", "rank 2 · c"]
        await pilot.pause()
        assert all(len(p.query("GpuRow")) == 2 for p in panels)
        log = screen.query_one("#job-log")
        assert [log.render_line(y).text.rstrip() for y in range(3)] == [
            "[rank 0] step 1/5000 loss 2.0", "[rank 0] step 2/5000 loss 1.9", "[rank 1]  20%|##   | 2/10"]
        # A new line on rank 2 arrives through the Fleet's log listeners, prefixed.
        for listener in list(fleet.listeners[("c", "train")]):
            listener({"data": "step 7/5000 loss 1.5\n"})
        await pilot.pause()
        assert log.render_line(3).text.rstrip() == "[rank 2] step 7/5000 loss 1.5"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, JobScreen)
        assert not any(fleet.listeners[("a", "train")]), "the feed stops with the screen"
