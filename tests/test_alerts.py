"""Alert rules over sequences of hand-built snapshots (sessions.watch.alerts, pure)."""

from __future__ import annotations

import json
from dataclasses import replace
import math

import pytest

from sessions.watch.alerts import AlertTracker
from sessions.events import EventKind
from sessions.config.policy_model import Alerts
from sessions.progress.tracker import Progress
from sessions.snapshot import DiskUsage, GpuSample, PodSnapshot, SessionSnapshot

MIN = 60.0


def pod(state="online", *, temps=(50, 60), utils=(90, 90), disk_pct=50.0, sessions=(), name="a100",
        price=None):
    gpus = tuple(GpuSample(index=i, name="NVIDIA A100-SXM4-80GB", temp_c=t, util_pct=u)
                 for i, (t, u) in enumerate(zip(temps, utils)))
    disk = DiskUsage("/workspace", int(disk_pct * 10), 1000) if disk_pct is not None else None
    return PodSnapshot(name=name, host="h", state=state, gpus=gpus, disk=disk,
                       sessions=tuple(sessions), gpu_status="ok", price_per_hour=price)


def run(name="train", state="running", *, step=100, total=None, loss=None):
    progress = Progress(format="torchrun", step=step, total=total, loss=loss)
    return SessionSnapshot(name, state=state, progress=progress, configured=True)


class Feed:
    """A tracker and one pod's thresholds; `at(minute, snapshot)` feeds one sample."""

    def __init__(self, alerts=Alerts(), per_session=None, tracker=None):
        self.tracker = tracker or AlertTracker()
        self.alerts = alerts
        self.per_session = per_session or {}

    def at(self, minute, snapshot):
        return self.tracker.update(snapshot, self.alerts,
                                   lambda s: self.per_session.get(s, self.alerts), minute * MIN)


def kinds(events):
    return [(e.kind, e.extra["alert"]) for e in events]


RAISED, CLEARED = EventKind.ALERT, EventKind.ALERT_CLEARED


# --- GPU temperature -----------------------------------------------------------------


def test_a_hot_gpu_raises_once_and_clears_only_3_degrees_under_the_threshold():
    f = Feed()
    assert f.at(0, pod(temps=(50, 84))) == []
    (hot,) = f.at(1, pod(temps=(50, 91)))
    assert (hot.kind, hot.pod, hot.session) == (RAISED, "a100", None)
    assert hot.message == "GPU 1 is at 91 °C (threshold 85 °C)."
    assert dict(hot.extra) == {"alert": "gpu_temp_c", "value": 91, "threshold": 85.0, "gpu": 1}
    assert f.at(2, pod(temps=(50, 93))) == []   # still hot: not told again
    assert f.at(3, pod(temps=(50, 83))) == []   # under the line, not 3 under it
    (cool,) = f.at(4, pod(temps=(50, 81)))
    assert (cool.kind, cool.message, dict(cool.extra)) == (CLEARED, "GPU 1 cooled to 81 °C.",
                                                          {"alert": "gpu_temp_c", "gpu": 1})
    assert f.tracker.active() == []


def test_a_gpu_hovering_at_the_line_does_not_flap():
    f = Feed()
    events = []
    for minute, temp in enumerate([84, 85, 84, 86, 83, 85, 84.5, 82.5, 85]):
        events += f.at(minute, pod(temps=(temp, 50)))
    assert kinds(events) == [(RAISED, "gpu_temp_c")]


def test_each_gpu_is_its_own_alert():
    f = Feed()
    assert [e.extra["gpu"] for e in f.at(0, pod(temps=(90, 95)))] == [0, 1]
    (cool,) = f.at(1, pod(temps=(70, 95)))
    assert cool.extra["gpu"] == 0
    assert [(a.alert, a.index) for a in f.tracker.active()] == [("gpu_temp_c", 1)]


def test_missing_temperature_is_unknown_not_cleared():
    f = Feed()
    f.at(0, pod(temps=(90, 50)))
    assert f.at(1, pod(temps=(None, 50))) == []
    assert len(f.tracker.active()) == 1


# --- disk ------------------------------------------------------------------------------


def test_disk_raises_at_the_threshold_and_clears_2_points_under():
    f = Feed()
    assert f.at(0, pod(disk_pct=89.9)) == []
    (full,) = f.at(1, pod(disk_pct=93.4))
    assert full.message == "Disk 93.4 % full at /workspace (threshold 90 %)."
    assert (full.extra["value"], full.extra["threshold"]) == (93.4, 90.0)
    assert f.at(2, pod(disk_pct=89)) == []
    assert f.at(3, pod(disk_pct=None)) == []
    (ok,) = f.at(4, pod(disk_pct=87.5))
    assert (ok.kind, ok.message) == (CLEARED, "Disk down to 87.5 % full.")


