"""Issue 16 ("The first hour"), the action and screen items, driven key by key with
Pilot against the real sshd pod, real tmux and the local RunPod stand-in.

* `n` on a session whose pod holds a complete checkpoint asks: resume from it, or
  start from scratch (which asks again); without a checkpoint it launches at once.
* Stop/teardown of a pod whose session trained but never saved says the steps are lost.
* The checkpoint pane names the configured globs while nothing matches them yet.
"""

from __future__ import annotations

import pytest
import yaml

from sessions.config.loader import parse_config
from tests.support.pinning import trust
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
from tests.test_tui_pilot import (
    SIZE,
    TRAIN,
    Notes,
    checkpoints_in,
    pod_state,
    pod_tmux,
    session,
    until,
)
from tui.app import make_app
from tui.dialogs.confirm import ConfirmDialog, TypedConfirmDialog
from tui.dialogs.pick import PickDialog
from tui.screens.pod_screen import PodScreen

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux", "ssh"), pytest.mark.usefixtures("isolated_home")]


@pytest.fixture
def clean_tmux(sshd):
    yield
    pod_tmux(sshd, "kill-session", "-t", "=train")


def one_session_config(sshd, tmp_path, *, provider=None, **fields):
    trust(sshd)
    entry = {**sshd.pod_entry("a100"), "sessions": [{"name": "train", "workdir": str(tmp_path / "work"), **fields}]}
    if provider:
        entry["provider"] = provider
    return parse_config(yaml.safe_dump({"pods": [entry]}), tmp_path / "config.yaml")


def body(app) -> str:
    return str(app.screen.query_one(".dialog-body").render())


# ------------------------------------------------------------- n with a checkpoint (7)


async def test_n_after_a_kill_offers_resume_or_a_confirmed_start_from_scratch(sshd, tmp_path, clean_tmux):
    work = tmp_path / "work"
    newest = checkpoints_in(work)
    config = one_session_config(sshd, tmp_path, command="echo scratch >> runs.txt; sleep 600",
                                resume="echo resumed from {checkpoint} >> runs.txt; sleep 600")
    app = make_app(config, state_file=tmp_path / "tui.json")
    notes = Notes(app)
    runs = work / "runs.txt"
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PickDialog), what="resume-or-scratch question")
        assert "Session 'train' has a checkpoint on pod 'a100': step_200.pt (step 200)" in body(app)
        await pilot.press("enter")  # the first choice, the safe one: resume
        await until(pilot, lambda: runs.exists(), what="the resume command ran")
        assert runs.read_text() == f"resumed from {newest}\n"
        await until(pilot, lambda: notes.find("Resumed 'train' from step_200.pt"), what="resumed toast")
        await until(pilot, lambda: session(app, "train").state == "running", what="the snapshot sees it run")

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="kill dialog")
        await pilot.press("y")
        await until(pilot, lambda: session(app, "train").state == "absent", what="train killed")

        # Start from scratch asks again; declining launches nothing.
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PickDialog), what="the question again")
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="are-you-sure")
        assert "starts again from step 0" in body(app) and "step_200.pt (step 200) stays on the pod" in body(app)
        await pilot.press("n")
        await until(pilot, lambda: notes.find("Session 'train' was not launched."), what="declined")
        assert runs.read_text().count("\n") == 1 and session(app, "train").state == "absent"

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PickDialog), what="the question a third time")
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="are-you-sure again")
        await pilot.press("y")
        await until(pilot, lambda: runs.read_text().endswith("scratch\n"), what="launched from scratch")
        assert notes.find("Launched session 'train'")


async def test_n_without_a_resume_command_still_warns_before_starting_over(sshd, tmp_path, clean_tmux):
    work = tmp_path / "work"
    checkpoints_in(work)
    config = one_session_config(sshd, tmp_path, command="echo scratch >> runs.txt; sleep 600")
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the warning")
        assert "no `resume:` command" in body(app) and "step_200.pt" in body(app)
        await pilot.press("y")
        await until(pilot, lambda: (work / "runs.txt").exists(), what="launched from scratch")


