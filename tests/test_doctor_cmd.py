"""`gpuctl doctor POD` end to end: the real sshd test pod, the simulated nvidia-smi and
dmesg on its PATH, the health reader shipped over SSH as the agent is."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from backends import sim_dmesg
from backends import sim_nvidia_smi as sim
from tests.support.pinning import trust
from tests.support.sshd import DEFAULT_GPUS
from tui.cli import main

needs_pod = pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")
HEALTH = {k: v for k, v in sim.DEFAULT_STATE["gpus"][0].items()
          if k not in ("index", "uuid", "name", "pci.bus_id") and not k.startswith(("temperature", "memory", "power"))}


@contextlib.contextmanager
def gpu_faults(sshd):
    """The session pod with health fields: GPU 0 healthy and idle with a down-trained
    link, GPU 1 busy at x4 of x16 with 2 uncorrected ECC errors and a dead pid holding
    VRAM, and an Xid 79 for GPU 1 in the kernel log. Put back afterwards."""
    gpus = []
    for position, base in enumerate(DEFAULT_GPUS):
        gpus.append({**base, **HEALTH, "pci.bus_id": f"00000000:{0x3b + position:02X}:00.0"})
    gpus[0].update({"utilization.gpu": 0, "pcie.link.width.current": 4, "pcie.link.gen.current": 1})
    gpus[1].update({"utilization.gpu": 97, "pcie.link.width.current": 4,
                    "ecc.errors.uncorrected.volatile.total": 2,
                    "compute_apps": [{"pid": 4_000_000, "used_memory": 7242}]})
    state = {"gpus": gpus, "fail": None, "kernel_log": {"lines": [
        sim_dmesg.xid_line("0000:3c:00", 79, 1234, "GPU has fallen off the bus.")]}}
    sshd.gpu_state_path.write_text(json.dumps(state))
    installed = sim_dmesg.install_wrapper(str(sshd.bin_dir), sshd._python_exe)
    try:
        yield sshd
    finally:
        for path in installed:
            os.unlink(path)
        sshd.set_gpus(DEFAULT_GPUS)


@pytest.fixture
def faulty_pod(sshd):
    with gpu_faults(sshd) as pod:
        yield pod


def doctor(tmp_path: Path, sshd, capsys, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [sshd.pod_entry("a100")]}, sort_keys=False))
    code = main(["--config", str(config), "doctor", "a100", *args])
    out, err = capsys.readouterr()
    return code, out, err


@needs_pod
def test_doctor_json_over_ssh(faulty_pod, tmp_path, capsys, isolated_home):
    trust(faulty_pod)
    code, out, err = doctor(tmp_path, faulty_pod, capsys, "--json")
    assert code == 1, err
    doc = json.loads(out)
    assert (doc["pod"], doc["status"], doc["source"]) == ("a100", "fail", "nvidia-smi")
    assert [(g["index"], g["status"]) for g in doc["gpus"]] == [(0, "pass"), (1, "fail")]
    assert doc["kernel_log"] == {"readable": True, "source": "dmesg", "reason": None}
    verdicts = {(c["gpu"], c["check"]): (c["status"], c["reason"]) for c in doc["checks"]}
    assert verdicts[(0, "pcie")] == ("pass", "PCIe x4 gen1 while idle (links slow down at idle to save power; "
                                             "judged under load)")
    assert verdicts[(1, "pcie")] == ("fail", "PCIe x4 of x16 under load: transfers to this GPU are 4x slower")
    assert verdicts[(1, "xid")] == ("fail", "Xid 79: the GPU fell off the bus")
    assert verdicts[(0, "xid")][0] == "pass"
    assert verdicts[(1, "ecc")] == ("fail", "2 uncorrected ECC errors: results may be wrong")
    assert verdicts[(1, "zombie-vram")] == ("warn", "7242 MiB held by pid 4000000, which no longer exists on the pod")
    assert set(doc["checks"][0]) == {"check", "gpu", "status", "reason", "next_step"}


@needs_pod
def test_doctor_table_warnings_only_exit_zero(faulty_pod, tmp_path, capsys, isolated_home):
    trust(faulty_pod)
    state = json.loads(faulty_pod.gpu_state_path.read_text())
    state["kernel_log"] = {"lines": []}
    for gpu in state["gpus"]:
        gpu.update(HEALTH)
    state["gpus"][0]["persistence_mode"] = "Disabled"
    faulty_pod.gpu_state_path.write_text(json.dumps(state))
    code, out, _ = doctor(tmp_path, faulty_pod, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["GPU", "CHECK", "STATUS", "REASON"]
    assert lines[1].split(None, 3) == ["0", "xid", "pass", "no Xid errors in the kernel log"]
    assert "0    persistence    warn    persistence mode is off" in out
    assert "next steps:\n  GPU 0 persistence: sudo nvidia-smi -pm 1, or ask the provider\n" in out
    assert lines[-1] == "pod 'a100': 2 GPUs read through nvidia-smi; 0 failed, 1 warnings"


def pod_tmux(server, *args: str) -> None:
    command = " ".join(shlex.quote(a) for a in ("tmux", *args))
    subprocess.run(server.ssh_argv(command), check=True, env={**os.environ, **server.session_env}, timeout=30)


@needs_pod
def test_doctor_says_why_a_session_stopped(sshd, tmp_path, capsys, isolated_home):
    """A run that sleeps with idle GPUs is idle; one spinning on the CPU is hung, and the
    pod without py-spy says how to get its stacks."""
    trust(sshd)
    sshd.set_gpus([{**gpu, "utilization.gpu": 0} for gpu in DEFAULT_GPUS])
    try:
        pod_tmux(sshd, "new-session", "-d", "-s", "napping", "sleep 600")
        pod_tmux(sshd, "new-session", "-d", "-s", "spinning", "python3 -c 'while True: pass'")
        code, out, err = doctor(tmp_path, sshd, capsys, "--json", "--session", "napping")
        stall = json.loads(out)["stall"]
        assert stall["kind"] == "idle", err
        assert "sleep 600: sleeping" in stall["evidence"][0]
        assert stall["evidence"][-1] == "GPU utilization 0 %, 0 %"
        code, out, _ = doctor(tmp_path, sshd, capsys, "--session", "spinning")
        assert "session 'spinning': hung\n" in out
        assert "  the process runs on the CPU while the step does not move\n" in out
        assert out.rstrip().endswith("py-spy is not installed on the pod (pip install py-spy)")
        code, _, err = doctor(tmp_path, sshd, capsys, "--session", "nope")
        assert code == 2 and "has no tmux session 'nope'" in err
    finally:
        sshd.kill_tmux_sessions("napping", "spinning")
        sshd.set_gpus(DEFAULT_GPUS)
