"""Slurm command builders and parsers (sessions/slurm/commands.py), over real captures.

The captures are Slurm 22.05.8 (Debian 12) output from the test cluster; the quoting
tests run the built commands through a real `sh`.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from sessions.checkpoints.listing import judge, listing_command, parse_listing
from sessions.slurm import commands as sc
from sessions.slurm import jobs

# `scontrol show job -o` for a job named "train x=1" writing to a path with a space.
SCONTROL_LINE = (
    "JobId=1 JobName=train x=1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 "
    "Account=(null) QOS=(null) JobState=FAILED Reason=JobLaunchFailure Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=0:53 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A "
    "SubmitTime=2026-12-06T06:57:00 EligibleTime=2026-12-06T06:57:00 AccrueTime=2026-12-06T06:57:00 "
    "StartTime=2026-12-06T06:57:02 EndTime=2026-12-06T06:57:02 Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-12-06T06:57:02 Scheduler=Main Partition=debug AllocNode:Sid=localhost:21737 "
    "ReqNodeList=(null) ExcNodeList=(null) NodeList=gpuctl-node BatchHost=gpuctl-node NumNodes=1 NumCPUs=1 "
    "NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* "
    "NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) "
    "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) "
    "WorkDir=/work/main StdErr=/tmp/gpuctl x/out-1.log StdIn=/dev/null StdOut=/tmp/gpuctl x/out-1.log Power= ")


def test_scontrol_line_keeps_spaces_in_names_and_paths():
    fields = sc.parse_scontrol_jobs(SCONTROL_LINE + "\n")["1"]
    assert fields["JobName"] == "train x=1"
    assert fields["StdOut"] == "/tmp/gpuctl x/out-1.log"
    assert (fields["JobState"], fields["NodeList"], fields["CPUs/Task"]) == ("FAILED", "gpuctl-node", "1")
    job = sc.with_details(sc.SlurmJob(job_id="1"), fields)
    assert (job.name, job.user, job.state, job.nodes, job.gpus, job.run_s) == (
        "train x=1", "root", "FAILED", ("gpuctl-node",), None, 0.0)


def test_squeue_plain_keeps_a_name_holding_the_separator():
    (job,) = sc.parse_squeue_plain("7|a|b|root|RUNNING|node[1-2]|2\n")
    assert (job.job_id, job.name, job.user, job.state, job.nodes) == ("7", "a|b", "root", "RUNNING", ("node1", "node2"))


@pytest.mark.parametrize("text, names", [
    ("", ()),
    ("gpuctl-node", ("gpuctl-node",)),
    ("node[01-03,07]", ("node01", "node02", "node03", "node07")),
    ("gpu[1-2],cpu5", ("gpu1", "gpu2", "cpu5")),
    ("rack[a,b]-n", ("racka-n", "rackb-n")),
])
def test_nodelists_expand(text, names):
    assert sc.expand_nodelist(text) == names


@pytest.mark.parametrize("text, seconds", [
    ("00:00:00", 0.0), ("01:02:03", 3723.0), ("2-00:00:01", 172801.0), ("05:07", 307.0),
    ("INVALID", None), ("", None),
])
def test_durations(text, seconds):
    assert sc.duration_s(text) == seconds


@pytest.mark.parametrize("tres, gpus", [
    ("cpu=8,mem=64G,node=1,billing=8,gres/gpu=4", 4), ("cpu=1,node=1,billing=1", None), ("", None),
    ("cpu=2,gres/gpu:a100=2,gres/gpu=2", 2),
])
def test_gpus_in_tres(tres, gpus):
    assert sc.gpus_in_tres(tres) == gpus


@pytest.mark.parametrize("text, job_id", [("123\n", "123"), ("124;cluster\n", "124"), ("45_3\n", "45_3"),
                                          ("sbatch: error: x\n", None), ("", None)])
def test_sbatch_parsable(text, job_id):
    assert sc.parse_sbatch(text) == job_id


def _sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=10,
                          env={"HOME": str(cwd), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("patterns, roots", [
    (("~/ckpt/step_*.pt",), {"~/ckpt": ("step_*.pt",)}),
    (("/scratch/me/*.pt", "/scratch/me/best.pt"), {"/scratch/me": ("*.pt", "best.pt")}),
    (("/*.pt",), {"/": ("*.pt",)}),
    (("step_*.pt",), {None: ("step_*.pt",)}),
    (("~/runs/*/ckpt/step_*.pt", "out/checkpoint-[0-9]*"), {"~/runs": ("*/ckpt/step_*.pt",),
                                                            "out": ("checkpoint-[0-9]*",)}),
])
def test_checkpoint_globs_become_the_listings_folder_and_relative_globs(patterns, roots):
    assert jobs.listing_roots(patterns) == roots


def test_globs_expand_and_nothing_else_in_them_runs(tmp_path):
    """`slurm.checkpoints` reach the pod only through the checkpoint listing's command."""
    (tmp_path / "ck dir").mkdir()
    for name in ("step_1.pt", "step_2.pt"):
        (tmp_path / "ck dir" / name).write_text(name)
    evil = "~/ck dir/$(touch pwned)`touch pwned2`;touch pwned3 step_*.pt"
    names = []
    for folder, globs in jobs.listing_roots(("~/ck dir/step_*.pt", evil)).items():
        done = _sh(listing_command(folder, globs), tmp_path)
        names += [c.name for c in judge(parse_listing(done.stdout))]
    assert names == ["step_2.pt", "step_1.pt"]
    assert not any((tmp_path / n).exists() for n in ("pwned", "pwned2", "pwned3"))