# ------------------------------------------- teardown/stop of progress never saved (8)


async def test_teardown_and_stop_say_the_unsaved_steps_are_lost(sshd, tmp_path, clean_tmux, monkeypatch):
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    with ProviderServer(fake) as server:
        provider = {"type": "runpod", "id": "pod1", "api_key_env": "TEST_PROVIDER_KEY", "api_url": server.url}
        config = one_session_config(sshd, tmp_path, provider=provider, command=TRAIN, log="train.log")
        app = make_app(config, state_file=tmp_path / "tui.json")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
            await pilot.press("n")  # no checkpoint anywhere: launches without a question
            await until(pilot, lambda: (s := session(app, "train")) and s.progress and (s.progress.step or 0) >= 3,
                        what="a few steps trained")
            await pilot.press("escape")  # the log screen the launch opened
            await pilot.press("T")
            await until(pilot, lambda: isinstance(app.screen, TypedConfirmDialog) and app.screen.query(".dialog-body"),
                        what="teardown dialog, composed", timeout=30)
            text = body(app)
            assert "Checkpoints: NOT safely downloaded: session train has no checkpoint yet: its " in text
            assert "steps will be lost" in text and "safe: no checkpoints" not in text
            button = await until(pilot, lambda: app.screen.query("#confirm").first() if app.screen.query("#confirm")
                                 else None, what="the dialog's buttons")
            assert str(button.label) == "Tear down anyway"
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, TypedConfirmDialog), what="closed")
            await pilot.press("s")  # RunPod's stop wipes the container disk: the same words
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and app.screen.query(".dialog-body"),
                        what="stop dialog, composed", timeout=30)
            assert "session train has no checkpoint yet: its " in body(app)
            await pilot.press("escape")
    assert not server.calls("DELETE") and not server.calls("POST")


# ------------------------------------------- the checkpoint pane before the first (10)


async def test_the_checkpoint_pane_names_the_globs_it_waits_for(sshd, tmp_path):
    from tui.widgets.checkpoint_list import CheckpointList

    (tmp_path / "work").mkdir()
    config = one_session_config(sshd, tmp_path, command="sleep 600", checkpoints="out/checkpoint-*")
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
        listing = app.screen.query_one(CheckpointList)
        await until(pilot, lambda: "No checkpoint yet" in str(listing.render()), what="the empty pane")
        assert "No checkpoint yet (looking for out/checkpoint-*)." in str(listing.render())
        assert "set the session's" not in str(listing.render())


# ------------------------------------------------------------------- item 12, smaller


def send(app, event) -> None:
    """Deliver `event` the way the terminal driver does, without waiting for it."""
    event.set_sender(app)
    app._driver.send_message(event)


