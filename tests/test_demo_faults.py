"""`gpuctl demo --fault KIND`: each fault, written by the demo's GPU simulator, reaches the
doctor's verdict through the simulated nvidia-smi and dmesg and the real health reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends import sim_dmesg
from backends import sim_nvidia_smi as sim
from backends.demo.gpu_sim import FAULTS, PodGpus
from backends.health_command import build_health_command, parse_health_output
from sessions.health.checks import evaluate
from sessions.health.report import parse_report
from tui.cli import main

EXPECTED = {
    "ecc": ("ecc", "fail", "2 uncorrected ECC errors: results may be wrong"),
    "xid": ("xid", "fail", "Xid 79: the GPU fell off the bus"),
    "pcie": ("pcie", "fail", "PCIe x4 of x16 under load: transfers to this GPU are 4x slower"),
    "remap": ("remapped-rows", "fail", "remapping a bad memory row failed: memory errors can no longer be repaired"),
    "slowdown": ("clocks", "warn", "clocks held down by hw_slowdown (half speed or less)"),
    "zombie": ("zombie-vram", "warn", "7242 MiB held by pid 4194301, which no longer exists on the pod"),
}


def verdicts(tmp_path, fault):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sim.install_wrapper(str(bin_dir))
    sim_dmesg.install_wrapper(str(bin_dir))
    heartbeat = tmp_path / "heartbeat"  # the trainer (this process) is stepping: the GPUs are under load
    heartbeat.write_text(json.dumps({"pid": os.getpid(), "phase": "train", "t": time.time()}))
    gpus = PodGpus("demo-a100", "a100-80gb", 4, tmp_path / "gpus.json", heartbeat, fault)
    for second in range(30):
        gpus.tick(1000.0 + second)  # let utilization climb to the training load
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", sim.STATE_ENV: str(tmp_path / "gpus.json")}
    done = subprocess.run(["sh", "-c", build_health_command({"nvml": False, "kmsg": str(tmp_path / "none")},
                                                           python=sys.executable)],
                          capture_output=True, text=True, env=env, timeout=60)
    return evaluate(parse_report(parse_health_output(done.returncode, done.stdout, done.stderr)))


GPU_FAULTS = [fault for fault in FAULTS if fault != "hang"]


def test_the_cli_knows_the_same_faults():
    assert set(EXPECTED) | {"hang"} == set(FAULTS)


@pytest.mark.parametrize("fault", GPU_FAULTS)
def test_each_fault_shows_on_gpu_1_of_the_first_pod(tmp_path, fault):
    checks = verdicts(tmp_path, fault)
    bad = [(c.gpu, c.check, c.status, c.reason) for c in checks if c.status != "pass"]
    name, status, reason = EXPECTED[fault]
    assert bad == [(1, name, status, reason)]


def test_a_demo_without_fault_is_healthy(tmp_path):
    assert {c.status for c in verdicts(tmp_path, None)} == {"pass"}


def test_an_unknown_fault_is_a_usage_error(capsys):
    assert main(["demo", "--fault", "gremlins"]) == 2
    assert "--fault must be one of ecc, xid, pcie, remap, slowdown, zombie, hang, not 'gremlins'" in (
        capsys.readouterr().err)


def test_the_hang_fault_freezes_the_trainer_spinning(tmp_path):
    """--fault hang: the demo trainer stops printing and spins at its hang step, so the
    stall diagnosis says hung."""
    from backends.pod_agent.health import read_processes
    from sessions.health.stall import diagnose

    trainer = Path(__file__).parents[1] / "backends" / "demo" / "trainer.py"
    argv = [sys.executable, str(trainer), "--format", "torchrun", "--total-steps", "40", "--step-time", "0.01",
            "--checkpoint-every", "0", "--hang-at", "5", "--heartbeat", str(tmp_path / "beat")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        lines = []
        while not lines or not lines[-1].startswith("step    4") and not lines[-1].startswith("step 4"):
            lines.append(proc.stdout.readline())
            assert len(lines) < 60 and lines[-1], lines  # its preamble, then steps 1-4, then nothing
        assert sum(line.startswith("step") for line in lines) == 4, lines  # steps 1-4, then the hang
        verdict = diagnose(read_processes(proc.pid, window_s=0.5), [0.0])
        assert verdict.kind == "hung" and proc.poll() is None
        import select

        assert select.select([proc.stdout], [], [], 0)[0] == []  # and it printed nothing since step 4
    finally:
        proc.kill()
        proc.wait()

