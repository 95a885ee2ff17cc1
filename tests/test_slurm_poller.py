"""The Fleet's Slurm poller (sessions/slurm/poller.py) beyond what the TUI test shows.

The job rows against the real cluster are in tests/test_tui_slurm_rows.py. Here: the
pace and ETA it derives from a job's steps across looks (the log printed no rate),
and a login node it cannot reach kept as words for the view, through a real Fleet link.
"""

from __future__ import annotations

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.progress.tracker import Progress
from sessions.slurm import commands as sc
from sessions.slurm.jobs import JobView

pytestmark = pytest.mark.usefixtures("isolated_home")


def _config(tmp_path, port: int):
    doc = {"pods": [{"name": "cluster", "host": "127.0.0.1", "port": port, "kind": "slurm",
                     "connect_timeout": 3}, {"name": "plain", "host": "127.0.0.1", "port": port}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return parse_config(path.read_text(), path)


def test_pace_and_eta_from_steps_across_looks(tmp_path, refused_port):
    fleet = Fleet(_config(tmp_path, refused_port), slurm_jobs=True)
    poller = fleet.slurm
    assert [p.name for p in poller.pods] == ["cluster"], "only kind: slurm pods are looked at"

    def look(step: int, state: str = "RUNNING") -> JobView:
        return JobView(sc.SlurmJob("7", state=state), Progress(step=step, total=1000))

    first = poller._paced("cluster", look(100), now=1000.0)
    assert first.progress.rate is None, "one look has no pace"
    second = poller._paced("cluster", look(160), now=1030.0)
    assert second.progress.rate == pytest.approx(2.0)
    assert second.progress.eta_s == pytest.approx((1000 - 160) / 2.0, rel=0.01)
    assert poller._paced("cluster", look(190, "PENDING"), now=1060.0).progress.rate is None
    assert ("cluster", "7") not in poller._clocks, "a job that stopped running starts a new pace"


async def test_an_unreachable_login_node_is_kept_in_words(tmp_path, refused_port):
    changed: list[str] = []
    fleet = Fleet(_config(tmp_path, refused_port), slurm_jobs=True)
    fleet.slurm._on_change = changed.append
    try:
        await fleet.slurm.poll(fleet.slurm.pods[0])
    finally:
        await fleet.stop()
    assert "refused" in fleet.slurm.errors["cluster"].lower() and changed == ["cluster"]
    assert fleet.slurm.views == {}
    assert Fleet(_config(tmp_path, refused_port)).slurm.pods == [], "off unless asked (status, watch)"
