"""The TUI follows the fleet's one event stream, driven with Pilot against real sshd pods.

* The checkpoint pane and the toasts agree (issue 12, item 5): a `d` download, and the
  config's policies (auto-download with `keep_local: 1`) running inside the TUI. The
  pane's periodic listing is pushed out of the way (an hour), so only the events can
  change it; what the pane shows is read the moment the screen has taken each event.
* The news `tui/notify_rules.py` used to toast from snapshots on its own (a connection
  lost and restored, a session exit, a hot GPU) is toasted once per transition from
  the Watcher's events, however many samples follow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import EventKind
from tests.support.pilot_wait import until
from tests.support.pinning import trust
from tui.app import make_app
from tui.screens import pod_screen
from tui.screens.pod_screen import PodScreen
from tui.widgets.checkpoint_list import CheckpointList

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]


def checkpoint(work: Path, name: str, size: int = 1 << 20) -> Path:
    path = work / name
    path.write_bytes(os.urandom(size))
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def app_for(sshd, tmp_path: Path, policies: dict, more_sessions=(), **pod):
    trust(sshd)
    entry = sshd.pod_entry("a100", sessions=[{"name": "train", "workdir": str(tmp_path / "work"),
                                              "checkpoints": ["step_*.pt"]}, *more_sessions], **pod)
    config = parse_config(yaml.safe_dump({"policies": policies, "pods": [entry]}), tmp_path / "config.yaml")
    return make_app(config, state_file=tmp_path / "tui.json")


class Seen:
    """What the toasts said and what the pane showed right after each checkpoint event."""

    def __init__(self, app) -> None:
        self.toasts: list[str] = []
        self.pane: list[tuple[str, str | None, str]] = []  # (kind, checkpoint name, pane text)
        notify = app.notify

        def recording_notify(message, *args, **kwargs):
            self.toasts.append(str(message))
            return notify(message, *args, **kwargs)

        app.notify = recording_notify
        take = PodScreen.take_event
        seen = self

        def recording_take(screen, event):
            take(screen, event)
            if event.kind.startswith("checkpoint_"):
                name = str(event.extra.get("checkpoint", "")).rsplit("/", 1)[-1]
                seen.pane.append((event.kind, name, str(screen.query_one(CheckpointList).render())))

        self._restore = (PodScreen, "take_event", take)
        PodScreen.take_event = recording_take  # type: ignore[method-assign]

    def close(self) -> None:
        setattr(*self._restore)

    def after(self, kind: str, name: str) -> list[str]:
        return [text for k, n, text in self.pane if k == kind and n == name]


def line_of(pane: str, name: str) -> str:
    return next((line for line in pane.splitlines() if line.startswith(name)), "")


async def open_pod_screen(app, pilot) -> CheckpointList:
    await until(pilot, lambda: app.snapshot.pod("a100").state == "online", what="pod online")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
    return app.screen.query_one(CheckpointList)


async def test_a_download_in_the_tui_shows_verified_in_the_pane_with_its_toast(sshd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # downloads land in ./checkpoints/POD/SESSION
    monkeypatch.setattr(pod_screen, "CHECKPOINT_REFRESH_S", 3600.0)
    (tmp_path / "work").mkdir()
    checkpoint(tmp_path / "work", "step_100.pt")
    app = app_for(sshd, tmp_path, {})
    seen = Seen(app)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            pane = await open_pod_screen(app, pilot)
            await until(pilot, lambda: "step_100.pt" in str(pane.render()), what="the listing")
            assert "not downloaded" in line_of(str(pane.render()), "step_100.pt")
            await pilot.press("d")
            await until(pilot, lambda: seen.after(EventKind.CHECKPOINT_DOWNLOADED, "step_100.pt"),
                        what="the downloaded event on the pod screen")
            [toast] = [t for t in seen.toasts if t.startswith("downloaded step_100.pt to ")]
            assert "sha256 verified" in toast
            [pane_then] = seen.after(EventKind.CHECKPOINT_DOWNLOADED, "step_100.pt")
            assert "downloaded, verified" in line_of(pane_then, "step_100.pt")
    finally:
        seen.close()


async def test_keep_local_pruning_drops_the_copy_from_the_pane_when_it_is_pruned(sshd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pod_screen, "CHECKPOINT_REFRESH_S", 3600.0)
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_100.pt")
    app = app_for(sshd, tmp_path, {"auto_download": "newest", "keep_local": 1, "checkpoint_interval_s": 0.3,
                                   "download_dir": "dl/{pod}/{session}"})
    seen = Seen(app)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            pane = await open_pod_screen(app, pilot)
            await until(pilot, lambda: "downloaded, verified" in line_of(str(pane.render()), "step_100.pt"),
                        what="step_100.pt auto-downloaded")
            checkpoint(work, "step_200.pt")
            await until(pilot, lambda: seen.after(EventKind.CHECKPOINT_PRUNED, "step_100.pt"),
                        what="step_100.pt pruned")
            [pane_then] = seen.after(EventKind.CHECKPOINT_PRUNED, "step_100.pt")
            assert "not downloaded" in line_of(pane_then, "step_100.pt")
            assert not (tmp_path / "dl/a100/train/step_100.pt").exists()
            await until(pilot, lambda: "downloaded, verified" in line_of(str(pane.render()), "step_200.pt"),
                        what="step_200.pt verified in the pane")
            assert "not downloaded" in line_of(str(pane.render()), "step_100.pt")
            # One toast per download, none for the pruning (the pane shows it).
            assert [t.split(" to ")[0] for t in seen.toasts if t.startswith("downloaded ")] == [
                "downloaded step_100.pt", "downloaded step_200.pt"]
    finally:
        seen.close()


# ------------------------------------------------------------------ news, once each


async def samples(app, pilot, count: int = 3) -> None:
    """Wait until the pod has been sampled `count` more times (the news had its chances
    to be told again), counted by the snapshots' own sample times."""
    seen = {app.snapshot.pod("a100").sampled_at}
    await until(pilot, lambda: seen.add(app.snapshot.pod("a100").sampled_at) or len(seen) > count,
                what=f"{count} more samples")


