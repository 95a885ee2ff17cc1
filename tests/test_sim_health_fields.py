"""The simulated nvidia-smi and dmesg answer the health fields in the real formats.

Issue 17's checks read ECC counts, remapped rows, clock event reasons, PCIe link and
compute apps through nvidia-smi's own field names; a reader tested against a simulator
that invented its own format would break on a real pod. The expected texts below are
in the real tool's layout (header names, units only on memory, ``Active``/``Not Active``,
``Yes``/``No``, ``[N/A]`` and ``[Not Supported]`` verbatim).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from backends import sim_dmesg
from backends import sim_nvidia_smi as sim

REMAP = ("--query-remapped-rows=gpu_bus_id,gpu_uuid,remapped_rows.correctable,remapped_rows.uncorrectable,"
         "remapped_rows.pending,remapped_rows.failure")


def _state(**gpu):
    state = sim.load_state("/nonexistent")
    state["gpus"][0].update(gpu)
    return state


def test_default_gpu_answers_every_health_field_healthy():
    fields = ["ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
              "ecc.errors.corrected.aggregate.total", "ecc.errors.uncorrected.aggregate.total",
              "retired_pages.pending", "pcie.link.gen.current", "pcie.link.gen.max",
              "pcie.link.width.current", "pcie.link.width.max", "persistence_mode",
              "clocks_event_reasons.hw_slowdown", "clocks_throttle_reasons.sw_power_cap"]
    rc, out = sim.run(["--query-gpu=" + ",".join(fields), "--format=csv"], sim.load_state("/nonexistent"))
    assert rc == 0
    assert out.splitlines() == [", ".join(fields), "0, 0, 0, 0, [N/A], 4, 4, 16, 16, Enabled, Not Active, Not Active"]


def test_geforce_placeholders_and_both_clock_reason_spellings():
    state = _state(**{"ecc.errors.uncorrected.volatile.total": "[N/A]", "persistence_mode": "[Not Supported]",
                      "clocks_throttle_reasons.hw_slowdown": "Active"})
    del state["gpus"][0]["clocks_event_reasons.hw_slowdown"]
    rc, out = sim.run(["--query-gpu=ecc.errors.uncorrected.volatile.total,persistence_mode,"
                       "clocks_event_reasons.hw_slowdown,clocks_throttle_reasons.hw_slowdown",
                       "--format=csv,noheader,nounits"], state)
    assert (rc, out) == (0, "[N/A], [Not Supported], Active, Active\n")


def test_old_driver_refuses_the_new_clock_reason_names():
    state = _state()
    state["driver_version"] = "470.82.01"
    rc, out = sim.run(["--query-gpu=clocks_event_reasons.hw_slowdown", "--format=csv"], state)
    assert rc == sim.EXIT_BAD_ARGUMENTS
    assert out.startswith('Field "clocks_event_reasons.hw_slowdown" is not a valid field to query.')
    rc, out = sim.run(["--query-gpu=clocks_throttle_reasons.hw_slowdown", "--format=csv,noheader"], state)
    assert (rc, out) == (0, "Not Active\n")


def test_compute_apps_rows_header_alone_when_none():
    state = _state(compute_apps=[{"pid": 4135549, "used_memory": 7242}, {"pid": 77, "used_memory": "[N/A]"}])
    rc, out = sim.run(["--query-compute-apps=pid,used_memory", "--format=csv"], state)
    assert (rc, out) == (0, "pid, used_gpu_memory [MiB]\n4135549, 7242 MiB\n77, [N/A]\n")
    rc, out = sim.run(["--query-compute-apps=gpu_uuid,pid,used_gpu_memory", "--format=csv,noheader,nounits"], state)
    assert out.splitlines()[0] == "GPU-5a3c2f1e-8b7d-4c6a-9e0f-1d2b3c4d5e6f, 4135549, 7242"
    assert sim.run(["--query-compute-apps=pid,used_memory", "--format=csv"], _state()) == (
        0, "pid, used_gpu_memory [MiB]\n")
    rc, out = sim.run(["--query-compute-apps=pid,bogus", "--format=csv"], state)
    assert rc == sim.EXIT_BAD_ARGUMENTS


def test_remapped_rows_real_columns():
    state = _state(**{"remapped_rows.uncorrectable": 1, "remapped_rows.pending": "Yes"})
    rc, out = sim.run([REMAP, "--format=csv"], state)
    assert rc == 0
    assert out.splitlines() == [
        "gpu_bus_id, gpu_uuid, remapped_rows.correctable, remapped_rows.uncorrectable, "
        "remapped_rows.pending, remapped_rows.failure",
        "00000000:07:00.0, GPU-5a3c2f1e-8b7d-4c6a-9e0f-1d2b3c4d5e6f, 0, 1, Yes, No",
    ]


@pytest.fixture
def kernel(tmp_path):
    """Run the installed dmesg/journalctl stand-ins with a kernel_log state."""
    sim_dmesg.install_wrapper(str(tmp_path))
    state_path = tmp_path / "state.json"

    def run(program, log):
        state_path.write_text(json.dumps({"gpus": [], "kernel_log": log}))
        env = {"PATH": "/usr/bin:/bin", sim.STATE_ENV: str(state_path)}
        done = subprocess.run([str(tmp_path / program)], capture_output=True, text=True, env=env, timeout=10)
        return done.returncode, done.stdout, done.stderr

    return run


def test_dmesg_prints_real_xid_lines(kernel):
    line = sim_dmesg.xid_line("0000:3b:00", 79, 1234, "GPU has fallen off the bus.")
    assert line == "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus."
    rc, out, _ = kernel("dmesg", {"lines": [line]})
    assert rc == 0
    last = out.splitlines()[-1]
    assert last.startswith("[") and last.endswith("] " + line)
    rc, out, _ = kernel("journalctl", {"lines": [line]})
    assert rc == 0 and out.splitlines()[-1].endswith("kernel: " + line)


def test_dmesg_denied_like_a_container(kernel):
    assert kernel("dmesg", {"denied": True}) == (1, "", sim_dmesg.DENIED_MESSAGE + "\n")
    rc, out, err = kernel("journalctl", {"denied": True})
    assert rc == 1 and out == "-- No entries --\n" and err == sim_dmesg.NO_JOURNAL_MESSAGE + "\n"
