"""The `gpu_health` alert: raised once through the alert path, held while the fault
lasts, cleared after it has been gone a while; a brief hardware slowdown does not alert."""

from __future__ import annotations

import pytest

from sessions.config.policy_model import Alerts
from sessions.events import EventKind
from sessions.health.alerting import CLEAR_AFTER_S, SLOWDOWN_FOR_S
from sessions.snapshot import PodSnapshot, PodState, apply_sample
from sessions.watch.alerts import AlertTracker
from tests.test_doctor_cmd import gpu_faults
from tests.test_health_checks import HEALTHY, XID79


def snapshot(gpu=None, events=()):
    """A pod online whose agent just sent a health reading (as `apply_sample` takes it)."""
    health = {"time": 1.0, "source": "nvidia-smi", "error": None, "gpus": [{**HEALTHY, **(gpu or {})}],
              "kernel_log": {"readable": True, "source": "dmesg", "reason": None, "events": list(events)}}
    pod = PodSnapshot(name="a100", host="h", state=PodState.ONLINE)
    return apply_sample(pod, {"t": 1.0, "gpu_status": "ok", "gpus": [], "health": health})


def run(tracker, snap, now, alerts=Alerts()):
    return [(e.kind, e.message) for e in tracker.update(snap, alerts, lambda name: alerts, now)
            if e.extra.get("alert") == "gpu_health"]


def test_snapshot_keeps_the_reading_and_the_verdicts_until_the_next():
    snap = snapshot({"ecc.errors.uncorrected.volatile.total": 2})
    assert snap.health is not None and snap.health.gpus[0].index == 0
    assert [c.status for c in snap.health_checks if c.check == "ecc"] == ["fail"]
    later = apply_sample(snap, {"t": 2.0, "gpu_status": "ok", "gpus": []})  # a sample without health
    assert later.health is snap.health and later.health_checks == snap.health_checks


def test_uncorrected_ecc_alert_raised_once_and_cleared_after_it_is_gone():
    tracker = AlertTracker()
    bad, good = snapshot({"ecc.errors.uncorrected.volatile.total": 2}), snapshot()
    assert run(tracker, good, 0.0) == []
    assert run(tracker, bad, 10.0) == [(EventKind.ALERT, "GPU 0: 2 uncorrected ECC errors: results may be wrong.")]
    assert run(tracker, bad, 40.0) == []  # the same reading again: not raised twice
    [active] = [a for a in tracker.active("a100") if a.alert == "gpu_health"]
    assert (active.index, active.value) == (0, "2 uncorrected ECC errors: results may be wrong")
    assert run(tracker, good, 50.0) == []  # gone, but not for long enough yet (hysteresis)
    assert run(tracker, bad, 60.0) == []  # back: still the one alert
    assert run(tracker, good, 60.0 + CLEAR_AFTER_S - 1) == []
    assert run(tracker, good, 60.0 + CLEAR_AFTER_S) == [(EventKind.ALERT_CLEARED, "GPU 0 is healthy again.")]
    assert run(tracker, good, 1000.0) == []


def test_xid_and_remap_failure_alert_but_a_program_xid_does_not():
    tracker = AlertTracker()
    assert run(tracker, snapshot(events=[{**XID79, "xid": 13, "text": "Graphics Exception"}]), 0.0) == []
    assert run(tracker, snapshot(events=[XID79]), 1.0) == [
        (EventKind.ALERT, "GPU 0: Xid 79: the GPU fell off the bus.")]
    other = AlertTracker()
    assert run(other, snapshot({"remapped_rows.failure": True}), 0.0) == [
        (EventKind.ALERT, "GPU 0: remapping a bad memory row failed: memory errors can no longer be repaired.")]


def test_hardware_slowdown_alerts_only_when_it_lasts_under_load():
    tracker = AlertTracker()
    slow = {"clocks_event_reasons.hw_slowdown": True}
    assert run(tracker, snapshot({**slow, "utilization.gpu": 0}), 0.0) == []  # idle: not judged
    assert run(tracker, snapshot({**slow, "utilization.gpu": 0}), SLOWDOWN_FOR_S * 2) == []
    start = 1000.0
    assert run(tracker, snapshot(slow), start) == []
    assert run(tracker, snapshot(slow), start + SLOWDOWN_FOR_S / 2) == []
    assert run(tracker, snapshot(), start + SLOWDOWN_FOR_S / 2 + 1) == []  # a brief brake: the clock restarts
    assert run(tracker, snapshot(slow), start + SLOWDOWN_FOR_S) == []
    assert run(tracker, snapshot(slow), start + 2 * SLOWDOWN_FOR_S) == [
        (EventKind.ALERT, "GPU 0: clocks held down by hw_slowdown under load for 2 min.")]


def test_turned_off_in_policy_no_alert_and_one_in_force_is_cleared():
    tracker = AlertTracker()
    bad = snapshot({"ecc.errors.uncorrected.volatile.total": 2})
    assert len(run(tracker, bad, 0.0)) == 1
    off = Alerts(gpu_health=False)
    assert run(tracker, bad, 1.0, off) == [(EventKind.ALERT_CLEARED, "GPU 0 health alert turned off.")]
    assert run(tracker, bad, 2.0, off) == []


@pytest.fixture
def faulty_pod(sshd):
    with gpu_faults(sshd) as pod:
        yield pod


@pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")
async def test_the_fleet_shows_the_agents_health_reading_and_the_watch_alert(faulty_pod, tmp_path, isolated_home):
    """End to end: the agent on the sshd pod reads health (resident nvidia-smi loop, the
    simulated dmesg), the snapshot carries it, and the alert path raises gpu_health."""
    import asyncio

    import yaml

    from sessions.config.loader import parse_config
    from sessions.fleet.facade import Fleet
    from tests.support.pinning import trust

    trust(faulty_pod)
    config = parse_config(yaml.safe_dump({"pods": [faulty_pod.pod_entry("p")]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        sub = fleet.subscribe()
        try:
            async with asyncio.timeout(60):
                async for snap in sub:
                    pod = snap.pod("p")
                    if pod.health is not None and pod.health.kernel_log is not None:
                        break
        finally:
            sub.close()
    assert [g.index for g in pod.health.gpus] == [0, 1]
    events = AlertTracker().update(pod, Alerts(), lambda name: Alerts(), 0.0)
    assert [(e.kind, e.message) for e in events if e.extra.get("alert") == "gpu_health"] == [
        (EventKind.ALERT, "GPU 1: Xid 79: the GPU fell off the bus.")]
