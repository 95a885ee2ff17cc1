"""Each doctor check's pass, warn and fail, with the words a person reads.

The reports are built the way the reader builds them from the simulated nvidia-smi
(nvidia-smi's field names, None plus a `not_available` word for what the driver does
not give), so these tables are the checks' whole contract.
"""

from __future__ import annotations

import pytest

from sessions.health import checks as hc
from sessions.health.doctor import as_preflight
from sessions.health.report import parse_report

HEALTHY = {
    "index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "pci.bus_id": "00000000:3B:00.0",
    "utilization.gpu": 97, "power.draw": 650.0, "memory.used": 70000,
    "ecc.errors.corrected.volatile.total": 0, "ecc.errors.uncorrected.volatile.total": 0,
    "ecc.errors.corrected.aggregate.total": 3, "ecc.errors.uncorrected.aggregate.total": 0,
    "retired_pages.pending": None, "pcie.link.gen.current": 5, "pcie.link.gen.max": 5,
    "pcie.link.width.current": 16, "pcie.link.width.max": 16, "persistence_mode": True,
    "clocks_event_reasons.hw_slowdown": False, "clocks_event_reasons.hw_thermal_slowdown": False,
    "clocks_event_reasons.hw_power_brake_slowdown": False, "clocks_event_reasons.sw_thermal_slowdown": False,
    "clocks_event_reasons.sw_power_cap": False, "clocks_event_reasons.gpu_idle": False,
    "remapped_rows.correctable": 0, "remapped_rows.uncorrectable": 0, "remapped_rows.pending": False,
    "remapped_rows.failure": False, "compute_apps": [{"pid": 10, "used_mib": 70000, "alive": True}],
    "not_available": {"retired_pages.pending": "[N/A]"},
}
XID79 = {"pci": "0000:3b:00", "xid": 79, "pid": "1234", "text": "pid=1234, GPU has fallen off the bus.",
         "uptime_s": 812.5, "line": "[  812.500000] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus."}


def report(gpu=None, events=(), readable=True, reason=None, error=None):
    gpu = {**HEALTHY, **(gpu or {})}
    return parse_report({"time": 1.0, "source": "nvidia-smi", "error": error, "gpus": [] if error else [gpu],
                         "kernel_log": {"readable": readable, "source": "dmesg" if readable else None,
                                        "reason": reason, "events": list(events)}})


def verdict(name, **kwargs):
    found = [c for c in hc.evaluate(report(**kwargs)) if c.check == name and c.gpu == 0]
    assert len(found) == 1
    return found[0]


def test_a_healthy_gpu_passes_every_check():
    checks = hc.evaluate(report())
    assert [c.check for c in checks] == list(hc.CHECKS)
    assert {c.status for c in checks} == {"pass"}
    assert verdict("retired-pages").reason == "not available on this GPU ([N/A])"


@pytest.mark.parametrize(("name", "gpu", "events", "status", "reason", "next_step"), [
    ("xid", {}, [XID79], "fail", "Xid 79: the GPU fell off the bus", "checkpoint now and replace this pod"),
    ("xid", {}, [{**XID79, "xid": 13, "text": "Graphics Exception"}], "warn",
     "Xid 13: graphics engine exception, usually the program (an out-of-range access)", "check the program"),
    ("xid", {}, [{**XID79, "pci": "0000:07:00"}], "pass", "no Xid errors in the kernel log", ""),
    ("ecc", {"ecc.errors.uncorrected.volatile.total": 2}, [], "fail",
     "2 uncorrected ECC errors: results may be wrong", "checkpoint now and replace this pod"),
    ("ecc", {"ecc.errors.uncorrected.aggregate.total": 1}, [], "warn",
     "1 uncorrected ECC error in this GPU's lifetime, none since the driver loaded", "watch it"),
    ("ecc", {"ecc.errors.corrected.volatile.total": 5000}, [], "warn",
     "5000 corrected ECC errors since the driver loaded", "watch it"),
    ("ecc", {"ecc.errors.corrected.volatile.total": None, "ecc.errors.uncorrected.volatile.total": None,
             "ecc.errors.uncorrected.aggregate.total": None,
             "not_available": {"ecc.errors.corrected.volatile.total": "[N/A]",
                               "ecc.errors.uncorrected.volatile.total": "[N/A]",
                               "ecc.errors.uncorrected.aggregate.total": "[N/A]"}}, [], "pass",
     "not available on this GPU ([N/A])", ""),
    ("retired-pages", {"retired_pages.pending": True, "not_available": {}}, [], "warn",
     "memory pages wait to be retired at the next GPU reset", "ask the provider to reset the GPU"),
    ("remapped-rows", {"remapped_rows.failure": True}, [], "fail",
     "remapping a bad memory row failed: memory errors can no longer be repaired", "checkpoint now"),
    ("remapped-rows", {"remapped_rows.pending": True, "remapped_rows.uncorrectable": 1}, [], "warn",
     "a remapped memory row waits for a GPU reset", "ask the provider to reset the GPU"),
    ("remapped-rows", {"remapped_rows.uncorrectable": 2}, [], "pass", "2 rows remapped, none pending", ""),
    ("clocks", {"clocks_event_reasons.hw_slowdown": True}, [], "warn",
     "clocks held down by hw_slowdown (half speed or less)", "check cooling and power"),
    ("clocks", {"clocks_event_reasons.sw_thermal_slowdown": True}, [], "warn",
     "clocks lowered: the GPU is too hot (sw_thermal_slowdown)", "ask the provider about cooling"),
    ("clocks", {"clocks_event_reasons.sw_power_cap": True}, [], "pass",
     "at its power limit (normal under full load)", ""),
    ("persistence", {"persistence_mode": False}, [], "warn",
     "persistence mode is off: each new CUDA program waits while the driver sets the GPU up", "sudo nvidia-smi -pm 1"),
    ("zombie-vram", {"compute_apps": [{"pid": 4135549, "used_mib": 7242, "alive": False},
                                      {"pid": 10, "used_mib": 100, "alive": True}]}, [], "warn",
     "7242 MiB held by pid 4135549, which no longer exists on the pod", "kill leftover processes"),
    ("zombie-vram", {"compute_apps": None, "not_available": {"compute_apps": "[Insufficient Permissions]"}}, [],
     "pass", "not available on this GPU ([Insufficient Permissions])", ""),
])
def test_each_check(name, gpu, events, status, reason, next_step):
    check = verdict(name, gpu=gpu, events=events)
    assert (check.status, check.reason) == (status, reason)
    assert check.next_step.startswith(next_step)