def test_sbatch_command_quotes_and_passes_the_checkpoint_in_the_environment(tmp_path):
    command = sc.sbatch_command("~/my job.sbatch", ("--job-name=a b",), checkpoint="/ck/$(x) 'q'.pt")
    words = shlex.split(command)
    assert words[0] == "GPUCTL_CHECKPOINT=/ck/$(x) 'q'.pt"
    assert words[1:] == ["sbatch", "--parsable", "--job-name=a b", "~/my job.sbatch"]
    # ~/ is left bare so the login node's shell expands it; the rest is one quoted word.
    stand_in = "sh -c 'printf \"%s|\" \"$GPUCTL_CHECKPOINT\" \"$@\"' sbatch"  # what sbatch would see
    echoed = _sh(command.replace("sbatch --parsable", stand_in, 1), tmp_path)
    assert echoed.stdout == f"/ck/$(x) 'q'.pt|--job-name=a b|{tmp_path}/my job.sbatch|"


def test_the_agent_step_reads_gpus_and_ends_with_its_stdin(tmp_path):
    # Without srun: the same pipe into python3 -u - (what srun runs on the node), with
    # the simulated nvidia-smi on PATH.
    import sys

    command = sc.srun_agent_command("5", "n1")
    step = "srun --jobid=5 --overlap -w n1 -N1 -n1 python3 -u - "
    assert command.startswith("printf '%s\\n' ") and step in command
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    sim = Path(__file__).resolve().parent.parent / "backends" / "sim_nvidia_smi.py"
    smi.write_text(f"#!/bin/sh\nexec {sys.executable} {sim} \"$@\"\n")
    smi.chmod(0o755)
    done = subprocess.run(["sh", "-c", command.replace(step, "python3 -u - ")], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path,
                          env={"HOME": str(tmp_path), "PATH": f"{smi.parent}:/usr/local/bin:/usr/bin:/bin"})
    sample = sc.parse_agent_sample(done.stdout)
    assert sample is not None, done.stderr
    assert sample["gpu_status"] == "ok" and sample["gpus"][0]["name"].startswith("NVIDIA")
    assert sc.parse_agent_sample("srun: error: Unable to create step\n") is None
