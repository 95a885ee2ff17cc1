"""Slurm against a real single-host cluster (issue 18, part 2).

`slurm_cluster` is Debian's slurm-wlm and munge on loopback (tests/support/slurm.py);
`slurm_login` is an sshd whose sessions reach it, the login node of a `kind: slurm`
pod. A real batch job prints training progress and writes checkpoints; gpuctl lists
it, follows its log and progress, reads its GPUs through `srun --overlap` (the fake
nvidia-smi is on the job's PATH), kills it with scancel and resumes it from its
newest checkpoint. Waits poll the cluster with a deadline; no duration is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sessions.checkpoints.listing import step_of
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from sessions.slurm import commands as sc
from sessions.slurm import jobs
from sessions.tmux.log_stream import stream_log
from tests.support.pinning import trust
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]

TRAINER = """\
import os, sys, time
ckpt_dir = os.path.expanduser("~/ckpt")
os.makedirs(ckpt_dir, exist_ok=True)
start = 0
resume = os.environ.get("GPUCTL_CHECKPOINT")
if resume:
    start = int(open(resume).read())
    print("resumed from", resume, flush=True)
total = 100000
for step in range(start + 1, total + 1):
    print("step %d/%d loss %.4f" % (step, total, 3.0 / step ** 0.5), flush=True)
    if step % 5 == 0:
        path = os.path.join(ckpt_dir, "step_%06d.pt" % step)
        with open(path + ".tmp", "w") as fh:
            fh.write(str(step))
        os.replace(path + ".tmp", path)
    time.sleep(0.05)
"""


def _script(home: Path) -> None:
    (home / "trainer.py").write_text(TRAINER)
    (home / "train.sbatch").write_text(
        "#!/bin/bash\n#SBATCH -J gpuctl-train\n"
        f"#SBATCH -o {home}/train-%j.log\n"
        f"exec python3 -u {home}/trainer.py\n")


@pytest.fixture
def cluster_pod(slurm_login, tmp_path):
    home = Path(slurm_login.session_env["HOME"])
    _script(home)
    trust(slurm_login)
    entry = slurm_login.pod_entry("cluster", kind="slurm", slurm={
        "script": "~/train.sbatch", "price_per_gpu_hour": 2.0, "checkpoints": ["~/ckpt/step_*.pt"]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}, sort_keys=False))
    config = parse_config(path.read_text(), path)
    return config, path, home


async def _until(what: str, probe, timeout: float = 60.0):
    """Poll `probe()` until it returns something truthy (the cluster schedules in its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.2)


