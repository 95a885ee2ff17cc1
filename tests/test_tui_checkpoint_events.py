"""The checkpoint pane and the toasts agree (issue 12, item 5): both follow the fleet's
one event stream, so the pane changes when the toast is shown, not at its next listing.

Driven with Pilot against a real sshd pod: a `d` download, and the config's policies
(auto-download with `keep_local: 1`) running inside the TUI. The pane's periodic
listing is pushed out of the way (an hour), so only the events can change it; what the
pane shows is read the moment the screen has taken each event.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import EventKind
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


def app_for(sshd, tmp_path: Path, policies: dict):
    trust(sshd)
    entry = sshd.pod_entry("a100", sessions=[{"name": "train", "workdir": str(tmp_path / "work"),
                                              "checkpoints": ["step_*.pt"]}])
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


async def until(pilot, predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if predicate():
            return
    raise AssertionError(f"timed out waiting for {what}")


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
