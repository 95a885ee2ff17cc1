"""Which changes between two fleet snapshots become toasts (tui.notify_rules, pure)."""

from __future__ import annotations

import pytest

from sessions.progress.tracker import Progress
from sessions.snapshot import DiskUsage, FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot
from tui.notify_rules import Cooldown, Note, Thresholds, changes


def pod(state="online", *, temps=(50, 60), disk_pct=50.0, sessions=(), error=None, name="a100"):
    gpus = tuple(GpuSample(index=i, name="NVIDIA A100-SXM4-80GB", temp_c=t) for i, t in enumerate(temps))
    disk = DiskUsage("/workspace", int(disk_pct * 10), 1000) if disk_pct is not None else None
    return PodSnapshot(name=name, host="h", state=state, gpus=gpus, disk=disk, sessions=tuple(sessions), error=error)


def fleet(*pods):
    return FleetSnapshot(tuple(pods))


def run(state="running", *, stalled=False, exit_status=None, step=120):
    return SessionSnapshot("train", state=state, stalled=stalled, exit_status=exit_status,
                           progress=Progress(format="torchrun", step=step), configured=True)


def one(notes: list[Note]) -> Note:
    assert len(notes) == 1, notes
    return notes[0]


def test_first_snapshot_and_unchanged_pods_say_nothing():
    now = fleet(pod())
    assert changes(None, now) == []
    assert changes(now, now) == []
    assert changes(fleet(pod(temps=(90, 90))), fleet(pod(temps=(91, 92)))) == []  # already hot


@pytest.mark.parametrize(
    "before, after, severity, text",
    [
        ("online", "reconnecting", "error", "Connection lost: timeout. Retrying."),
        ("online", "offline", "error", "Connection lost: timeout. Retrying."),
        ("reconnecting", "online", "information", "Connection restored."),
        ("offline", "online", "information", "Connection restored."),
    ],
)
def test_connection_lost_and_restored(before, after, severity, text):
    note = one(changes(fleet(pod(before, error="timeout")), fleet(pod(after, error="timeout"))))
    assert (note.title, note.message, note.severity, note.quiet_s) == ("a100", text, severity, 0.0)


def test_a_preemption_is_told_as_such_not_as_a_lost_link():
    after = pod("preempted", error="preempted: runpod took the instance back (EXITED)")
    note = one(changes(fleet(pod("reconnecting", error="lost")), fleet(after)))
    assert (note.message, note.severity) == ("Preempted: runpod took the instance back (EXITED).", "error")


def test_connecting_for_the_first_time_is_not_news():
    assert changes(fleet(pod("connecting")), fleet(pod("online"))) == []
    assert changes(fleet(pod("connecting")), fleet(pod("offline", error="refused"))) == []


def test_session_exit_status_sets_the_severity():
    ok = one(changes(fleet(pod(sessions=[run()])), fleet(pod(sessions=[run("exited", exit_status=0)]))))
    assert (ok.message, ok.severity) == ("Session 'train' exited with status 0.", "information")
    bad = one(changes(fleet(pod(sessions=[run()])), fleet(pod(sessions=[run("exited", exit_status=1)]))))
    assert (bad.message, bad.severity) == ("Session 'train' exited with status 1.", "error")


def test_a_stall_is_told_once_with_the_step():
    note = one(changes(fleet(pod(sessions=[run()])), fleet(pod(sessions=[run(stalled=True)]))))
    assert note.message.startswith("Session 'train' has stalled at step 120") and note.severity == "warning"
    assert changes(fleet(pod(sessions=[run(stalled=True)])), fleet(pod(sessions=[run(stalled=True)]))) == []


def test_a_gpu_crossing_its_threshold_warns_with_index_and_temperature():
    note = one(changes(fleet(pod(temps=(50, 84))), fleet(pod(temps=(50, 87)))))
    assert note.message == "GPU 1 is at 87 °C (threshold 85 °C)." and note.key == "a100:gpu1:hot"
    assert changes(fleet(pod(temps=(50, 84))), fleet(pod(temps=(50, 87))), Thresholds(gpu_temp_c=90)) == []


def test_session_and_gpu_changes_count_only_while_online_on_both_sides():
    # A reconnect can bring a whole new picture; only the connection change is news.
    notes = changes(fleet(pod("reconnecting", temps=(50, 50))), fleet(pod("online", temps=(95, 95))))
    assert [n.message for n in notes] == ["Connection restored."]


def test_disk_over_ninety_percent_warns_once():
    note = one(changes(fleet(pod(disk_pct=89.0)), fleet(pod(disk_pct=91.0))))
    assert note.message == "Disk /workspace is 91% full: checkpoints may fail to save."
    assert changes(fleet(pod(disk_pct=91.0)), fleet(pod(disk_pct=95.0))) == []
    assert changes(fleet(pod(disk_pct=None)), fleet(pod(disk_pct=None))) == []


def test_cooldown_quiets_a_value_hovering_at_its_threshold_but_not_connection_news():
    cool = Cooldown()
    hot = Note("a100:gpu0:hot", "a100", "GPU 0 is at 85 °C")
    assert cool.admit([hot], now=0.0) == [hot]
    assert cool.admit([hot], now=30.0) == []
    assert cool.admit([hot], now=61.0) == [hot]
    lost = Note("a100:conn", "a100", "Connection lost.", quiet_s=0.0)
    assert cool.admit([lost], 100.0) == [lost] and cool.admit([lost], 100.5) == [lost]
