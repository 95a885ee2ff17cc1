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
from tui import job_rows
from tui.commands.jobs_cmds import _row as cli_row
from tui.sessions_table import per_step_text


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
