"""The Slurm job screen follows the job's StdOut as it grows (issue 18 leftovers).

A real batch job on the single-host Slurm (tests/support/slurm.py) prints a step every
50 ms; the screen, opened on it, must go on showing steps past those its first read
could have seen: the log is followed through `Fleet.logs` (the follower `gpuctl logs
-f` uses), not read once. What is checked is the screen's own text, as drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from sessions.slurm import jobs
from tests.support.pinning import trust
from tests.test_slurm import _script, _until
from tests.test_tui_pilot import until
from tui.app import make_app
from tui.screens.slurm_job_screen import SlurmJobScreen

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]

STEP = re.compile(r"step (\d+)/100000")


def screen_steps(app) -> list[int]:
    """Every `step N/100000` the screen draws now in its log's rows (not the header's)."""
    log = app.screen.query_one("#slurm-log").region
    rows = app.screen._compositor.render_strips()[log.y:log.bottom]
    return [int(n) for n in STEP.findall("\n".join("".join(seg.text for seg in strip) for strip in rows))]


def _cluster(slurm_login, tmp_path: Path, script: str):
    """A config whose one pod is the Slurm login node submitting `script`; (config, pod)."""
    trust(slurm_login)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [slurm_login.pod_entry("cluster", kind="slurm", slurm={
        "script": script})]}, sort_keys=False))
    config = parse_config(path.read_text(), path)
    return config, config.pods[0]


async def _running(t, job_id: str):
    """The job once Slurm runs it and knows its StdOut path (the screen follows that file)."""
    async def running():
        job = await jobs.job(t, job_id)
        return job if job and job.state == "RUNNING" and job.stdout else None

    return await _until("the job to run", running)


async def test_the_job_screen_follows_the_log_as_it_grows(slurm_login, tmp_path):
    home = Path(slurm_login.session_env["HOME"])
    _script(home)
    config, pod = _cluster(slurm_login, tmp_path, "~/train.sbatch")
    async with open_transport(pod, config.defaults) as t:
        job_id = await jobs.launch(t, pod)
        try:
            job = await _running(t, job_id)
            app = make_app(config, state_file=tmp_path / "tui.json")
            async with app.run_test(size=(120, 40)) as pilot:
                await until(pilot, lambda: app.fleet is not None, what="the Fleet")
                app.push_screen(SlurmJobScreen("cluster", jobs.JobView(job)))
                await until(pilot, lambda: isinstance(app.screen, SlurmJobScreen) and screen_steps(app),
                            timeout=60, what="the log's first steps on the screen")
                first = max(screen_steps(app))
                # Steps the job printed after the screen had shown its first ones.
                await until(pilot, lambda: max(screen_steps(app) or [0]) > first + 20, timeout=60,
                            what="steps printed later, followed onto the screen")
                shown = screen_steps(app)
                assert shown == sorted(shown) and len(set(shown)) == len(shown), "in order, each once"
        finally:
            await t.run(f"scancel {job_id}")


RANKED_TRAINER = """\
import time
for step in range(1, 100001):
    print("[rank0]:step %d/100000 loss %.4f" % (step, 3.0 / step ** 0.5), flush=True)
    if step % 2 == 0:  # rank 1 at half the pace: the job's pace is its
        print("[rank1]:step %d/100000 loss %.4f" % (step // 2, 3.1 / step ** 0.5), flush=True)
    time.sleep(0.02)
"""


async def test_a_ranked_log_shows_each_rank_and_names_the_slowest(slurm_login, tmp_path):
    """A job whose StdOut carries torchrun `--tee` rank prefixes: the screen lists each
    rank's step from the one per-rank split (`sessions.progress.ranks`), the rank the job
    waits for first and named, and the header says it in the pod screen's words."""
    home = Path(slurm_login.session_env["HOME"])
    (home / "ranked.py").write_text(RANKED_TRAINER)
    (home / "ranked.sbatch").write_text(f"#!/bin/bash\n#SBATCH -J gpuctl-ranked\n#SBATCH -o {home}/ranked-%j.log\n"
                                        f"exec python3 -u {home}/ranked.py\n")
    config, pod = _cluster(slurm_login, tmp_path, "~/ranked.sbatch")
    async with open_transport(pod, config.defaults) as t:
        job_id = await jobs.launch(t, pod)
        try:
            job = await _running(t, job_id)
            app = make_app(config, state_file=tmp_path / "tui.json")
            async with app.run_test(size=(120, 40)) as pilot:
                await until(pilot, lambda: app.fleet is not None, what="the Fleet")
                app.fleet.slurm.interval = 0.5  # the test's own pace; 30 s in use
                app.push_screen(SlurmJobScreen("cluster", jobs.JobView(job)))

                def ranks_shown() -> list[str]:
                    if not isinstance(app.screen, SlurmJobScreen):
                        return []
                    return str(app.screen.query_one("#slurm-ranks").render()).splitlines()

                await until(pilot, lambda: len(ranks_shown()) == 2, timeout=60, what="both ranks on the screen")
                slow, fast = ranks_shown()
                assert slow.startswith("rank 1  step ") and slow.endswith("← slowest")
                assert fast.startswith("rank 0  step ") and "slowest" not in fast
                (seen,) = [v for v in app.fleet.slurm.views["cluster"] if v.job.job_id == job_id]
                steps = dict((rank, q.step) for rank, q in seen.progress.ranks)
                assert steps["1"] < steps["0"] and seen.progress.slowest_rank == "1"
                header = str(app.screen.query_one("#slurm-header").render())
                assert "· slowest rank 1 (0: " in header
        finally:
            await t.run(f"scancel {job_id}")
