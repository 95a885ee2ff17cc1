"""The pod-side health reader against the simulated nvidia-smi and dmesg, run as a process.

The reader runs on pods we do not control, so what matters is that a field the
driver does not support is "not available" (never an error), that an old driver's
refusal of the new clock-reason names is survived, that a dead pid holding VRAM is
seen, and that an unreadable kernel log is said plainly.
"""

from __future__ import annotations

import json
import os
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
        if os.environ.get("PYTHONPATH"):  # a test's stand-in pynvml
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
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


def test_agent_sends_health_from_its_thread(tmp_path, monkeypatch):
    """The agent's samples carry ``health`` once a reading finished: the health fields
    from a resident nvidia-smi loop, remapped rows and compute apps, and the Xid lines."""
    import time

    from backends.pod_agent.sample import AgentState, collect_sample

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sim.install_wrapper(str(bin_dir))
    sim_dmesg.install_wrapper(str(bin_dir))
    state_path = tmp_path / "state.json"
    state = _state(**{"ecc.errors.uncorrected.volatile.total": 2, "remapped_rows.failure": "Yes"})
    state["kernel_log"] = {"lines": [XID79]}
    state_path.write_text(json.dumps(state))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(sim.STATE_ENV, str(state_path))
    agent = AgentState(disk_path=str(tmp_path), tmux=False, use_nvml=False, gpu_loop=False,
                       health_interval_s=0.2, health_slow_interval_s=60, kernel_log_interval_s=60)
    readings = []
    try:
        deadline = time.monotonic() + 60  # a safety net for a broken reader, not a measurement
        while len(readings) < 3 and time.monotonic() < deadline:
            sample = collect_sample(agent)
            if "health" in sample:
                readings.append(sample["health"])
            time.sleep(0.05)
        loop = agent.health._loop
        assert loop is not None and loop.proc.poll() is None  # resident, not an exec per reading
    finally:
        agent.close()
    assert loop.proc.poll() is not None  # closing the agent stops it
    assert len(readings) == 3
    for reading in readings:
        (gpu,) = reading["gpus"]
        assert gpu["ecc.errors.uncorrected.volatile.total"] == 2
        assert gpu["remapped_rows.failure"] is True  # read once, reused between slow reads
    assert [r["kernel_log"] is None for r in readings] == [False, True, True], readings
    assert readings[0]["kernel_log"]["events"][0]["xid"] == 79
    assert readings[1]["kernel_log"] is None and readings[2]["kernel_log"] is None  # every 60 s only


def test_the_nvml_path_reads_the_same_fields_as_nvidia_smi(pod, tmp_path, monkeypatch):
    """pynvml first (a stand-in answering from the same state, in NVML's units and
    refusals): the same report as the nvidia-smi path, field by field."""
    state = _state(**{"ecc.errors.uncorrected.volatile.total": 2, "persistence_mode": "[Not Supported]",
                      "clocks_event_reasons.hw_slowdown": "Active", "remapped_rows.pending": "Yes",
                      "compute_apps": [{"pid": 4194301, "used_memory": 7242}]})
    smi = pod(state)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "support" / "pynvml_standin"))
    nvml = pod(state, {"nvml": True})
    assert (smi["source"], nvml["source"]) == ("nvidia-smi", "pynvml")
    (a,), (b,) = smi["gpus"], nvml["gpus"]
    for name in gpu_health.HEALTH_FIELDS[1:] + gpu_health.REMAP_FIELDS[1:]:
        if name in ("utilization.gpu", "power.draw", "memory.used") or name.endswith("gpu_idle"):
            continue
        assert a[name] == b[name], name
    assert b["persistence_mode"] is None and b["not_available"]["persistence_mode"] == "Not Supported"
    assert b["compute_apps"] == [{"pid": 4194301, "used_mib": 7242, "alive": False}]
    assert (b["memory.used"], b["power.draw"]) == (61234, 312.5)