# --- idle GPUs -------------------------------------------------------------------------


def test_idle_gpus_raise_after_n_minutes_not_before():
    f = Feed()
    for minute in range(10):
        assert f.at(minute, pod(utils=(0, 3), price=2.4)) == [], minute
    (idle,) = f.at(10, pod(utils=(1, 4), price=2.4))
    assert idle.message == "All 2 GPUs are idle (under 5 %) for 10 min: you are paying at $2.40/h for nothing."
    assert (idle.extra["value"], idle.extra["threshold"]) == (10.0, 10.0)
    assert f.at(11, pod(utils=(0, 0))) == []
    assert f.at(12, pod(utils=(0, 7))) == []      # 5-10 %: not busy enough to clear
    (busy,) = f.at(13, pod(utils=(0, 40)))
    assert (busy.kind, busy.message) == (CLEARED, "GPUs busy again.")


def test_a_busy_sample_restarts_the_idle_clock():
    f = Feed()
    f.at(0, pod(utils=(0, 0)))
    f.at(8, pod(utils=(0, 6)))                    # not idle: the run of idle samples ends
    assert f.at(12, pod(utils=(0, 0))) == []
    assert f.at(21, pod(utils=(0, 0))) == []
    assert kinds(f.at(22, pod(utils=(0, 0)))) == [(RAISED, "gpu_idle_minutes")]


def test_no_gpus_or_unknown_utilisation_is_never_idle():
    f = Feed()
    for minute in range(0, 60, 5):
        assert f.at(minute, pod(temps=(), utils=())) == []
        assert f.at(minute, pod(utils=(0, None))) == []


def test_going_offline_breaks_the_idle_run():
    f = Feed()
    f.at(0, pod(utils=(0, 0)))
    f.at(5, pod("reconnecting", utils=(0, 0)))
    assert f.at(9, pod(utils=(0, 0))) == []
    assert f.at(18, pod(utils=(0, 0))) == []
    assert kinds(f.at(19, pod(utils=(0, 0)))) == [(RAISED, "gpu_idle_minutes")]


# --- stalls ----------------------------------------------------------------------------


def stuck(name="train", *, step=100, since=0.0, total=None):
    """A running session the session book flagged stalled, its step unmoved since minute `since`."""
    return replace(run(name, step=step, total=total), stalled=True, stuck_since=since * MIN)


def test_a_stall_raises_on_the_sessions_own_flag_and_clears_when_the_step_moves():
    """One definition of stuck: the session's `stalled` flag and `stuck_since` clock,
    which the row and the toast read too; the alert keeps no clock of its own."""
    f = Feed()
    assert f.at(0, pod(sessions=[run(step=100)])) == []
    assert f.at(14, pod(sessions=[run(step=100)])) == []  # not flagged: not stalled, whatever the minutes
    (stall,) = f.at(15, pod(sessions=[stuck(step=100, since=0)]))
    assert (stall.kind, stall.session, stall.message) == (RAISED, "train", "No progress for 15 min: stuck at step 100.")
    assert (stall.extra["alert"], stall.extra["threshold"], stall.extra["value"]) == ("stall_minutes", 15.0, 15.0)
    assert f.at(30, pod(sessions=[stuck(step=100, since=0)])) == []
    (moving,) = f.at(31, pod(sessions=[run(step=101)]))
    assert (moving.kind, moving.message) == (CLEARED, "Training is moving again: step 101.")
    assert kinds(f.at(46, pod(sessions=[stuck(step=101, since=31)]))) == [(RAISED, "stall_minutes")]


def test_a_stalled_run_that_reaches_its_total_is_finished():
    f = Feed()
    f.at(0, pod(sessions=[stuck(step=900, total=1000)]))
    (done,) = f.at(60, pod(sessions=[run(step=1000, total=1000)]))
    assert (done.kind, done.message) == (CLEARED, "Run finished at step 1000.")


def test_a_session_that_stops_running_clears_its_stall_and_no_step_is_no_stall():
    f = Feed()
    f.at(20, pod(sessions=[stuck(step=100, since=0)]))
    (gone,) = f.at(21, pod(sessions=[run(state="exited", step=100)]))
    assert (gone.kind, gone.message) == (CLEARED, "Session no longer running.")
    assert f.at(60, pod(sessions=[run(state="exited", step=100)])) == []
    assert f.at(120, pod(sessions=[stuck("other", step=None)])) == []


