"""The pod-side health reader against the simulated nvidia-smi and dmesg, run as a process.

The reader runs on pods we do not control, so what matters is that a field the
driver does not support is "not available" (never an error), that an old driver's
refusal of the new clock-reason names is survived, that a dead pid holding VRAM is
seen, and that an unreadable kernel log is said plainly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backends import sim_dmesg
from backends.pod_agent import health as gpu_health
from backends import sim_nvidia_smi as sim
from backends.health_command import HealthUnreadable, build_health_command, parse_health_output

READER = Path(gpu_health.__file__)
XID79 = sim_dmesg.xid_line("0000:07:00", 79, 1234, "GPU has fallen off the bus.")


@pytest.fixture
def pod(tmp_path):
    """Run the reader with the fakes first on PATH; returns (run(state, options) -> report)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sim.install_wrapper(str(bin_dir))
    sim_dmesg.install_wrapper(str(bin_dir))
    state_path = tmp_path / "state.json"

    def run(state, options=None, with_smi=True):
        if not with_smi:
            (bin_dir / "nvidia-smi").unlink(missing_ok=True)
        state_path.write_text(json.dumps(state))
        options = {"nvml": False, "kmsg": str(tmp_path / "no-kmsg"), **(options or {})}
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", sim.STATE_ENV: str(state_path)}
        done = subprocess.run(["sh", "-c", build_health_command(options, python=sys.executable)],
                              capture_output=True, text=True, env=env, timeout=60)
        return parse_health_output(done.returncode, done.stdout, done.stderr)

    return run


def _state(**gpu):
    state = sim.load_state("/nonexistent")
    state["gpus"][0].update(gpu)
    return state


def test_healthy_gpu_every_field_read(pod):
    report = pod(_state())
    assert report["source"] == "nvidia-smi" and report["error"] is None
    (gpu,) = report["gpus"]
    assert gpu["ecc.errors.uncorrected.volatile.total"] == 0
    assert gpu["pcie.link.width.current"] == 16 and gpu["pcie.link.width.max"] == 16
    assert gpu["clocks_event_reasons.hw_slowdown"] is False
    assert gpu["persistence_mode"] is True
    assert gpu["remapped_rows.failure"] is False and gpu["remapped_rows.uncorrectable"] == 0
    assert gpu["compute_apps"] == []
    assert gpu["not_available"] == {"retired_pages.pending": "[N/A]"}  # an A100 remaps rows instead
    assert report["kernel_log"]["readable"] is True and report["kernel_log"]["events"] == []


def test_unsupported_fields_are_not_available_never_errors(pod):
    state = _state(**{"ecc.errors.uncorrected.volatile.total": "[N/A]", "persistence_mode": "[Not Supported]",
                      "remapped_rows.failure": "[Not Supported]"})
    (gpu,) = pod(state)["gpus"]
    assert gpu["ecc.errors.uncorrected.volatile.total"] is None
    assert gpu["not_available"]["ecc.errors.uncorrected.volatile.total"] == "[N/A]"
    assert gpu["not_available"]["persistence_mode"] == "[Not Supported]"
    assert gpu["remapped_rows.failure"] is None


def test_old_driver_clock_reasons_under_their_old_names(pod):
    state = _state(**{"clocks_event_reasons.hw_slowdown": "Active"})
    state["driver_version"] = "470.82.01"
    (gpu,) = pod(state)["gpus"]
    assert gpu["clocks_event_reasons.hw_slowdown"] is True  # asked as clocks_throttle_reasons.*
    assert gpu["clocks_event_reasons.sw_power_cap"] is False


def test_zombie_vram_dead_pid_seen_live_pid_not(pod):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        state = _state(compute_apps=[{"pid": dead.pid, "used_memory": 7242}, {"pid": live.pid, "used_memory": 100}])
        (gpu,) = pod(state)["gpus"]
    finally:
        live.kill()
        live.wait()
    assert gpu["compute_apps"] == [{"pid": dead.pid, "used_mib": 7242, "alive": False},
                                   {"pid": live.pid, "used_mib": 100, "alive": True}]


def test_xid_lines_from_dmesg(pod):
    state = _state()
    state["kernel_log"] = {"lines": [XID79, "NVRM: Xid (PCI:0000:07:00): 48, pid='<unknown>', name=<unknown>, "
                                            "An uncorrectable double bit error (DBE) has been detected on GPU."]}
    log = pod(state)["kernel_log"]
    assert log["source"] == "dmesg"
    assert [(e["pci"], e["xid"], e["pid"]) for e in log["events"]] == [("0000:07:00", 79, "1234"),
                                                                      ("0000:07:00", 48, "<unknown>")]
    assert log["events"][0]["uptime_s"] is not None


def test_kernel_log_unreadable_said_plainly(pod):
    state = _state()
    state["kernel_log"] = {"denied": True}
    log = pod(state)["kernel_log"]
    assert log["readable"] is False and log["events"] == []
    assert log["reason"].startswith("the kernel log cannot be read here (")
    assert sim_dmesg.DENIED_MESSAGE in log["reason"] and sim_dmesg.NO_JOURNAL_MESSAGE in log["reason"]
    assert "no-kmsg: No such file or directory" in log["reason"]


def test_no_driver_is_a_plain_error(pod):
    report = pod({"fail": "driver", "gpus": []})
    assert report["gpus"] == [] and "couldn't communicate with the NVIDIA driver" in report["error"]
    report = pod(_state(), with_smi=False)
    assert report["gpus"] == [] and report["error"].startswith("nvidia-smi: command not found")




def test_missing_python_is_a_plain_message():
    with pytest.raises(HealthUnreadable, match="python3 is not installed"):
        parse_health_output(127, "", "sh: 1: python3: not found")
    with pytest.raises(HealthUnreadable, match="failed on the pod: ValueError: boom"):
        parse_health_output(1, "", "Traceback (most recent call last):\nValueError: boom")


def test_agent_sends_health_every_n_ticks_from_a_thread(tmp_path, monkeypatch):
    """The agent's sample carries ``health`` once a read finished, every N ticks only."""
    from backends.pod_agent.sample import AgentState, collect_sample

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sim.install_wrapper(str(bin_dir))
    sim_dmesg.install_wrapper(str(bin_dir))
    state_path = tmp_path / "state.json"
    state = _state(**{"ecc.errors.uncorrected.volatile.total": 2})
    state["kernel_log"] = {"lines": [XID79]}
    state_path.write_text(json.dumps(state))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(sim.STATE_ENV, str(state_path))
    agent = AgentState(disk_path=str(tmp_path), tmux=False, use_nvml=False, gpu_loop=False,
                       health_every=3, kernel_log_every=6)
    try:
        samples = []
        for _ in range(7):
            samples.append(collect_sample(agent))
            if agent.health._thread is not None:
                agent.health._thread.join(30)  # so the next sample has the finished read
    finally:
        agent.close()
    carried = [s["seq"] for s in samples if "health" in s]
    assert carried == [1, 4]  # read on ticks 0 and 3 (every 3), sent with the next sample
    first, second = samples[1]["health"], samples[4]["health"]
    assert first["gpus"][0]["ecc.errors.uncorrected.volatile.total"] == 2
    assert first["kernel_log"]["events"][0]["xid"] == 79  # tick 0: the kernel log too
    assert second["kernel_log"] is None  # tick 3: GPU fields only (kernel log every 6)
