"""A `kind: slurm` pod's jobs on the fleet screen, from a real single-host Slurm.

`slurm_cluster`/`slurm_login` (tests/conftest.py) are Debian's slurm-wlm and munge on
loopback behind an sshd login node. A real batch job prints training progress; the
TUI's Fleet looks at the cluster over the login node's link (sessions/slurm/poller.py)
and the job appears as a row under the login node's row with its Slurm id, state,
progress (a pace from its steps across looks) and name; `J` opens it (its node's GPUs
through `srun --overlap`, the end of its log), and its row goes when it is cancelled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from sessions.slurm import jobs
from tests.support.pinning import trust
from tests.test_slurm import _script
from tests.test_tui_pilot import until
from tui.app import make_app
from tui.screens.slurm_job_screen import SlurmJobScreen
from tui.widgets.fleet_table import FleetTable, slurm_key

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]


async def test_slurm_job_row_under_its_login_node(slurm_login, tmp_path):
    home = Path(slurm_login.session_env["HOME"])
    _script(home)
    trust(slurm_login)
    entry = slurm_login.pod_entry("cluster", kind="slurm", slurm={"script": "~/train.sbatch",
                                                                  "price_per_gpu_hour": 2.0})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}, sort_keys=False))
    config = parse_config(path.read_text(), path)
    pod = config.pods[0]
    async with open_transport(pod, config.defaults) as t:
        job_id = await jobs.launch(t, pod)
    try:
        app = make_app(config, state_file=tmp_path / "tui.json")
        async with app.run_test(size=(160, 30)) as pilot:
            await until(pilot, lambda: app.fleet is not None, what="the Fleet")
            app.fleet.slurm.interval = 0.5  # the test's own pace; 30 s in use
            table = app.screen.query_one(FleetTable)
            row = slurm_key("cluster", job_id)

            def stepping():
                if row not in table.rows:
                    return False
                cells = table.cell_texts(row)
                return cells[1] == "running" and cells[5] not in ("-", "0/100000") and cells[6] != "-"

            await until(pilot, stepping, timeout=60, what="the Slurm job running with progress (a pace)")
            cells = table.cell_texts(row)
            assert table.rows.index(row) == table.rows.index("cluster") + 1, "under its login node"
            assert cells[0] == f" └ #{job_id}" and cells[4] == "gpuctl-train"
            assert cells[5].endswith("/100000") and cells[7] != "-"
            table.move_cursor(table.rows.index(row))
            await pilot.pause()
            detail = str(app.screen.query_one("#fleet-detail").render())
            assert f"Slurm job {job_id} on cluster" in detail and f"train-{job_id}.log" in detail
            assert table.selected_pod is None, "pod actions do not apply to a Slurm job's row"
            # J opens the job: its node's GPUs read inside the allocation, the end of its log.
            await pilot.press("J")
            await until(pilot, lambda: isinstance(app.screen, SlurmJobScreen), what="the Slurm job screen")
            screen = app.screen
            panel = screen.query_one("#slurm-gpus-0")
            gpus = len(slurm_login.gpu_state()["gpus"])
            await until(pilot, lambda: len(panel.query("GpuRow")) == gpus, timeout=60, what="the node's GPUs")
            assert panel.border_title == "gpuctl-node"
            await until(pilot, lambda: screen.query_one("#slurm-log").line_count > 0, what="the log")  # followed: test_slurm_screen
            assert str(screen.query_one("#slurm-header").render()).startswith(f"Slurm job {job_id} · gpuctl-train")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, SlurmJobScreen), what="back to the fleet")
            async with open_transport(pod, config.defaults) as t:
                await jobs.kill(t, job_id)
            await until(pilot, lambda: row not in table.rows, timeout=60, what="the cancelled job's row gone")
    finally:
        async with open_transport(pod, config.defaults) as t:
            await t.run(f"scancel {job_id}")


async def test_a_login_node_without_a_cluster_says_so_under_the_table(sshd, tmp_path):
    """The plain sshd pod has Slurm's tools but no cluster behind them (no SLURM_CONF):
    squeue fails there, and the pod's line under the table says so in Slurm's words."""
    trust(sshd)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [sshd.pod_entry("nocluster", kind="slurm")]}, sort_keys=False))
    app = make_app(parse_config(path.read_text(), path), state_file=tmp_path / "tui.json")
    async with app.run_test(size=(160, 30)) as pilot:
        detail = app.screen.query_one("#fleet-detail")
        await until(pilot, lambda: "Slurm jobs:" in str(detail.render()), timeout=60, what="the poller's failure")
        assert detail.has_class("-reconnecting")
        assert app.screen.query_one(FleetTable).rows == ["nocluster"]
