"""A job as one row of the fleet table (tui/job_rows.py), its nodes folded under it.

These tests use the fixed-data Fleet stand-in (tests/support/fake_fleet.py), as the
layout tests do: what is checked is what the screen draws from a snapshot (the SVG
snapshots at 80x24 and 160x48 need fixed data); the readings themselves are tested
against real pods in tests/test_jobs.py, and the row against three real sshd pods in
tests/test_tui_job_pods.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.jobs.summary import summarize
from sessions.snapshot import FleetSnapshot, PodSnapshot, SessionSnapshot
from tests.support.fake_fleet import StaticFleet, gpus, progress
from tui import job_rows
from tui.app import make_app
from tui.widgets.fleet_table import FleetTable, job_key


def _config(tmp_path: Path, jobs: bool = True):
    pods = [{"name": n, "host": f"10.0.0.{i}", "sessions": [{"name": "train", "command": "python train.py"}]}
            for i, n in enumerate(("a", "b", "c", "solo"))]
    doc = {"pods": pods, **({"jobs": [{"name": "pair", "pods": ["a", "b", "c"], "session": "train"}]} if jobs else {})}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), tmp_path / "config.yaml")


def _snapshot() -> FleetSnapshot:
    def pod(name: str, step: int, rate: float) -> PodSnapshot:
        return PodSnapshot(name=name, host=name, state="online", sampled_at=1.0, transport="agent",
                           gpu_status="ok", spend_usd=2.5, gpus=gpus(2, "NVIDIA A100", (50,), (90,)),
                           sessions=(SessionSnapshot("train", state="running", configured=True,
                                                     progress=progress(step, 5000, rate, 1.5 + step / 1e4)),))
    return FleetSnapshot((pod("solo", 400, 3.0), pod("a", 1200, 2.0), pod("b", 1100, 1.0), pod("c", 1210, 2.1)))


def test_job_line_and_its_straggler(tmp_path):
    s = summarize(_config(tmp_path).jobs[0], _snapshot())
    assert job_rows.job_line(s) == "job pair  3/3 nodes · 6 GPUs · pace 1.00 it/s · skew 110 · loss 1.62 · ETA 1h05m · $7.50"
    assert job_rows.finding_line(s) == "  straggler: rank 1 on b (2 GPUs)"
    assert job_rows.detail_text(s) == ("straggler: rank 1 on b (2 GPUs)", "reconnecting")


def test_job_row_cells():
    job = _config(tmp_path=Path("/nonexistent")).jobs[0]
    cells = job_rows.job_cells(summarize(job, _snapshot()), _snapshot().pods[1:], expanded=False)
    texts = {k: "".join(t for t, _ in v) for k, v in cells.items()}
    assert texts == {"pod": "▸ pair", "state": "3/3 nodes", "gpus": "6 GPUs", "mem": "", "session": "straggler r1",
                     "step": "skew 110", "rate": "1.00 it/s", "loss": "1.62", "eta": "1h05m", "price": "-",
                     "spent": "$7.50"}
    assert cells["session"][0][1] == "stalled", "a finding is drawn in the warning tone"
    assert job_rows.job_cells(summarize(job, _snapshot()), (), expanded=True)["pod"][0][0] == job_rows.EXPANDED


def _app(tmp_path, jobs: bool = True):
    fleet = StaticFleet(_snapshot())
    return make_app(_config(tmp_path, jobs), fleet_factory=lambda _config, f=fleet: f,
                    state_file=tmp_path / "tui.json", ui_interval=0)


async def _ready(pilot) -> None:
    for _ in range(100):
        await pilot.pause()
        if pilot.app.snapshot.pods:
            break
    await pilot.pause()


async def test_the_job_is_one_row_that_unfolds_to_its_nodes(tmp_path):
    from tui.screens.job_screen import JobScreen

    app = _app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await _ready(pilot)
        table = app.screen.query_one(FleetTable)
        assert table.rows == [job_key("pair"), "solo"], "folded: the job's pods are not rows of their own"
        assert table.cell_texts(job_key("pair"))[:3] == ["▸ pair", "3/3 nodes", "6 GPUs"]
        assert table.selected_job == "pair" and table.selected_pod is None
        assert "straggler: rank 1 on b (2 GPUs)" in str(app.screen.query_one("#fleet-detail").render())
        await pilot.press("space")
        await pilot.pause()
        assert table.rows == [job_key("pair"), "a", "b", "c", "solo"], "the nodes in rank order, under the job"
        assert [table.cell_texts(n)[0] for n in ("a", "b", "c")] == [" ├ a", " ├ b", " └ c"]
        assert table.cell_texts(job_key("pair"))[0] == "▾ pair" and table.selected_job == "pair"
        await pilot.press("down", "down")
        assert table.selected_pod == "b" and table.cell_texts("b")[1] == "online"
        await pilot.press("space")  # on a node: its job folds, the cursor back on the job
        await pilot.pause()
        assert table.rows == [job_key("pair"), "solo"] and table.selected_job == "pair"
        await pilot.press("slash", "b", "enter")  # a node matching the filter shows under its job
        await pilot.pause()
        assert table.rows == [job_key("pair")]
        await pilot.press("space")
        await pilot.pause()
        assert table.rows == [job_key("pair"), "b"]
        await pilot.press("escape")
        await pilot.pause()
        table.move_cursor(0)
        await pilot.press("enter")  # Enter on a job's row opens the job, as J does
        await pilot.pause()
        assert isinstance(app.screen, JobScreen) and app.screen.job.name == "pair"


async def test_without_jobs_the_table_is_pods_only(tmp_path):
    app = _app(tmp_path, jobs=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await _ready(pilot)
        table = app.screen.query_one(FleetTable)
        assert table.rows == ["solo", "a", "b", "c"] and table.cell_texts("a")[0] == "a"
        assert not app.screen.check_action("toggle_job", ())


def _fold(*keys: str):
    async def run_before(pilot) -> None:
        await _ready(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause(0.2)
    return run_before


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")])
@pytest.mark.parametrize("keys", [pytest.param((), id="collapsed"), pytest.param(("space", "down"), id="expanded")])
def test_fleet_screen_with_a_three_node_job(snap_compare, tmp_path, size, keys):
    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=_fold(*keys))


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
        assert ranks[1] == "rank 1  b  running  step 1100  1.00 it/s  loss 1.61  ETA 1h05m  ← straggler"
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
