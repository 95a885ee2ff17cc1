"""GPU health in the TUI: the fleet row marks a pod with a failing GPU, the pod screen's
GPU panel marks the GPU (✗ failing, ! warning) and says why and what to do."""

from __future__ import annotations

from textual.app import App, ComposeResult

from sessions.snapshot import PodSnapshot, PodState, apply_sample
from tests.test_health_checks import HEALTHY
from tui import fleet_rows
from tui.widgets.gpu_panel import GpuPanel, GpuRow


def pod_with(*gpu_changes):
    """An online pod with one GPU per change dict, and a health reading of them."""
    healths, gpus = [], []
    for index, change in enumerate(gpu_changes):
        healths.append({**HEALTHY, "index": index, "uuid": f"GPU-{index}",
                        "pci.bus_id": f"00000000:{0x3b + index:02X}:00.0", **change})
        gpus.append({"index": index, "name": "NVIDIA H100 80GB HBM3", "temp_c": 60.0, "util_pct": 97.0})
    pod = PodSnapshot(name="h100", host="h", state=PodState.ONLINE)
    return apply_sample(pod, {"t": 1.0, "gpu_status": "ok", "gpus": gpus, "health": {
        "gpus": healths, "kernel_log": {"readable": True, "events": []}}})


def test_fleet_row_marks_a_pod_with_a_failing_gpu_only():
    healthy = fleet_rows.gpus_cell(pod_with({}, {}))
    failing = fleet_rows.gpus_cell(pod_with({}, {"ecc.errors.uncorrected.volatile.total": 2}))
    warning = fleet_rows.gpus_cell(pod_with({"persistence_mode": False}))
    assert healthy[0] == ("2×H100  ", "")
    assert failing[0] == ("2×H100 ✗", "failed")
    assert warning[0] == ("1×H100  ", "")  # a warning is for the pod screen, not the fleet row
    assert len(healthy) == len(failing) == 3  # same columns, same widths


class PanelApp(App):
    def compose(self) -> ComposeResult:
        yield GpuPanel()


async def test_pod_screen_marks_the_gpu_and_says_why():
    pod = pod_with({"persistence_mode": False}, {"ecc.errors.uncorrected.volatile.total": 2})
    app = PanelApp()
    async with app.run_test() as pilot:
        panel = app.query_one(GpuPanel)
        panel.show(pod, lambda index: [])
        await pilot.pause()
        await pilot.pause()
        rows = list(panel.query_children(GpuRow))
        names = [str(row.children[0].render()) for row in rows]
        assert names == ["! 0 H100 80GB HBM3", "✗ 1 H100 80GB HBM3"]
        assert rows[0].children[0].has_class("-warm") and rows[1].children[0].has_class("-hot")
        notes = panel.query_one(".gpu-health")
        assert str(notes.render()).splitlines() == [
            "! GPU 0 persistence: persistence mode is off: each new CUDA program waits while the driver sets "
            "the GPU up — sudo nvidia-smi -pm 1, or ask the provider",
            "✗ GPU 1 ecc: 2 uncorrected ECC errors: results may be wrong — checkpoint now and replace this pod",
        ]
        assert notes.display and notes.has_class("-hot")
        panel.show(pod_with({}, {}), lambda index: [])  # healed: marks and notes go away
        await pilot.pause()
        assert [str(row.children[0].render()) for row in rows] == ["0 H100 80GB HBM3", "1 H100 80GB HBM3"]
        assert not notes.display



def test_status_json_gives_each_gpu_its_worst_health_check():
    from tui.status_json import pod_json

    doc = pod_json(pod_with({}, {"ecc.errors.uncorrected.volatile.total": 2}))
    assert [g["health"] for g in doc["gpus"]] == [
        {"status": "pass", "check": "xid", "reason": "no Xid errors in the kernel log", "next_step": ""},
        {"status": "fail", "check": "ecc", "reason": "2 uncorrected ECC errors: results may be wrong",
         "next_step": "checkpoint now and replace this pod"},
    ]
    assert pod_json(PodSnapshot(name="p", host="h"))["gpus"] == []


def test_a_stalled_session_row_says_what_watch_diagnosed():
    from sessions.events import EventKind, WatchEvent
    from sessions.snapshot import SessionSnapshot
    from tui.stall_notes import SLOW_SHOWN_S, StallNotes
    from tui.widgets.sessions_panel import state_word

    notes = StallNotes()
    notes.take(WatchEvent(EventKind.ALERT, "p", "stalled: hung: ...", session="train",
                          extra={"alert": "stall_diagnosis", "value": "hung"}), now=100.0)
    notes.take(WatchEvent(EventKind.ALERT, "p", "GPU 0: ...", extra={"alert": "gpu_health", "value": "x"}), now=100.0)
    stalled = SessionSnapshot("train", state="running", configured=True, stalled=True)
    moving = SessionSnapshot("train", state="running", configured=True)
    assert state_word(stalled, notes.word("p", "train", True)) == "hung"
    assert state_word(moving, notes.word("p", "train", False)) == "running"  # moving again: no stall word
    assert state_word(stalled, notes.word("p", "other", True)) == "stalled"  # nothing diagnosed yet
    notes.take(WatchEvent(EventKind.ALERT, "p", "slow: ...", session="train",
                          extra={"alert": "stall_diagnosis", "value": "slow"}), now=200.0)
    assert state_word(moving, notes.word("p", "train", False, now=250.0)) == "slow"
    assert state_word(moving, notes.word("p", "train", False, now=200.0 + SLOW_SHOWN_S)) == "running"