@pytest.mark.parametrize(("util", "status", "reason"), [
    (0, "pass", "PCIe x4 gen1 while idle (links slow down at idle to save power; judged under load)"),
    (None, "pass", "PCIe x4 gen1 with utilization unknown (links slow down at idle to save power; judged under load)"),
    (97, "fail", "PCIe x4 of x16 under load: transfers to this GPU are 4x slower"),
])
def test_pcie_down_training_ignored_at_idle_flagged_under_load(util, status, reason):
    check = verdict("pcie", gpu={"utilization.gpu": util, "pcie.link.width.current": 4, "pcie.link.gen.current": 1})
    assert (check.status, check.reason) == (status, reason)
    if status == "fail":
        assert check.next_step == "ask the provider for another host"


def test_pcie_half_width_or_lower_gen_under_load_warns():
    assert verdict("pcie", gpu={"pcie.link.width.current": 8}).reason == (
        "PCIe x8 of x16 under load: transfers to this GPU are 2x slower")
    assert verdict("pcie", gpu={"pcie.link.width.current": 8}).status == "warn"
    check = verdict("pcie", gpu={"pcie.link.gen.current": 3})
    assert (check.status, check.reason) == ("warn", "PCIe gen3 of gen5 under load: transfers to this GPU are slower")


def test_kernel_log_unreadable_is_said_and_stray_xid_is_the_pods():
    checks = hc.evaluate(report(readable=False, reason="the kernel log cannot be read here (dmesg: denied)"))
    pod = [c for c in checks if c.gpu is None]
    assert [(c.check, c.status, c.reason) for c in pod] == [
        ("xid", "warn", "Xid errors cannot be checked: the kernel log cannot be read here (dmesg: denied)")]
    stray = hc.evaluate(report(events=[{**XID79, "pci": "0000:07:00"}]))[-1]
    assert (stray.gpu, stray.status) == (None, "warn") and stray.reason.startswith("Xid 79 on PCI 0000:07:00")


def test_no_driver_fails_once():
    checks = hc.evaluate(report(error="nvidia-smi: command not found (no NVIDIA driver on this pod)"))
    assert [(c.check, c.status) for c in checks] == [("gpus", "fail")]


def test_preflight_rows_one_per_check_worst_gpu_named():
    two = parse_report({"gpus": [HEALTHY, {**HEALTHY, "index": 1, "pci.bus_id": "00000000:5E:00.0",
                                           "ecc.errors.uncorrected.volatile.total": 2}],
                        "kernel_log": {"readable": True, "events": []}})
    rows = as_preflight(hc.evaluate(two))
    assert [r[0] for r in rows] == ["health-" + name for name in hc.CHECKS]
    ecc = rows[1]
    assert ecc[:3] == ("health-ecc", "fail", "GPU 1: 2 uncorrected ECC errors: results may be wrong")
    assert rows[0] == ("health-xid", "pass", "2 GPUs: no Xid errors in the kernel log", "")
    assert hc.gpu_status(hc.evaluate(two)) == {0: ("pass", "no Xid errors in the kernel log"),
                                               1: ("fail", "2 uncorrected ECC errors: results may be wrong")}