# --- NaN and spikes ---------------------------------------------------------------------


@pytest.mark.parametrize("bad, said, value", [(math.nan, "NaN", "nan"), (math.inf, "inf", "inf"),
                                               (-math.inf, "-inf", "-inf")])
def test_a_non_finite_loss_raises_once_and_clears_on_a_finite_one(bad, said, value):
    f = Feed()
    (nan,) = f.at(0, pod(sessions=[run(step=10, loss=bad)]))
    assert nan.message == f"Loss is {said} at step 10: the run is diverging."
    assert dict(nan.extra) == {"alert": "nan_loss", "value": value, "threshold": True}
    json.loads(nan.json_line())   # valid JSON: no bare NaN
    assert f.at(1, pod(sessions=[run(step=11, loss=bad)])) == []
    (ok,) = f.at(2, pod(sessions=[run(step=12, loss=2.5)]))
    assert (ok.kind, ok.message) == (CLEARED, "Loss is finite again: 2.5.")


def feed_losses(f, losses, start_step=0):
    events = []
    for i, loss in enumerate(losses):
        events += f.at(i / 60, pod(sessions=[run(step=start_step + i, loss=loss)]))
    return events


def test_a_loss_spike_over_the_median_raises_and_clears_when_it_falls_back():
    f = Feed()
    assert feed_losses(f, [2.0, 2.1, 1.9, 2.0, 2.2]) == []
    (spike,) = feed_losses(f, [9.0], start_step=5)
    assert spike.message == "Loss spiked to 9 at step 5: over 3x the recent median 2."
    assert dict(spike.extra) == {"alert": "loss_spike", "value": 9.0, "threshold": 3.0, "median": 2.0}
    assert feed_losses(f, [8.0], start_step=6) == []    # still spiking: told once
    (back,) = feed_losses(f, [2.3], start_step=7)
    assert (back.kind, back.message) == (CLEARED, "Loss back to 2.3, within 3x the recent median 2.1.")


def test_no_spike_is_judged_before_5_observations_and_repeats_of_a_step_count_once():
    f = Feed()
    assert feed_losses(f, [1.0, 1.0, 1.0, 1.0, 50.0]) == []   # only 4 before it
    g = Feed()
    for minute in range(10):                                  # the same step, sampled 10 times
        assert g.at(minute, pod(sessions=[run(step=1, loss=1.0)])) == []
    assert feed_losses(g, [9.0], start_step=2) == []          # one observation, not ten


def test_the_median_is_of_the_previous_20_observations():
    f = Feed()
    feed_losses(f, [10.0] * 5 + [1.0] * 20)
    assert kinds(feed_losses(f, [3.5], start_step=25)) == [(RAISED, "loss_spike")]


def test_a_log_without_steps_records_an_observation_when_the_loss_changes():
    f = Feed()
    for i, loss in enumerate([1.0, 1.1, 1.0, 1.2, 1.0]):
        f.at(i, pod(sessions=[run(step=None, loss=loss)]))
    assert kinds(f.at(6, pod(sessions=[run(step=None, loss=4.0)]))) == [(RAISED, "loss_spike")]
    assert f.at(7, pod(sessions=[run(step=None, loss=4.0)])) == []


# --- thresholds off, offline pods, sessions gone --------------------------------------


def hot_everything():
    return pod(temps=(95, 95), utils=(0, 0), disk_pct=99,
               sessions=[run(step=100, loss=math.nan)])


def test_thresholds_off_raise_nothing():
    off = Alerts(gpu_temp_c=None, disk_used_pct=None, stall_minutes=None, loss_spike=None,
                 nan_loss=False, gpu_idle_minutes=None)
    f = Feed(off)
    for minute in range(0, 120, 5):
        assert f.at(minute, hot_everything()) == []
    assert f.tracker.active() == []


def test_turning_a_threshold_off_clears_its_alerts_saying_so():
    f = Feed()
    f.at(0, pod(temps=(95, 50), disk_pct=99))
    f.alerts = Alerts(gpu_temp_c=None)
    (off,) = f.at(1, pod(temps=(95, 50), disk_pct=99))
    assert (off.kind, off.message, off.extra["gpu"]) == (CLEARED, "GPU 0 temperature alert turned off.", 0)
    assert [a.alert for a in f.tracker.active()] == ["disk_used_pct"]


