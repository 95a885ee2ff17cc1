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

from sessions.config import parse_config
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
            await until(pilot, lambda: isinstance(app.screen, TypedConfirmDialog), what="teardown dialog", timeout=30)
            text = body(app)
            assert "Checkpoints: NOT safely downloaded: session train has no checkpoint yet: its " in text
            assert "steps will be lost" in text and "safe: no checkpoints" not in text
            button = await until(pilot, lambda: app.screen.query("#confirm").first() if app.screen.query("#confirm")
                                 else None, what="the dialog's buttons")
            assert str(button.label) == "Tear down anyway"
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, TypedConfirmDialog), what="closed")
            await pilot.press("s")  # RunPod's stop wipes the container disk: the same words
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="stop dialog", timeout=30)
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