async def test_job_listed_followed_probed_killed_and_resumed(cluster_pod, slurm_login, capsys):
    config, path, home = cluster_pod
    pod = config.pods[0]
    async with open_transport(pod, config.defaults) as t:
        job_id = await jobs.launch(t, pod)

        async def running_with_progress():
            listed = {j.job_id: j for j in await jobs.list_jobs(t, pod)}
            job = listed.get(job_id)
            if job is None or job.state != "RUNNING":
                return None
            progress = await jobs.read_progress(t, job)
            return (job, progress) if progress and (progress.step or 0) >= 3 else None

        job, progress = await _until("the job to run and print steps", running_with_progress)
        assert job.name == "gpuctl-train" and job.nodes == ("gpuctl-node",)
        assert job.stdout == f"{home}/train-{job_id}.log"
        assert progress.total == 100000 and progress.loss is not None

        # GPUs from inside the allocation: the fake nvidia-smi on the job's node.
        view = await jobs.view(t, job, pod)
        (reading,) = view.gpus
        assert (reading.node, reading.status) == ("gpuctl-node", "ok"), view.problems
        assert [g.name for g in reading.gpus] == [g["name"] for g in slurm_login.gpu_state()["gpus"]]
        assert view.cost_usd == pytest.approx(2.0 * 2 * job.run_s / 3600)

        # The log, followed through the pod's link: new steps keep arriving.
        seen = b""
        async with asyncio.timeout(60):
            async for chunk in stream_log(pod, config.defaults, job.stdout, lines=2, follow=True):
                seen += chunk
                if seen.count(b"step ") >= 6:
                    break
        assert b"loss" in seen

    # status --json lists it under jobs, with its Slurm id and progress.
    assert await asyncio.to_thread(main, ["--config", str(path), "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (listed,) = [j for j in doc["jobs"] if j["job_id"] == job_id]
    assert listed["pod"] == "cluster" and listed["state"] == "RUNNING"
    assert listed["progress"]["step"] >= 3 and listed["gpus"][0]["gpus"]

    async with open_transport(pod, config.defaults) as t:
        await jobs.kill(t, job_id)

        async def cancelled():
            job = await jobs.job(t, job_id)
            return job is not None and job.state == "CANCELLED"

        await _until("scancel to end the job", cancelled)
        assert job_id not in [j.job_id for j in await jobs.list_jobs(t, pod)]

        # The job's last checkpoints may be under a second old when it ends; the listing
        # counts a file that new as still being written (as on a pod) until it settles.
        newest = await _until("a settled checkpoint", lambda: jobs.newest_checkpoint(t, pod), timeout=30)
        assert newest.complete and newest.step
        new_id, checkpoint = await jobs.resume(t, pod)
        # Judged again a moment later: the last file may have left its "just written" second.
        assert step_of(checkpoint) >= newest.step and new_id != job_id

        async def resumed_log():
            job = await jobs.job(t, new_id)
            if job is None or not job.stdout:
                return None
            result = await t.run(sc.tail_command(job.stdout, 4096))
            lines = result.stdout.splitlines()
            return lines if len(lines) >= 2 else None

        lines = await _until("the resumed job to print", resumed_log)
        step = int(Path(checkpoint).read_text())
        assert lines[0] == f"resumed from {checkpoint}"
        assert lines[1].startswith(f"step {step + 1}/100000 ")
        await jobs.kill(t, new_id)


async def test_no_checkpoint_refuses_to_resume_in_words(cluster_pod):
    config, _, _ = cluster_pod
    pod = config.pods[0]

    def globs(*patterns: str):
        return replace(pod, slurm=replace(pod.slurm, checkpoints=patterns))

    async with open_transport(pod, config.defaults) as t:
        with pytest.raises(jobs.SlurmError, match="nothing matches ~/nomatch_"):
            await jobs.resume(t, globs("~/nomatch_*.pt"))
        with pytest.raises(jobs.SlurmError, match="cannot enter its workdir '~/nothing'"):
            await jobs.resume(t, globs("~/nothing/*.pt"))


ECHO_SCRIPT = "#!/bin/bash\n#SBATCH -J gpuctl-echo\n#SBATCH -o {log}\necho \"from $GPUCTL_CHECKPOINT\"\n"


async def test_resume_never_picks_a_checkpoint_still_being_written(cluster_pod, tmp_path):
    """The one rule a pod's checkpoints are judged by: the newest folder lacks the
    Trainer's last file (`trainer_state.json`), so it is still being written and the
    job resumes from the one before it (`ls -td` took the newest by mtime). The
    checkpoints sit behind a linked folder, as a home's `ckpt -> /scratch/...` does."""
    config, _, home = cluster_pod
    scratch = home / "scratch-hf"
    for step, done in ((10, True), (20, False)):
        folder = scratch / f"checkpoint-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"w" * 64)
        if done:
            (folder / "trainer_state.json").write_text("{}")
        stamp = time.time() - 600 + step  # both well past the listing's "just written" window
        for path in (*folder.iterdir(), folder):
            os.utime(path, (stamp, stamp))
    link = home / "hf"
    if not link.is_symlink():
        link.symlink_to(scratch)
    log = home / f"echo-{os.getpid()}.log"
    (home / "echo.sbatch").write_text(ECHO_SCRIPT.format(log=log))
    pod = config.pods[0]
    pod = replace(pod, slurm=replace(pod.slurm, script="~/echo.sbatch", checkpoints=("~/hf/checkpoint-*",)))
    async with open_transport(pod, config.defaults) as t:
        job_id, checkpoint = await jobs.resume(t, pod)
        try:
            assert checkpoint == str((scratch / "checkpoint-10").resolve())

            async def printed():
                return log.is_file() and log.read_text().strip()

            assert await _until("the resumed job to print its checkpoint", printed) == f"from {checkpoint}"
        finally:
            await t.run(sc.scancel_command(job_id))  # it may have ended already


def _wait_sync(what: str, probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)
    return value


def test_cli_verbs_on_a_slurm_pod(cluster_pod, slurm_cluster, capsys):
    _, path, home = cluster_pod
    cli = ["--config", str(path)]
    assert main([*cli, "launch", "cluster", "cli-train"]) == 0
    out = capsys.readouterr().out
    job_id = out.split("submitted job ", 1)[1].split()[0]
    log = home / f"train-{job_id}.log"
    _wait_sync("two steps in the log", lambda: log.is_file() and log.read_text().count("step ") >= 2)

    # The columns Slurm prints without --json say the same as its JSON.
    plain = sc.parse_squeue_plain(slurm_cluster.run(*shlex.split(sc.squeue_command(json_output=False))).stdout)
    as_json = sc.parse_squeue_json(slurm_cluster.run(*shlex.split(sc.squeue_command(json_output=True))).stdout)
    assert [(j.job_id, j.name, j.user, j.state, j.nodes) for j in plain] == \
        [(j.job_id, j.name, j.user, j.state, j.nodes) for j in as_json]
    assert job_id in [j.job_id for j in plain]

    assert main([*cli, "logs", "cluster", job_id, "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("step ") for line in lines)

    assert main([*cli, "kill", "cluster", "cli-train", "--yes"]) == 0
    assert f"cancelled job {job_id} (cli-train)" in capsys.readouterr().out
    _wait_sync("the job to be cancelled",
               lambda: "JobState=CANCELLED" in slurm_cluster.run("scontrol", "show", "job", "-o", job_id).stdout)

    assert main([*cli, "resume", "cluster", "cli-train"]) == 0
    out = capsys.readouterr().out
    assert f"({'cli-train'}) on cluster from {home}/ckpt/step_" in out
    new_id = out.split("submitted job ", 1)[1].split()[0]
    assert main([*cli, "kill", "cluster", new_id, "--yes"]) == 0
    assert main([*cli, "kill", "cluster", new_id, "--yes"]) == 0
    assert "nothing to cancel" in capsys.readouterr().err


def test_logs_follow_of_a_slurm_job_keeps_printing(cluster_pod, slurm_cluster):
    """`gpuctl logs POD JOB -f` follows the job's StdOut through the same follower as a
    tmux session's log (`Fleet.logs`): steps printed after it started keep coming."""
    _, path, home = cluster_pod
    out = slurm_cluster.run("sbatch", "--parsable", str(home / "train.sbatch"), check=True).stdout
    job_id = sc.parse_sbatch(out)
    log = home / f"train-{job_id}.log"
    proc = None
    try:
        _wait_sync("a step in the log", lambda: log.is_file() and "step " in log.read_text())
        at_start = int(re.findall(r"step (\d+)/", log.read_text())[-1])
        proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "--config", str(path), "logs", "cluster",
                                 str(job_id), "-n", "1", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout = proc.stdout
        assert stdout is not None
        seen = [0]

        def later_steps() -> bool:
            if select.select([stdout], [], [], 0.5)[0]:
                seen.extend(int(n) for n in re.findall(rb"step (\d+)/", stdout.readline()))
            return seen[-1] > at_start + 20 or proc.poll() is not None

        _wait_sync("steps printed after the follow began", later_steps)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert seen[1:] == list(range(seen[1], seen[-1] + 1)), "every line, in order"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        slurm_cluster.run("scancel", str(job_id), check=False)
