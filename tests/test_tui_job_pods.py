"""The job row of the fleet table against three real sshd pods (issue 18, item 1).

The layout is pinned with fixed data in tests/test_tui_job_rows.py; here the TUI runs
on the real Fleet: three sshd pods (three tmux servers, the simulated nvidia-smi), a
stdlib trainer per rank launched in rank order by `sessions.jobs.actions.launch`, rank
1 slower. The job's row must show the three nodes online, their GPUs summed, the pace
of the slowest rank and the straggler by name, and unfold to the three nodes' rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.jobs import actions
from tests.support.pinning import trust
from tests.support.sshd import SshdServer
from tests.test_tui_pilot import until
from tui.app import make_app
from tui.widgets.fleet_table import FleetTable, job_key

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]

TRAINER = """\
import sys, time
rank = int(sys.argv[1])
for step in range(1, 100001):
    print("step %d/100000 loss %.4f" % (step, 2.0 / step ** 0.5), flush=True)
    time.sleep(0.3 if rank == 1 else 0.05)
"""


async def test_job_row_follows_three_real_pods_and_unfolds(sshd, sshd_fresh, tmp_path_factory, tmp_path):
    with SshdServer(env={"HOME": str(tmp_path_factory.mktemp("pod-home"))}) as third:
        servers = [sshd, sshd_fresh, third]
        for server in servers:
            trust(server)
            (Path(server.session_env["HOME"]) / "job_trainer.py").write_text(TRAINER)
        pods = [s.pod_entry(f"node{i}", sessions=[{"name": "jobrow", "command": "python3 -u job_trainer.py {rank}",
                                                   "workdir": s.session_env["HOME"]}])
                for i, s in enumerate(servers)]
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": pods, "jobs": [{"name": "llm", "pods": ["node0", "node1", "node2"],
                                                                "session": "jobrow"}]}, sort_keys=False))
        config = parse_config(path.read_text(), path)
        app = make_app(config, state_file=tmp_path / "tui.json")
        async with app.run_test(size=(160, 30)) as pilot:
            table = app.screen.query_one(FleetTable)
            row = job_key("llm")
            await until(pilot, lambda: row in table.rows and table.cell_texts(row)[1] == "3/3 nodes",
                        what="three nodes online in the job's row")
            assert table.rows == [row], "folded: the nodes are not rows of their own"
            launched = await actions.launch(config.jobs[0], config, app.fleet.borrow)
            try:
                assert [r.pod for r in launched] == ["node0", "node1", "node2"]
                await until(pilot, lambda: table.cell_texts(row)[4] == "straggler r1", timeout=60,
                            what="rank 1 named a straggler")
                texts = table.cell_texts(row)
                assert texts[0] == "▸ llm" and texts[2] == "6 GPUs"  # 2 simulated GPUs per pod
                assert texts[5].startswith("skew ") and texts[6].endswith("it/s")
                assert "straggler: rank 1 on node1 (2 GPUs)" in str(app.screen.query_one("#fleet-detail").render())
                await pilot.press("space")
                await until(pilot, lambda: table.rows == [row, "node0", "node1", "node2"], what="the nodes unfolded")
                assert [table.cell_texts(n)[:2] for n in ("node0", "node2")] == [[" ├ node0", "online"],
                                                                                  [" └ node2", "online"]]
                assert table.cell_texts("node1")[4].startswith("jobrow")
                # The job's pace is its slowest rank's rate, read from the same snapshot.
                await until(pilot, lambda: table.cell_texts(row)[6] == table.cell_texts("node1")[6] != "-",
                            what="the job's pace equal to rank 1's rate")
            finally:
                await actions.kill(config.jobs[0], app.fleet.borrow)
