"""Which toasts the TUI shows for what happened: the Fleet's `ConnectionNews` (a pod's
state changes) and the real Watcher (sessions, alerts) turn snapshot changes into
events on the one stream, `tui.event_toasts` words them, its `Cooldown` holds back
repeats. Pure of Textual and SSH: the snapshots are handed to both as the Fleet hands
them (test_tui_pilot.py drives the same chain from real pods).

These are the toasts `tui/notify_rules.py` used to derive from snapshots on its own:
each still appears exactly once per transition, now from the event watch prints.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import EventKind, EventStream, WatchEvent
from sessions.fleet.connection_news import ConnectionNews
from sessions.progress.tracker import Progress
from sessions.snapshot import DiskUsage, GpuSample, PodSnapshot, SessionSnapshot
from sessions.watch.state import open_state
from sessions.watch.watcher import Watcher
from tui.event_toasts import Cooldown, Toast, sentence, toast_for


def pod(state="online", *, temps=(50, 60), disk_pct=50.0, sessions=(), error=None, name="a100"):
    gpus = tuple(GpuSample(index=i, name="NVIDIA A100-SXM4-80GB", temp_c=t) for i, t in enumerate(temps))
    disk = DiskUsage("/workspace", int(disk_pct * 10), 1000) if disk_pct is not None else None
    return PodSnapshot(name=name, host="h", state=state, gpus=gpus, disk=disk, sessions=tuple(sessions), error=error)


def run(state="running", *, exit_status=None, step=120):
    return SessionSnapshot("train", state=state, exit_status=exit_status,
                           progress=Progress(format="torchrun", step=step, total=1000), configured=True)


class Screen:
    """The chain the app runs: the Fleet's news and the Watcher -> the fleet's stream ->
    toast -> cooldown."""

    def __init__(self, tmp_path, alerts: dict | None = None) -> None:
        doc = {"policies": {"alerts": alerts or {}},
               "pods": [{"name": "a100", "host": "h", "sessions": [{"name": "train", "workdir": "/w"}]}]}
        config = parse_config(yaml.safe_dump(doc), tmp_path / "c.yaml")
        self.fleet = SimpleNamespace(config=config, events=EventStream(), recent_log=lambda _p, _s: "step 120\n")
        self.state, _ = open_state(tmp_path / "state.json")
        self.now = 1000.0
        self.watcher = Watcher(self.fleet, self.state, start_dir=tmp_path, clock=lambda: self.now)
        self.news = ConnectionNews(clock=lambda: self.now)
        self.last: PodSnapshot | None = None
        self.acting: str | None = None  # the stop/teardown gpuctl has in flight (Fleet._acting)
        self.cooldown = Cooldown()
        self.events: list[WatchEvent] = []
        self.toasts: list[Toast] = []
        self.fleet.events.subscribe(self._take)

    def _take(self, event: WatchEvent) -> None:
        self.events.append(event)
        toast = toast_for(event)
        if toast is not None and self.cooldown.admit(toast, self.now):
            self.toasts.append(toast)

    def see(self, *snapshots: PodSnapshot, after_s: float = 1.0) -> list[Toast]:
        """Hand each snapshot to the news and the Watcher (as `Fleet._on_update` does),
        `after_s` apart; the toasts they made."""
        before = len(self.toasts)
        for snapshot in snapshots:
            self.now += after_s
            news = self.news.change(self.last, snapshot, self.acting)
            self.last = snapshot
            if news is not None:
                self.fleet.events.publish(news)
            self.watcher.observe(snapshot)
        return self.toasts[before:]


@pytest.fixture
async def screen(tmp_path):
    s = Screen(tmp_path)
    yield s
    await s.watcher.aclose()
    s.state.close()


def one(toasts: list[Toast]) -> Toast:
    assert len(toasts) == 1, toasts
    return toasts[0]


async def test_the_first_snapshot_and_unchanged_pods_say_nothing(screen):
    assert screen.see(pod("connecting"), pod(), pod()) == []
    assert [e.kind for e in screen.events] == ["connected"]  # watch tells it; the screen does not


@pytest.mark.parametrize("down", ["reconnecting", "offline"])
async def test_connection_lost_and_restored_once_each(screen, down):
    screen.see(pod("connecting"), pod())
    lost = one(screen.see(pod(down, error="timeout"), pod(down, error="timeout")))
    assert (lost.title, lost.message, lost.severity) == ("a100", "Connection lost: timeout. Retrying.", "error")
    back = one(screen.see(pod(), pod()))
    assert (back.message, back.severity) == ("Connection restored.", "information")
    # A second outage a second later is news again: connection changes are never held back.
    assert [t.message for t in screen.see(pod(down), pod())] == ["Connection lost. Retrying.",
                                                                 "Connection restored."]


async def test_a_preemption_is_told_as_such_not_as_a_lost_link(screen):
    screen.see(pod("connecting"), pod())
    screen.see(pod("reconnecting", error="lost"))
    toast = one(screen.see(pod("preempted", error="preempted: runpod took the instance back (EXITED)")))
    assert (toast.message, toast.severity) == ("Preempted: runpod took the instance back (EXITED).", "error")


async def test_a_stop_or_teardown_is_told_as_such_even_after_the_link_dropped(screen):
    """The lifecycle's words reach watch (`after`) and the toast; never "Retrying"."""
    screen.see(pod("connecting"), pod())
    assert screen.see(pod("stopped", error="stopped: stopped by gpuctl")) == []  # the action toasts its result
    assert (screen.events[-1].kind, screen.events[-1].after) == ("disconnected", "stopped")
    screen.see(pod("offline", error="refused"))
    gone = one(screen.see(pod("terminated", error="terminated: runpod no longer knows the instance")))
    assert (gone.message, gone.severity) == ("Terminated: runpod no longer knows the instance.", "warning")
    assert (screen.events[-1].before, screen.events[-1].after) == ("offline", "terminated")


