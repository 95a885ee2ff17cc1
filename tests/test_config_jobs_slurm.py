"""Config for issue 18: `kind: slurm` with its `slurm:` block, and `jobs:`; every
problem with file:line:column and field, like the rest of the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions.config.loader import ConfigError, parse_config

PODS = """\
pods:
  - name: n0
    host: h0
    sessions: [{name: train, command: 'torchrun --node_rank={rank} --nnodes={nnodes} --master_addr={master_addr} x.py'}]
  - name: n1
    host: h1
    sessions: [{name: train, command: "python3 t.py --rank {rank}", resume: "python3 t.py --from {checkpoint}"}]
"""


def test_a_slurm_pod_and_a_job_read_back():
    text = PODS + """\
  - name: cluster
    host: login.example.org
    kind: slurm
    slurm:
      script: ~/train.sbatch
      price_per_gpu_hour: 2.5
      all_users: true
      checkpoints: /scratch/me/ckpt/step_*.pt
      sbatch_args: [--partition=gpu, --gres=gpu:8]
jobs:
  - name: big
    pods: [n0, n1]
    session: train
    master_port: 29600
"""
    config = parse_config(text, Path("c.yaml"))
    cluster = config.pod("cluster")
    assert cluster.is_slurm and not config.pod("n0").is_slurm
    assert cluster.slurm is not None
    assert (cluster.slurm.script, cluster.slurm.price_per_gpu_hour, cluster.slurm.all_users) == (
        "~/train.sbatch", 2.5, True)
    assert cluster.slurm.checkpoints == ("/scratch/me/ckpt/step_*.pt",)
    assert cluster.slurm.sbatch_args == ("--partition=gpu", "--gres=gpu:8")
    (job,) = config.jobs
    assert (job.name, job.pods, job.session, job.master_port, job.line) == ("big", ("n0", "n1"), "train", 29600, 18)


@pytest.mark.parametrize("tail, expected", [
    ("  - name: c\n    host: l\n    kind: slurn\n", "c.yaml:10:11: pods[2] (c).kind: unknown kind 'slurn'"),
    ("  - name: c\n    host: l\n    slurm: {script: x}\n",
     "c.yaml:10:5: pods[2] (c).slurm: a 'slurm:' block needs 'kind: slurm'"),
    ("  - name: c\n    host: l\n    kind: slurm\n    slurm: {scrpt: x}\n",
     "c.yaml:11:13: pods[2] (c).slurm.scrpt: unknown key 'scrpt'; did you mean 'script'?"),
    ("  - name: c\n    host: l\n    kind: slurm\n    slurm: {price_per_gpu_hour: -1}\n",
     "c.yaml:11:33: pods[2] (c).slurm.price_per_gpu_hour:"),
    ("jobs:\n  - name: j\n    pods: [n0, n2]\n    session: train\n", "c.yaml:9:5: jobs[0] (j).pods: no pod 'n2'"),
    ("jobs:\n  - name: j\n    pods: [n0, n0]\n    session: train\n", "c.yaml:9:5: jobs[0] (j).pods: a pod appears twice"),
    ("jobs:\n  - name: j\n    pods: [n0, n1]\n    session: eval\n",
     "c.yaml:9:5: jobs[0] (j).session: pod 'n0' has no session 'eval'"),
    ("jobs:\n  - name: j\n    session: train\n", "c.yaml:9:5: jobs[0] (j): missing 'pods'"),
])
def test_problems_say_where(tail, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(PODS + tail, Path("c.yaml"))
    assert expected in str(caught.value), str(caught.value)


def test_a_job_command_where_a_rank_value_could_run_as_code_is_refused():
    text = PODS.replace('"python3 t.py --rank {rank}"', "\"bash -c 'python3 t.py {rank}'\"") + (
        "jobs:\n  - name: j\n    pods: [n0, n1]\n    session: train\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("c.yaml"))
    assert "jobs[0] (j).session: the command of 'n1''s 'train'" in str(caught.value)
    assert "$GPUCTL_RANK" in str(caught.value)


def test_config_check_says_what_it_understood():
    from sessions.config.loader import describe_config

    text = PODS + "  - name: c\n    host: l\n    kind: slurm\n    slurm: {script: ~/t.sbatch, price_per_gpu_hour: 2}\n" \
        + "jobs:\n  - name: j\n    pods: [n0, n1]\n    session: train\n"
    described = describe_config(parse_config(text, Path("c.yaml")))
    assert "  slurm       login node; script ~/t.sbatch; $2.00/h per GPU; your jobs\n" in described
    assert described.endswith("1 job:\n\nj  (line 13): ranks 0=n0, 1=n1; session train\n")


def test_a_jobs_pods_from_a_deepspeed_or_mpi_hostfile(tmp_path):
    (tmp_path / "hostfile").write_text("# DeepSpeed\nn1 slots=8\n\nh0:8   # MPICH style, by host\n")
    text = PODS + "jobs:\n  - name: j\n    hostfile: hostfile\n    session: train\n"
    config = parse_config(text, tmp_path / "c.yaml")
    assert config.jobs[0].pods == ("n1", "n0") and config.jobs[0].hostfile == "hostfile"


@pytest.mark.parametrize("hostfile, expected", [
    (None, "jobs[0] (j).hostfile: hostfile {dir}/hostfile does not exist"),
    ("# nothing\n", "jobs[0] (j).hostfile: hostfile {dir}/hostfile lists no host"),
    ("n0 slots=1\nworker-9 slots=8\n", "jobs[0] (j).hostfile: hostfile:2: no pod is named 'worker-9'"),
])
def test_hostfile_problems_say_where(tmp_path, hostfile, expected):
    if hostfile is not None:
        (tmp_path / "hostfile").write_text(hostfile)
    text = PODS + "jobs:\n  - name: j\n    hostfile: hostfile\n    session: train\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "c.yaml")
    assert f"c.yaml:9:5: {expected.format(dir=tmp_path)}" in str(caught.value), str(caught.value)


def test_pods_and_hostfile_together_are_refused(tmp_path):
    text = PODS + "jobs:\n  - name: j\n    pods: [n0]\n    hostfile: hostfile\n    session: train\n"
    with pytest.raises(ConfigError, match="give either pods: or hostfile:, not both"):
        parse_config(text, tmp_path / "c.yaml")
