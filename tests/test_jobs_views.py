"""A job's figures as every view shows them: one wording for its pace, one rule for its
ETA while a rank is hung, a pace that only running ranks set, its row sorted among the
pods' by the active sort key, and the keys the key bar offers on its row (issue 18).

The summaries are read from snapshots built directly (what is checked is the reading
and its words, not how the Fleet gathers them: tests/test_jobs.py does that against
real pods); the fleet screen runs on the fixed-data Fleet stand-in, as the other
layout tests do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.jobs import summary
from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, PodState, SessionSnapshot, SessionState
from tests.support.fake_fleet import StaticFleet, gpus, progress
from tui import job_rows
from tui.app import make_app
from tui.commands.jobs_cmds import _row as cli_row
from tui.fleet_rows import SORT_ORDER
from tui.sessions_table import per_step_text
from tui.widgets.fleet_table import FleetTable, job_key
from tui.widgets.key_bar import KeyBar


def _job(n: int = 3):
    return parse_config(yaml.safe_dump({
        "pods": [{"name": f"n{i}", "host": f"h{i}", "sessions": [{"name": "train", "command": "run"}]}
                 for i in range(n)],
        "jobs": [{"name": "big", "pods": [f"n{i}" for i in range(n)], "session": "train"}]}), Path("c.yaml")).jobs[0]


def _pod(name: str, rate: float | None, *, step: int = 100, state: str = SessionState.RUNNING,
         pod_state: str = PodState.ONLINE, stalled: bool = False) -> PodSnapshot:
    p = Progress(step=step, total=1000, rate=rate, loss=1.0, eta_s=(1000 - step) / rate if rate else None)
    return PodSnapshot(name=name, host=name, state=pod_state, spend_usd=1.0,
                       gpus=tuple(GpuSample(index=i, name="H100") for i in range(8)),
                       sessions=(SessionSnapshot(name="train", state=state, progress=p, stalled=stalled),))


def _views(s: summary.JobSummary) -> dict[str, str]:
    """Each view's text of the job: the job line (TUI header and detail), the fleet row's
    RATE and ETA cells, `gpuctl jobs`' line."""
    from tui.screens.job_screen import rank_line

    cells = job_rows.job_cells(s, (), expanded=False)
    return {"line": job_rows.job_line(s), "rate": cells["rate"][0][0], "eta": cells["eta"][0][0],
            "cli": cli_row(s), "ranks": "\n".join(rank_line(r) for r in s.ranks)}


@pytest.mark.parametrize("rate", [2.31, 0.25])
def test_the_pace_is_worded_as_a_pods_rate_in_every_view(rate):
    s = summary.summarize(_job(2), FleetSnapshot(pods=(_pod("n0", rate), _pod("n1", rate))))
    words = per_step_text(rate)  # a pod's RATE cell: `2.31 it/s`, `4.00 s/it`
    views = _views(s)
    assert f"pace {words} ·" in views["line"]
    assert views["rate"] == words
    assert f"pace {words}," in views["cli"]
    assert views["ranks"].count(f"  {words}  ") == 2, views["ranks"]


def test_a_hung_rank_hides_the_eta_in_every_view():
    """The ranks still moving have ETAs, but the job finishes when the hung one comes
    back: no view may print a finish time for it (the CLI did, the TUI did not)."""
    pods = (_pod("n0", 2.0), _pod("n1", 2.0), _pod("n2", None, stalled=True))
    s = summary.summarize(_job(), FleetSnapshot(pods=pods))
    assert s.eta_s is None and s.to_json()["eta_s"] is None and s.pace == 0 and s.hung
    views = _views(s)
    assert "ETA" not in views["line"] and views["eta"] == "-" and "eta -," in views["cli"]
    assert views["rate"] == "0 it/s" and "pace 0 it/s" in views["cli"]
    moving = summary.summarize(_job(), FleetSnapshot(pods=pods[:2] + (_pod("n2", 2.0),)))
    assert moving.eta_s == 450.0 and "ETA 7m30s" in _views(moving)["line"] and "eta 7m30s," in _views(moving)["cli"]


@pytest.mark.parametrize("gone", [
    pytest.param(_pod("n1", 0.5, state=SessionState.EXITED), id="exited"),
    pytest.param(_pod("n1", 0.5, state=SessionState.UNKNOWN, pod_state=PodState.OFFLINE), id="unknown-stale"),
    pytest.param(_pod("n1", 0.5, state=SessionState.ABSENT), id="absent"),
])
def test_a_rank_not_running_sets_no_pace_and_is_named(gone):
    """Its last known rate (0.5/s, the lowest) is not the job's pace, nor its ETA the
    job's, nor is it a straggler: it is named as not running, with its session's state."""
    s = summary.summarize(_job(), FleetSnapshot(pods=(_pod("n0", 2.0), gone, _pod("n2", 2.5))))
    assert (s.pace, s.slowest_rank, s.eta_s) == (2.0, 0, 450.0)
    assert [(r.rank, r.flag) for r in s.findings] == [(1, summary.NOT_RUNNING)]
    state = s.ranks[1].session_state
    assert job_rows.finding_line(s) == f"  not running ({state}): rank 1 on n1 (8 GPUs)"
    cells = job_rows.job_cells(s, (), expanded=False)
    assert cells["session"][0][0] == f"{state} r1" and cells["rate"][0][0] == "2.00 it/s"
    assert job_rows.detail_text(s)[1] == "failed"