async def test_a_filter_typed_or_pasted_in_one_burst_after_slash_is_not_lost(sshd, tmp_path, refused_port):
    from textual import events

    from tui.widgets.fleet_table import FleetTable

    offline = {"name": "lambda-1", "host": "127.0.0.1", "port": refused_port}
    trust(sshd)
    doc = {"pods": [sshd.pod_entry("a100", sessions=[{"name": "train", "command": "sleep 600"}]), offline]}
    app = make_app(parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml"), state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        table = app.screen.query_one(FleetTable)
        # As a terminal delivers a fast typist or a paste: every event queued before the
        # app handles the first (pilot.press would wait for each key to settle).
        for key, char in (("slash", "/"), ("l", "l"), ("a", "a"), ("m", "m")):
            send(app, events.Key(key, char))
        await until(pilot, lambda: table.filter_text == "lam", what="the whole burst in the filter")
        assert table.row_count == 1 and table.selected_pod == "lambda-1"
        assert not isinstance(app.screen, ConfirmDialog) and session(app, "train").state == "absent"
        await pilot.press("escape")
        await until(pilot, lambda: table.filter_text == "", what="filter cleared")
        send(app, events.Key("slash", "/"))
        send(app, events.Paste("a100"))
        await until(pilot, lambda: table.filter_text == "a100", what="the paste in the filter")
        await pilot.press("slash")  # with the filter focused, `/` is text, not the key
        await until(pilot, lambda: table.filter_text == "a100/", what="a slash in the filter")


async def test_a_key_read_only_turned_off_says_so(sshd, tmp_path):
    config = one_session_config(sshd, tmp_path, command="sleep 600")
    app = make_app(config, read_only=True, state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("k")
        await until(pilot, lambda: notes.find("Read-only: k (kill) is off."), what="the kill key's toast")
        await pilot.press("n")
        await until(pilot, lambda: notes.find("Read-only: n (launch) is off."), what="the launch key's toast")
        await pilot.press("d")  # download changes nothing on the pod: still allowed, no toast
        await pilot.press("slash", "k")  # typed into the filter: text, not a refused kill
        await pilot.pause(0.3)
        assert len(notes.find("Read-only: k")) == 1
        assert session(app, "train").state == "absent"


async def test_the_palette_offers_only_gpuctls_actions_and_themes(sshd, tmp_path):
    from themes.palettes import THEMES

    config = one_session_config(sshd, tmp_path, command="sleep 600")
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        titles = [c.title for c in app.get_system_commands(app.screen)]
    themes = [t for t in titles if t.startswith("Theme: ")]
    assert themes == [f"Theme: {t.name}" for t in THEMES]
    assert "Quit (q)" in titles and "Help (?)" in titles and "Launch (n)" in titles
    # Textual's own entries: its theme picker (24 themes), Keys, Screenshot, Maximize...
    assert not [t for t in titles if t in ("Theme", "Keys", "Screenshot", "Quit", "Maximize", "Minimize")]
    assert all(t.endswith(")") or t.startswith("Theme: ") for t in titles), titles


async def test_paused_policies_are_marked_in_the_fleet_row_and_the_pod_header(sshd, tmp_path, monkeypatch):
    from tui.widgets.fleet_table import FleetTable

    monkeypatch.chdir(tmp_path)  # the policies' state file lands in the start dir
    config = one_session_config(sshd, tmp_path, command="sleep 600")
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await until(pilot, lambda: app.automation and app.automation.watcher, what="policies running")
        table = app.screen.query_one(FleetTable)
        detail = app.screen.query_one("#fleet-detail")
        assert table.cell_texts("a100")[1] == "online"
        await pilot.press("w")
        await until(pilot, lambda: table.cell_texts("a100")[1] == "online ⏸", what="the row's mark")
        assert "policies paused (w)" in str(detail.render())
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
        header = app.screen.query_one("#pod-header")
        await until(pilot, lambda: "a100 · online · policies paused (w)" in str(header.render()), what="header")
        await pilot.press("w")  # on again, from the pod screen
        await until(pilot, lambda: "paused" not in str(header.render()), what="the header's mark gone")
        await pilot.press("escape")
        await until(pilot, lambda: table.cell_texts("a100")[1] == "online", what="the row's mark gone")


async def test_the_kill_dialog_quotes_what_runs_not_only_the_configured_command(sshd, tmp_path, clean_tmux):
    work = tmp_path / "work"
    newest = checkpoints_in(work)
    config = one_session_config(sshd, tmp_path, command="sleep 600",
                                resume="python3 -c 'import time; time.sleep(600)' {checkpoint}")
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("r")  # relaunched from the checkpoint: not its `command:`
        await until(pilot, lambda: (s := session(app, "train")) and s.state == "running" and s.pid,
                    what="the resumed run in the snapshot")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="kill dialog")
        text = body(app)
        assert f"It is running: python3 -c import time; time.sleep(600) {newest}" in text
        assert "(its configured command: sleep 600)" in text
        await pilot.press("escape")