@pytest.mark.parametrize(("action", "doing"), [("stop", "stopping"), ("teardown", "tearing down")])
async def test_the_link_dropping_under_gpuctls_own_stop_is_not_a_lost_connection(screen, action, doing):
    """QA (issue 12): `s` put "Connection lost. Retrying." in the history a second before
    "Pod 'a100x4' is stopped.": the link drops while the provider is still stopping it."""
    screen.see(pod("connecting"), pod())
    screen.acting = action
    assert screen.see(pod("reconnecting", error="connection lost")) == []
    told = screen.events[-1]
    assert (told.kind, told.message, told.extra["action"]) == ("disconnected", f"{doing}: gpuctl is {doing} the instance",
                                                               action)
    screen.acting = None
    assert screen.see(pod("stopped", error="stopped: stopped by gpuctl")) == []
    # the same drop with no action of gpuctl's in flight is an outage
    screen.see(pod())
    assert one(screen.see(pod("reconnecting", error="timeout"))).message == "Connection lost: timeout. Retrying."


async def test_connecting_for_the_first_time_is_not_news(screen):
    assert screen.see(pod("connecting"), pod("offline", error="refused")) == []
    assert [e.kind for e in screen.events] == ["disconnected"]  # watch still prints it


async def test_a_session_exit_is_told_once_with_its_status_setting_the_severity(screen):
    screen.see(pod("connecting"), pod(sessions=[run()]))
    ok = one(screen.see(pod(sessions=[run("exited", exit_status=0)]), pod(sessions=[run("exited", exit_status=0)])))
    assert (ok.title, ok.message, ok.severity) == ("a100", "Session 'train' exited with status 0.", "information")
    bad = one(screen.see(pod(sessions=[run()]), pod(sessions=[run("exited", exit_status=1)])))
    assert (bad.message, bad.severity) == ("Session 'train' exited with status 1.", "error")


async def test_a_killed_session_is_not_told_as_an_exit(screen):
    screen.see(pod("connecting"), pod(sessions=[run()]))
    assert screen.see(pod(sessions=[run("absent")])) == []  # `k` says "Killed session" itself
    assert [e.kind for e in screen.events][-1] == EventKind.SESSION_EXITED


async def test_a_stall_is_told_once_with_the_step(screen):
    screen.see(pod("connecting"), pod(sessions=[run()]))
    since = screen.now
    assert screen.see(pod(sessions=[run()]), after_s=14 * 60) == []  # under stall_minutes (15)
    # flagged by the session book, with the one "stuck since" clock the alert reads
    stalled = replace(run(), stalled=True, stuck_since=since)
    stall = one(screen.see(pod(sessions=[stalled]), pod(sessions=[stalled]), after_s=60))
    assert (stall.title, stall.severity) == ("a100 / train", "warning")
    assert stall.message == "No progress for 15 min: stuck at step 120."
    assert screen.see(pod(sessions=[stalled]), after_s=600) == []  # still stalled: no news


