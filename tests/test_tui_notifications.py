"""Notifications: short toasts in a band that covers no data, routine news in one
line, the whole text kept in the history screen (`m`), sentences composed
without saying a phrase twice.

The app runs on the fixed fleet of the snapshot tests (tests/support/fake_fleet.py):
what is tested here is where toasts go and what they say, not how pods are reached
(test_tui_pilot.py drives the same toasts from real pods).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import EventKind, WatchEvent
from sessions.snapshot import FleetSnapshot
from tests.support.fake_fleet import StaticFleet, demo_snapshot
from tui.app import make_app
from tui.notices import NoticeLog, Notice, clip, shorten_path, shorten_paths, tidy
from tui.screens.help_screen import HelpScreen
from tui.screens.notifications_screen import NotificationsScreen
from tui.widgets.fleet_table import FleetTable

HOME = "/home/ada"
START = Path("/home/ada/runs/llama")
DOWNLOADED = ("Downloaded checkpoint-400 (4.2G, sha256 verified) to "
              "/tmp/gpuctl-demo-m2uzahog/downloads/a100x4/sft/lightning_logs/version_0/checkpoints/checkpoint-400")


# ------------------------------------------------------------------ the words (pure)


@pytest.mark.parametrize("path, short", [
    ("/home/ada/runs/llama/checkpoints/a100x4/sft/checkpoint-400", "checkpoints/a100x4/sft/checkpoint-400"),
    ("/home/ada/runs/llama/checkpoints/a100x4/sft/lightning_logs/version_0/checkpoints/epoch=2-step=750.ckpt",
     "…/version_0/checkpoints/epoch=2-step=750.ckpt"),
    ("/tmp/gpuctl-demo-m2uzahog/downloads/a100x4/sft/checkpoint-400", "…/a100x4/sft/checkpoint-400"),
    ("/home/ada/.cache/gpuctl/gpuctl-demo", "~/.cache/gpuctl/gpuctl-demo"),
    ("/workspace/out/", "/workspace/out/"),
    ("/", "/"),
])
def test_paths_are_told_relative_to_the_start_dir_or_by_their_last_parts(path, short):
    assert shorten_path(path, START, HOME) == short


def test_only_paths_in_running_text_are_shortened():
    text = ("Downloaded x to /tmp/gpuctl-demo-m2uzahog/downloads/a100x4/sft/checkpoint-400 (16M/32M, "
            "a100x4 / sft); see https://example.com/a/b/c/d/e/f/g and lightning_logs/version_0/x.ckpt")
    assert shorten_paths(text, START, HOME) == (
        "Downloaded x to …/a100x4/sft/checkpoint-400 (16M/32M, a100x4 / sft); see "
        "https://example.com/a/b/c/d/e/f/g and lightning_logs/version_0/x.ckpt")


@pytest.mark.parametrize("text, tidied", [
    ("Connection lost: connection lost: Connection lost. Retrying.", "Connection lost. Retrying."),
    ("Download failed: download failed: disk full", "Download failed: disk full"),
    ("Launch failed: session 'train' is already running", "Launch failed: session 'train' is already running"),
    ("Connection lost: connection lostness", "Connection lost: connection lostness"),
])
def test_a_phrase_said_twice_in_a_row_is_said_once(text, tidied):
    assert tidy(text) == tidied


def test_clip_cuts_at_a_word_with_an_ellipsis():
    assert clip("short", 10) == "short"
    assert clip("Connection lost: timed out after 10s connecting to root@host", 30) == "Connection lost: timed out…"


@pytest.mark.parametrize("error, message", [
    ("connection lost: Connection lost", "Connection lost. Retrying."),
    ("connection lost: [Errno 104] Connection reset by peer",
     "Connection lost: [Errno 104] Connection reset by peer. Retrying."),
    ("the agent stopped (channel closed).", "Connection lost: the agent stopped (channel closed). Retrying."),
    (None, "Connection lost. Retrying."),
])
def test_the_connection_lost_toast_is_one_clean_sentence(error, message):
    from tui.event_toasts import toast_for

    # What the Watcher publishes when an online pod's link drops (sessions/watch/watcher.py).
    lost = WatchEvent(EventKind.DISCONNECTED, "a100x4", error or "connection lost", before="online",
                      after="reconnecting")
    toast = toast_for(lost)
    assert toast is not None and toast.message == message


def test_the_history_keeps_the_newest():
    log = NoticeLog(kept=3)
    for i in range(5):
        log.add(Notice("a100", f"n{i}"))
    assert [n.message for n in log.newest_first()] == ["n4", "n3", "n2"] and log.version == 5


# ------------------------------------------------------------------- in the app


def many_pods(count: int) -> FleetSnapshot:
    """The demo fleet repeated: more pods than 80x24 has rows."""
    base = demo_snapshot().pods
    return FleetSnapshot(tuple(replace(base[i % len(base)], name=f"pod-{i:02d}") for i in range(count)))


def app_with(tmp_path, snapshot: FleetSnapshot):
    doc = {"pods": [{"name": p.name, "host": "192.0.2.1"} for p in snapshot.pods]}
    config = parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml")
    fleet = StaticFleet(snapshot)
    return make_app(config, fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json", ui_interval=0)


async def started(app, pilot) -> None:
    for _ in range(100):
        await pilot.pause()
        if app.fleet is not None and app.snapshot.pods[0].state == "online":
            return
    raise AssertionError("the fleet never showed")


def toasts(app) -> list:
    from textual.widgets._toast import Toast

    return list(app.screen.query(Toast))


async def test_toasts_take_a_band_above_the_keys_and_cover_no_table_row(tmp_path):
    app = app_with(tmp_path, many_pods(40))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await started(app, pilot)
        table = app.screen.query_one(FleetTable)
        full = table.region
        app.notify("connection lost: Connection lost", title="pod-03", severity="error")
        app.notify(DOWNLOADED + "\nKept: the volume\nGone: the GPUs\n" + "more words " * 30, title="pod-01")
        app.notify("GPU 3 is at 91 °C (threshold 85 °C).", title="pod-07", severity="warning")
        await pilot.pause(0.3)
        shown = toasts(app)
        assert len(shown) == 3
        for toast in shown:
            assert 1 <= toast.region.height <= 2, toast.region  # one or two lines, never ten
            assert not toast.region.overlaps(table.region), (toast.region, table.region)
            assert toast.region.bottom <= app.size.height - 1  # above the key line
        assert table.region.height < full.height  # the table gave the band up, nothing drawn over it
        assert "…/sft/lightning_logs/version_0" not in str(shown[1].render())  # cut to its last parts
        assert "…/version_0/checkpoints/checkpoint-400" in str(shown[1].render())
        for toast in shown:
            toast._expire()
        await pilot.pause(0.3)
        assert table.region == full  # and takes it back

        # A notification past its time whose toast's timer has not fired yet (they are
        # milliseconds apart) when the next one arrives: Textual's rack then drops the
        # toast but keeps its holder, an empty row that must not be taken from the table.
        for i in range(3):
            app.notify(f"first {i}", title="pod-01", timeout=0.3)
            await pilot.pause(0.1)
            for notification in list(app._notifications):
                notification.raised_at -= notification.time_left + 0.05  # just past its time
            app.notify(f"second {i}", title="pod-02", timeout=0.2)
            await pilot.pause(0.6)
        assert toasts(app) == [] and table.region == full


async def test_a_toast_never_sits_on_the_filter_box(tmp_path):
    app = app_with(tmp_path, many_pods(40))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await started(app, pilot)
        await pilot.press("slash", "p", "o", "d", "m")  # `m` (the history) is text in the box
        app.notify("Connection lost. Retrying.", title="pod-01", severity="error")
        await pilot.pause(0.3)
        box, table = app.screen.query_one("#fleet-filter"), app.screen.query_one(FleetTable)
        [toast] = toasts(app)
        assert box.region.height == 1 and toast.region.height == 1
        assert not toast.region.overlaps(box.region) and not box.region.overlaps(table.region)
        assert box.value == "podm" and not isinstance(app.screen, NotificationsScreen)


async def test_routine_notices_are_one_line_each_and_sort_says_nothing(tmp_path):
    app = app_with(tmp_path, many_pods(3))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await started(app, pilot)
        await pilot.press("o")
        await pilot.pause(0.3)
        assert "sorted by name" in str(app.screen.query_one("#fleet-header").render())
        assert toasts(app) == [] and len(app.notices) == 0  # the header says it; no toast repeats it

        app.notify(DOWNLOADED, title="pod-00 / sft", routine=True)
        await pilot.pause(0.3)
        app.notify("Downloaded checkpoint-600 (4.2G, sha256 verified) to /tmp/x/checkpoint-600",
                   title="pod-00 / sft", routine=True)
        await pilot.pause(0.3)
        shown = toasts(app)
        assert [t.region.height for t in shown] == [1, 1] and "checkpoint-600" in str(shown[1].render())
        assert [n.message for n in app.notices.newest_first()][1] == DOWNLOADED  # kept whole
        assert all(n.routine for n in app.notices)


async def test_a_downloaded_checkpoint_from_the_policies_is_a_routine_line(tmp_path):
    app = app_with(tmp_path, many_pods(3))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await started(app, pilot)
        # Published into the fleet's one stream, as the Watcher publishes them.
        path = "/workspace/lightning_logs/version_0/checkpoints/epoch=2-step=750.ckpt"
        app.fleet.events.publish(WatchEvent(EventKind.CHECKPOINT_DOWNLOADED, "pod-00",
                                            f"downloaded {path} to /tmp/a/b/c/d/e", "vit",
                                            extra={"checkpoint": path, "name": path[12:]}))
        app.fleet.events.publish(WatchEvent(EventKind.ALERT, "pod-01",
                                            "auto-download failed: disk full; retrying every round", "sft",
                                            extra={"alert": "download_failed"}))
        await pilot.pause(0.3)
        routine, alert = app.notices.newest_first()[::-1]
        assert routine.routine and routine.message.startswith("downloaded /workspace/")
        assert not alert.routine and alert.severity == "warning"
        texts = [str(t.render()) for t in toasts(app)]
        assert texts[0] == "pod-00 / vit  ✓ epoch=2-step=750.ckpt downloaded and verified"


async def test_m_lists_every_notification_with_time_severity_and_pod(tmp_path):
    app = app_with(tmp_path, many_pods(3))
    async with app.run_test(size=(120, 36)) as pilot:
        await started(app, pilot)
        app.notify(DOWNLOADED, title="pod-00", routine=True)
        app.notify("Connection lost. Retrying.", title="pod-01", severity="error")
        await pilot.press("m")
        await pilot.pause(0.3)
        assert isinstance(app.screen, NotificationsScreen)
        text = shown_text(app)
        first, second = app.notices
        assert text[0].startswith(f"{first.clock} info") and "pod-00" in text[0]
        assert "/tmp/gpuctl-demo-m2uzahog/downloads/a100x4/sft/lightning_logs/version_0/checkpoints/checkpoint-400" \
            in "".join(line.strip() for line in text[:4])  # the full path, not the toast's
        assert any(line.startswith(f"{second.clock} error") and "pod-01" in line for line in text)
        app.notify("Session 'train' exited with status 0.", title="pod-02")
        await pilot.pause(0.3)
        assert "exited with status 0" in shown_text(app)[-1]  # follows new ones, the newest last
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, NotificationsScreen)
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        assert isinstance(app.screen, HelpScreen)
        assert "m  Every notification so far, in full" in rendered(app.screen.query_one(".help-body").content)


def rendered(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def shown_text(app) -> list[str]:
    """The history's lines as plain text."""
    from textual.widgets import RichLog

    return [strip.text.rstrip() for strip in app.screen.query_one(RichLog).lines]