def test_an_offline_pod_keeps_its_alerts_and_says_nothing():
    f = Feed()
    raised = f.at(0, pod(temps=(95, 50), disk_pct=99, sessions=[run(loss=math.nan)]))
    assert len(raised) == 3
    for state in ("reconnecting", "offline", "preempted"):
        assert f.at(1, pod(state, temps=(), utils=(), disk_pct=None, sessions=())) == []
    assert len(f.tracker.active()) == 3
    assert f.at(2, pod(temps=(95, 50), disk_pct=99, sessions=[run(loss=math.nan)])) == []


def test_a_session_that_disappears_has_its_alerts_cleared():
    f = Feed()
    f.at(0, pod(sessions=[run(step=1, loss=math.nan), run("eval", step=3)]))
    (gone,) = f.at(1, pod(sessions=[run("eval", step=4)]))
    assert (gone.kind, gone.session, gone.message) == (CLEARED, "train", "Session gone: NaN loss alert cleared.")
    assert f.tracker.active() == []


def test_per_session_thresholds_come_from_the_callable():
    f = Feed(per_session={"quick": Alerts(stall_minutes=2), "slow": Alerts(stall_minutes=None)})
    asked = []
    alerts = Alerts()

    def session_alerts(name):
        asked.append(name)
        return f.per_session.get(name, alerts)

    out = []
    for minute in (0, 2, 15):  # flagged as the session book flags them: each at its own threshold
        snap = pod(sessions=[stuck("quick") if minute >= 2 else run("quick"), run("slow"),
                             stuck("default") if minute >= 15 else run("default")])
        out += f.tracker.update(snap, alerts, session_alerts, minute * MIN)
    assert [(e.session, e.extra["threshold"]) for e in out] == [("quick", 2), ("default", 15.0)]
    assert asked == ["quick", "slow", "default"] * 3


# --- active() and the state round trip -------------------------------------------------


def test_active_lists_alerts_for_display():
    f = Feed()
    f.at(0, pod(temps=(95, 50), sessions=[run(loss=math.inf)]))
    f.at(0, pod(name="h100", disk_pct=95))
    shown = [(a.pod, a.session, a.alert, a.index, a.since) for a in f.tracker.active()]
    assert shown == [("a100", None, "gpu_temp_c", 0, 0.0), ("a100", "train", "nan_loss", None, 0.0),
                     ("h100", None, "disk_used_pct", None, 0.0)]
    assert [a.alert for a in f.tracker.active("h100")] == ["disk_used_pct"]
    assert f.tracker.active()[0].message == "GPU 0 is at 95 °C (threshold 85 °C)."


def test_the_state_round_trip_does_not_re_raise_and_keeps_the_clocks():
    f = Feed()
    f.at(0, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=100, loss=math.nan)]))
    for minute in range(5):
        f.at(minute, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=200 + minute, loss=2.0)]))
    f.at(5, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=300, loss=2.0)]))
    state = json.loads(json.dumps(f.tracker.to_state(), allow_nan=False))   # strict JSON

    g = Feed(tracker=AlertTracker.from_state(state))
    assert [a.alert for a in g.tracker.active()] == [a.alert for a in f.tracker.active()]
    assert g.at(6, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=300, loss=2.0)])) == []
    # the idle clock carries on from minute 0, the loss history too (the stall clock is
    # the session's own, `stuck_since`)
    assert kinds(g.at(10, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=300, loss=2.0)]))) == [
        (RAISED, "gpu_idle_minutes")]
    stalled = replace(run(step=300, loss=2.0), stalled=True, stuck_since=5 * MIN)
    assert kinds(g.at(20, pod(temps=(95, 50), utils=(0, 0), sessions=[stalled]))) == [
        (RAISED, "stall_minutes")]
    assert kinds(g.at(21, pod(temps=(95, 50), utils=(0, 0), sessions=[run(step=301, loss=7.0)]))) == [
        (CLEARED, "stall_minutes"), (RAISED, "loss_spike")]


@pytest.mark.parametrize("state", [{}, {"version": 99, "active": [{}]}, {"version": 1, "active": [{"pod": 1}],
                                                                          "stall": [[1]], "losses": ["x"]}])
def test_an_unreadable_state_starts_afresh(state):
    assert AlertTracker.from_state(state).active() == []


def test_load_state_replaces_what_a_tracker_knew():
    f = Feed()
    f.at(0, pod(temps=(95, 50)))
    saved = f.tracker.to_state()
    g = Feed()
    g.at(0, pod(disk_pct=99))
    g.tracker.load_state(saved)
    assert [a.alert for a in g.tracker.active()] == ["gpu_temp_c"]
    assert g.at(1, pod(temps=(95, 50))) == []