async def test_a_gpu_crossing_its_threshold_warns_with_index_and_temperature(screen):
    screen.see(pod("connecting"), pod(temps=(50, 84)))
    hot = one(screen.see(pod(temps=(50, 87)), pod(temps=(50, 91))))
    assert (hot.message, hot.severity) == ("GPU 1 is at 87 °C (threshold 85 °C).", "warning")


async def test_the_thresholds_are_the_alerts_policys(tmp_path):
    screen = Screen(tmp_path, alerts={"gpu_temp_c": 90, "disk_used_pct": 95})
    try:
        assert screen.see(pod("connecting"), pod(temps=(50, 84)), pod(temps=(50, 87), disk_pct=91.0)) == []
        assert [t.message for t in screen.see(pod(temps=(50, 90), disk_pct=96.0))] == [
            "GPU 1 is at 90 °C (threshold 90 °C).", "Disk 96 % full at /workspace (threshold 95 %)."]
    finally:
        await screen.watcher.aclose()
        screen.state.close()


async def test_gpu_and_disk_count_only_while_online(screen):
    # A reconnect can bring a whole new picture; the connection change comes first.
    screen.see(pod("connecting"), pod(temps=(50, 50)), pod("reconnecting", temps=(50, 50)))
    toasts = screen.see(pod(temps=(95, 50)))
    assert [t.message for t in toasts] == ["Connection restored.", "GPU 0 is at 95 °C (threshold 85 °C)."]


async def test_a_full_disk_warns_once(screen):
    screen.see(pod("connecting"), pod(disk_pct=89.0))
    full = one(screen.see(pod(disk_pct=91.0), pod(disk_pct=95.0)))
    assert full.message == "Disk 91 % full at /workspace (threshold 90 %)." and full.title == "a100"
    assert screen.see(pod(disk_pct=None), pod(disk_pct=None)) == []


async def test_a_gpu_hovering_at_its_threshold_toasts_once_a_minute(screen):
    screen.see(pod("connecting"), pod(temps=(50, 50)))
    hovering = [pod(temps=(86, 50)), pod(temps=(80, 50))] * 3  # raised, cleared, raised...
    shown = screen.see(*hovering, after_s=5)
    assert [t.message for t in shown] == ["GPU 0 is at 86 °C (threshold 85 °C).", "GPU 0 cooled to 80 °C."]
    assert [e.kind for e in screen.events].count(EventKind.ALERT) == 3  # watch and webhooks hear each
    later = screen.see(pod(temps=(86, 50)), after_s=61)
    assert [t.message for t in later] == ["GPU 0 is at 86 °C (threshold 85 °C)."]


def test_a_download_is_one_routine_line_naming_the_checkpoint():
    path = "/workspace/lightning_logs/version_0/checkpoints/epoch=2-step=750.ckpt"
    event = WatchEvent(EventKind.CHECKPOINT_DOWNLOADED, "a100", f"downloaded {path[12:]} to /tmp/x", "vit",
                       extra={"checkpoint": path, "name": path[12:]})
    toast = toast_for(event)
    assert toast is not None and toast.routine and toast.title == "a100 / vit"
    assert toast.brief == "✓ epoch=2-step=750.ckpt downloaded and verified" and toast.message == event.message
    for kind in (EventKind.CHECKPOINT_FOUND, EventKind.CHECKPOINT_PRUNED):  # the pane shows these
        assert toast_for(replace(event, kind=kind)) is None


@pytest.mark.parametrize("error, message", [
    ("connection lost: Connection lost", "Connection lost."),
    ("connection lost: [Errno 104] Connection reset by peer", "Connection lost: [Errno 104] Connection reset by peer."),
    ("the agent stopped (channel closed).", "Connection lost: the agent stopped (channel closed)."),
    (None, "Connection lost."),
])
def test_the_connection_lost_sentence_says_the_headline_once(error, message):
    assert sentence("Connection lost", error) == message