def test_a_job_whose_ranks_all_ended_names_none():
    """No rank runs: nothing to compare a rank with (a finished job is not a finding),
    and no pace; likewise a rank whose session is not seen yet (its pod connecting)."""
    ended = summary.summarize(_job(2), FleetSnapshot(pods=(_pod("n0", 2.0, state=SessionState.EXITED),
                                                           _pod("n1", 2.0, state=SessionState.EXITED))))
    assert ended.findings == () and ended.pace is None and ended.eta_s is None
    connecting = PodSnapshot(name="n1", host="n1", state=PodState.CONNECTING)
    s = summary.summarize(_job(2), FleetSnapshot(pods=(_pod("n0", 2.0), connecting)))
    assert s.findings == () and s.pace == 2.0


# -- the fleet screen -------------------------------------------------------------------

def _config(tmp_path: Path):
    pods = [{"name": n, "host": f"10.0.0.{i}", "sessions": [{"name": "train", "command": "python train.py"}]}
            for i, n in enumerate(("a", "b", "cheap", "dear"))]
    doc = {"pods": pods, "jobs": [{"name": "pair", "pods": ["a", "b"], "session": "train"}]}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), tmp_path / "config.yaml")


def _fleet() -> FleetSnapshot:
    """The job's nodes a and b: $2/h and $3/h (5 summed), GPUs at 40% and 60% (50 mean);
    `cheap` $4/h at 95%, `dear` $6/h at 10%: by $/h the job sorts between them, by
    utilization after `cheap` and before `dear`, by name first."""
    def pod(name: str, price: float, util: float) -> PodSnapshot:
        return PodSnapshot(name=name, host=name, state="online", sampled_at=1.0, transport="agent", gpu_status="ok",
                           price_per_hour=price, gpus=gpus(2, "NVIDIA A100", (50,), (util,)),
                           sessions=(SessionSnapshot("train", state="running", configured=True,
                                                     progress=progress(100, 5000, 2.0, 1.0)),))
    return FleetSnapshot((pod("a", 2.0, 40), pod("b", 3.0, 60), pod("cheap", 4.0, 95), pod("dear", 6.0, 10)))


async def _ready(app, pilot) -> None:
    for _ in range(100):
        await pilot.pause()
        if app.snapshot.pods:
            break
    await pilot.pause()


async def test_the_job_row_sorts_among_the_pods_by_its_own_value(tmp_path):
    fleet = StaticFleet(_fleet())
    app = make_app(_config(tmp_path), fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json",
                   ui_interval=0)
    job = job_key("pair")
    async with app.run_test(size=(160, 30)) as pilot:
        await _ready(app, pilot)
        table = app.screen.query_one(FleetTable)
        assert table.rows == [job, "cheap", "dear"], "config order: the jobs first"
        seen = {}
        for _ in SORT_ORDER:  # o cycles through every sort key back to config order
            await pilot.press("o")
            await pilot.pause()
            seen[table.sort_key] = table.rows
        assert seen["name"] == ["cheap", "dear", job]
        assert seen["util"] == ["cheap", job, "dear"], "the mean of the job's 4 GPUs: 50%"
        assert seen["price"] == ["dear", job, "cheap"], "the job's $/h summed: 5.00"
        assert table.cell_texts(job)[-2] == "5.00", "the cell shows the value it sorts by"
        assert table.sort_key == "config"
        for _ in range(SORT_ORDER.index("price")):
            await pilot.press("o")
        await pilot.press("O")
        await pilot.pause()
        assert table.rows == ["cheap", job, "dear"], "reversed"


async def test_the_key_bar_offers_the_job_keys_on_a_job_row(tmp_path):
    fleet = StaticFleet(_fleet())
    app = make_app(_config(tmp_path), fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json",
                   ui_interval=0)

    def keys() -> str:
        return str(app.screen.query_one(KeyBar).render())

    async with app.run_test(size=(200, 30)) as pilot:
        await _ready(app, pilot)
        table = app.screen.query_one(FleetTable)
        assert table.selected_job == "pair"
        bar = keys()
        assert "J Job" in bar and "space Nodes" in bar and "⏎ Open" in bar, bar
        assert not any(word in bar for word in ("Attach", "Launch", "Kill", "Teardown", "Log")), bar
        await pilot.press("space", "down")  # a node's row: its pod keys and its job's
        await pilot.pause()
        assert table.selected_pod == "a"
        bar = keys()
        assert "k Kill" in bar and "J Job" in bar and "space Nodes" in bar, bar
        await pilot.press("end")  # a pod in no job: no job keys
        await pilot.pause()
        assert table.selected_pod == "dear"
        bar = keys()
        assert "k Kill" in bar and "J Job" not in bar and "Nodes" not in bar, bar