def told(seen: Seen, text: str) -> int:
    return sum(text in t for t in seen.toasts)


async def test_a_hot_gpu_and_a_session_exit_are_told_once_each(sshd, tmp_path):
    (tmp_path / "work").mkdir()
    crash = {"name": "crash", "workdir": str(tmp_path / "work"), "command": "sh -c 'sleep 1; exit 3'"}
    app = app_for(sshd, tmp_path, {"alerts": {"gpu_temp_c": 80}}, interval=0.2, more_sessions=[crash])
    gpus = sshd.gpu_state()["gpus"]
    seen = Seen(app)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: app.snapshot.pod("a100").state == "online", what="pod online")
            await until(pilot, lambda: app.automation and app.automation.watcher, what="policies running")
            sshd.set_gpus([{**gpus[0], "temperature.gpu": 91}, gpus[1]])
            await until(pilot, lambda: told(seen, "GPU 0 is at 91 °C (threshold 80 °C)."), what="the hot toast")
            await app.fleet.launch("a100", "crash")
            await until(pilot, lambda: told(seen, "Session 'crash' exited with status 3."), what="the exit toast")
            await samples(app, pilot)
            assert told(seen, "GPU 0 is at 91 °C") == 1
            assert told(seen, "Session 'crash' exited with status 3.") == 1
    finally:
        sshd.set_gpus(gpus)
        seen.close()
        sshd.kill_tmux_sessions("crash")


async def test_a_connection_lost_and_restored_is_told_once_each(sshd_fresh, tmp_path):
    (tmp_path / "work").mkdir()
    app = app_for(sshd_fresh, tmp_path, {}, interval=0.2)
    seen = Seen(app)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: app.snapshot.pod("a100").state == "online", what="pod online")
            await until(pilot, lambda: app.automation and app.automation.watcher, what="policies running")
            assert not [t for t in seen.toasts if "Connection" in t]  # connecting first is not news
            sshd_fresh.stop()
            await until(pilot, lambda: told(seen, "Connection lost"), what="the lost toast")
            sshd_fresh.start()
            await until(pilot, lambda: told(seen, "Connection restored."), what="the restored toast")
            await samples(app, pilot)
            assert [t for t in seen.toasts if "Connection" in t][0].startswith("Connection lost")
            assert told(seen, "Connection lost") == 1 and told(seen, "Connection restored.") == 1
    finally:
        seen.close()


async def test_a_pruned_copy_is_no_longer_shown_as_the_sessions_download(tmp_path):
    # The fixed fleet of the snapshot tests: what matters is the app's subscriber.
    from sessions.events import WatchEvent
    from tests.support.fake_fleet import StaticFleet, demo_snapshot
    from tui.downloads import DONE, DownloadState

    snapshot = demo_snapshot()
    pod = snapshot.pods[0].name
    doc = {"pods": [{"name": p.name, "host": "192.0.2.1"} for p in snapshot.pods]}
    config = parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml")
    app = make_app(config, fleet_factory=lambda _c: StaticFleet(snapshot), state_file=tmp_path / "tui.json",
                   ui_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.fleet is not None, what="the fleet")
        kept = DownloadState(pod, "eval", DONE, "step_300.pt", 9, 9, message="/dl/eval/step_300.pt")
        app.actions.downloads[(pod, "train")] = DownloadState(pod, "train", DONE, "step_100.pt", 9, 9,
                                                              message="/dl/train/step_100.pt")
        app.actions.downloads[(pod, "eval")] = kept
        app.fleet.events.publish(WatchEvent(EventKind.CHECKPOINT_PRUNED, pod, "deleted", "train",
                                            extra={"checkpoint": "/w/step_100.pt",
                                                   "local_path": "/dl/train/step_100.pt"}))
        await until(pilot, lambda: (pod, "train") not in app.actions.downloads, what="the pruned copy dropped")
        assert app.actions.downloads[(pod, "eval")] is kept  # another session's copy stays
