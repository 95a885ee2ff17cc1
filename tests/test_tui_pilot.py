"""The TUI driven key by key with Textual's Pilot, against real sshd pods and real tmux.

Every action runs for real: `n` starts a tmux session on the test pod, `k` kills it,
`a` builds the ssh command (recorded instead of exec'd, then run to prove it reaches
the pod), `s`/`T` talk to the local fake provider API. Nothing here is a stand-in but
the fake nvidia-smi the sshd fixture provides.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.config.paths import gpuctl_known_hosts_path
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
from tui.actions import Target
from tui.app import make_app
from tui.dialogs.confirm import ConfirmDialog, TypedConfirmDialog
from tui.screens.fleet_screen import FleetScreen
from tui.screens.log_screen import LogScreen
from tui.screens.pod_screen import PodScreen
from tui.widgets.fleet_table import FleetTable
from tui.widgets.log_view import LogView
from tests.support.pilot_wait import until
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux", "ssh"), pytest.mark.usefixtures("isolated_home")]

SIZE = (120, 36)
TRAIN = "python3 -u -c 'import time\nfor i in range(1, 100000):\n print(f\"step {i}/100000 | loss {3-i/1e5:.4f}\", flush=True); time.sleep(0.2)' > train.log 2>&1"


def config_for(server, tmp_path: Path, *, extra_pods=(), **top):
    trust(server)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    entry = server.pod_entry("a100", price_per_hour=1.29, workdir=str(work), sessions=[
        {"name": "train", "workdir": str(work), "command": TRAIN, "log": "train.log"},
        {"name": "eval", "workdir": str(work), "command": "sleep 600"},
    ])
    doc = {**top, "pods": [entry, *extra_pods]}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), tmp_path / "config.yaml")


def pod_tmux(server, *args: str) -> subprocess.CompletedProcess:
    command = " ".join(__import__("shlex").quote(a) for a in ("tmux", *args))
    return subprocess.run(server.ssh_argv(command), env={**os.environ, **server.session_env},
                          capture_output=True, text=True)


@pytest.fixture
def clean_tmux(sshd):
    """The shared pod must not keep this test's tmux sessions."""
    yield
    sshd.kill_tmux_sessions("train", "eval")


class Notes:
    """Records every toast the app shows."""

    def __init__(self, app) -> None:
        self.messages: list[tuple[str, str]] = []
        original = app.notify

        def notify(message, *args, **kwargs):
            self.messages.append((str(message), kwargs.get("severity", "information")))
            return original(message, *args, **kwargs)

        app.notify = notify

    def find(self, text: str) -> list[tuple[str, str]]:
        return [m for m in self.messages if text in m[0]]


def pod_state(app, name="a100"):
    return app.snapshot.pod(name)


def session(app, name, pod="a100"):
    return next((s for s in app.snapshot.pod(pod).sessions if s.name == name), None)


def cells(table: FleetTable, row: str) -> list[str]:
    return table.cell_texts(row)


# ------------------------------------------------------------------------- fleet


async def test_fleet_screen_shows_pods_and_filter_narrows_them(sshd, tmp_path, refused_port):
    offline = {"name": "lambda-1", "host": "127.0.0.1", "port": refused_port, "price_per_hour": 1.1}
    app = make_app(config_for(sshd, tmp_path, extra_pods=[offline]), state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(FleetTable)
        await until(pilot, lambda: pod_state(app).state == "online" and pod_state(app, "lambda-1").state == "offline",
                    what="one pod online, one offline")
        await pilot.pause(0.5)
        row = cells(table, "a100")
        assert row[0] == "a100" and row[1] == "online"
        assert row[2].startswith("2×A100") and "52°" in row[2] and "96%" in row[2]
        assert "1/2 pods online" in str(app.screen.query_one("#fleet-header").render())
        assert cells(table, "lambda-1")[1] == "offline"
        table.move_cursor(row=1)
        await pilot.pause()
        assert "refused" in str(app.screen.query_one("#fleet-detail").render())

        await pilot.press("slash", "l", "a", "m")
        await pilot.pause()
        assert table.row_count == 1 and table.selected_pod == "lambda-1"
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 2

        assert table.rows[0] == "a100"  # config order
        await pilot.press("o", "o")  # name, then state: trouble first
        await pilot.pause(0.3)
        assert table.sort_key == "state" and table.rows[0] == "lambda-1"
        assert table.selected_pod == "lambda-1"  # the highlight stays on its pod
        assert "sorted by state" in str(app.screen.query_one("#fleet-header").render())


# ----------------------------------------------------------------- launch / kill


async def test_launch_opens_the_log_and_kill_asks_first(sshd, tmp_path, clean_tmux):
    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
        assert len(app.screen.query("GpuRow")) == 2

        await pilot.press("n")  # the selected session, `train`, is configured and not running
        await until(pilot, lambda: (s := session(app, "train")) and s.state == "running", what="train running")
        assert notes.find("Launched session 'train'")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: view.line_count >= 3, what="log lines in the pod screen")
        await until(pilot, lambda: (s := session(app, "train")).progress and s.progress.step, what="progress")

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="kill dialog")
        body = str(app.screen.query_one(".dialog-body").render())
        assert "Kill tmux session 'train' on pod 'a100'" in body and "python3 -u -c" in body
        assert "Training is at step" in body
        await pilot.press("n")  # cancel
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="dialog closed")
        assert notes.find("was not killed")
        await pilot.pause(0.5)
        assert session(app, "train").state == "running"

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="kill dialog again")
        await pilot.press("y")
        await until(pilot, lambda: session(app, "train").state == "absent", what="train killed")
        assert notes.find("Killed session 'train'")
        assert pod_tmux(sshd, "has-session", "-t", "=train").returncode != 0


async def test_launch_picks_among_several_stopped_sessions(sshd, tmp_path, clean_tmux):
    from tui.dialogs.pick import PickDialog

    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        # On the fleet screen the main session is `train`: n launches it directly.
        await pilot.press("n")
        await until(pilot, lambda: session(app, "train").state == "running", what="train running")
        # Now only `eval` is stopped, so n launches it without asking.
        await pilot.press("n")
        await until(pilot, lambda: session(app, "eval").state == "running", what="eval running")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, PickDialog)  # nothing left to launch
        sshd.kill_tmux_sessions("train", "eval")
        app.fleet.refresh("a100")
        await until(pilot, lambda: session(app, "eval").state == "absent" and session(app, "train").state == "absent",
                    what="both gone")
        # Both stopped, and the fleet's main session is `train`: launching it needs no
        # choice; from the pod screen with `train` running, the other is picked.
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
        await pilot.press("n")
        await until(pilot, lambda: session(app, "train").state == "running", what="train running again")


# ------------------------------------------------------------------------ attach


async def test_attach_hands_ssh_the_resolved_settings(sshd, tmp_path, clean_tmux):
    recorded: list[list[str]] = []

    async def record(app, argv):
        recorded.append(argv)
        return 0, ""

    app = make_app(config_for(sshd, tmp_path), attach_runner=record, state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("a")  # train is not running: nothing to attach to
        await pilot.pause(0.3)
        assert not recorded and notes.find("No tmux session 'train'")
        await pilot.press("n")
        await until(pilot, lambda: session(app, "train").state == "running", what="train running")
        await pilot.press("a")
        await until(pilot, lambda: recorded, what="attach argv")

        async def refused(app, argv):
            return 255, "ssh: connect to host 127.0.0.1 port 22: Connection refused\r\n"

        app.actions.attach_runner = refused  # a failed attach says why in its toast
        await pilot.press("a")
        await until(pilot, lambda: notes.find("Attach ended with status 255: ssh could not connect: "
                                              "ssh: connect to host 127.0.0.1 port 22: Connection refused"),
                    what="the reason in the toast")
    argv = recorded[0]
    assert argv[:2] == ["ssh", "-t"]
    assert argv[argv.index("-p") + 1] == str(sshd.port)
    assert argv[argv.index("-l") + 1] == sshd.user
    assert argv[argv.index("-i") + 1] == str(sshd.client_key)
    assert f"UserKnownHostsFile={gpuctl_known_hosts_path()}" in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[-2] == "127.0.0.1" and "tmux attach-session -t =train" in argv[-1]
    # The same settings, without a terminal, reach the session: attach works where
    # monitoring works, with no ~/.ssh/config to help.
    probe = [a for a in argv[:-1] if a != "-t"] + ["-o", "BatchMode=yes", "tmux has-session -t =train"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


# -------------------------------------------------------------------------- logs


async def test_l_opens_the_full_log_with_search_and_follow(sshd, tmp_path, clean_tmux):
    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("n")
        await until(pilot, lambda: (s := session(app, "train")).progress and s.progress.step >= 5, what="progress")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="log screen")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: view.line_count >= 5, what="log lines")
        assert view.follow
        await pilot.press("slash", "s", "t", "e", "p", " ", "3")  # typed at once after `/`
        await pilot.pause(0.2)
        at, count = view.match_position
        assert count >= 1 and at == count and view.search == "step 3" and not view.follow
        await pilot.press("escape")  # closes the search box
        await pilot.pause(0.1)
        assert view.search == "" and isinstance(app.screen, LogScreen)
        await pilot.press("f")
        await pilot.pause(0.1)
        assert view.follow
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back to the fleet")


# ------------------------------------------------------------- read-only, keymap


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_read_only_hides_and_refuses_every_change(sshd, tmp_path, clean_tmux, how):
    config = config_for(sshd, tmp_path, **({"read_only": True} if how == "config" else {}))
    app = make_app(config, read_only=(how == "flag"), state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert {"attach", "launch", "kill", "resume", "stop", "teardown", "automation"}.isdisjoint(shown)
        assert {"download", "log", "filter", "sort"} <= shown
        await pilot.press("n", "k", "a", "s", "T")
        await pilot.pause(0.5)
        assert session(app, "train").state == "absent" and isinstance(app.screen, FleetScreen)
        assert "READ-ONLY" in str(app.screen.query_one("#fleet-header").render())
        # Called directly (a palette entry, a future key), the action still refuses.
        app.actions.launch(Target("a100", "train"))
        await pilot.pause(0.5)
        assert notes.find("Read-only mode: launch") and session(app, "train").state == "absent"
        # The config's policies run for alerts only: every pod's actions stay paused.
        await until(pilot, lambda: app.automation and app.automation.watcher, what="policies running")
        assert not app.automation.actions_enabled("a100")


async def test_keys_remapped_in_config(sshd, tmp_path, clean_tmux):
    # An unknown id ("pod.tear") is a config error now (tests/test_config_hardening.py).
    config = config_for(sshd, tmp_path, keys={"pod.launch": "ctrl+n", "pod.kill": "K"})
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("n")
        await pilot.pause(0.5)
        assert session(app, "train").state == "absent"  # n no longer launches
        await pilot.press("ctrl+n")
        await until(pilot, lambda: session(app, "train").state == "running", what="ctrl+n launched")
        await pilot.press("k")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="K opens the kill dialog")
        await pilot.press("escape")


# ------------------------------------------------- checkpoints, providers, errors


def checkpoints_in(work: Path) -> Path:
    """Two finished checkpoints (16 MiB, so the download reports progress), an hour old."""
    work.mkdir(exist_ok=True)
    old = time.time() - 3600
    for step in (100, 200):
        path = work / f"step_{step}.pt"
        path.write_bytes(os.urandom(1 << 20) * 16)
        os.utime(path, (old, old))
    return work / "step_200.pt"


async def test_download_shows_progress_in_the_checkpoint_list_and_verifies(sshd, tmp_path, monkeypatch):
    from tui.downloads import DONE, RUNNING
    from tui.widgets.checkpoint_list import CheckpointList

    monkeypatch.chdir(tmp_path)  # downloads land in ./checkpoints/POD/SESSION
    newest = checkpoints_in(tmp_path / "work")
    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    notes = Notes(app)
    seen = []
    original = app.actions._set_download
    app.actions._set_download = lambda state: (seen.append(state), original(state))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PodScreen), what="pod screen")
        listing = app.screen.query_one(CheckpointList)
        await until(pilot, lambda: "step_200.pt" in str(listing.render()), what="the checkpoint list")
        assert "not downloaded" in str(listing.render())
        await pilot.press("d")
        await until(pilot, lambda: (s := app.actions.downloads.get(("a100", "train"))) and s.state == DONE,
                    what="download done")
        await until(pilot, lambda: "downloaded, verified" in str(listing.render()), what="verified in the list")
        assert isinstance(app.screen, PodScreen)  # the app stayed where it was, usable
    running = [s for s in seen if s.state == RUNNING and s.total]
    assert running and running[-1].done == running[-1].total == newest.stat().st_size
    local = tmp_path / "checkpoints" / "a100" / "train" / "step_200.pt"
    assert local.read_bytes() == newest.read_bytes()
    # Told by the download's event (sessions/events.py), the same sentence auto-download's has.
    assert notes.find("downloaded step_200.pt to ") and notes.find("sha256 verified, 16.8 MB in")


async def test_resume_relaunches_from_the_newest_checkpoint_and_asks_before_a_restart(sshd, tmp_path, clean_tmux):
    work = tmp_path / "work"
    newest = checkpoints_in(work)
    config = config_for(sshd, tmp_path)
    doc = yaml.safe_load(yaml.safe_dump({"pods": [sshd.pod_entry("a100", sessions=[
        {"name": "train", "workdir": str(work), "command": "sleep 600",
         "resume": "echo resumed from {checkpoint} >> resumed.txt; sleep 600"}])]}))
    config = parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml")
    app = make_app(config, state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("r")  # not running: resumes at once
        await until(pilot, lambda: session(app, "train").state == "running", what="resumed")
        await until(pilot, lambda: (work / "resumed.txt").exists(), what="the resume command ran")
        assert (work / "resumed.txt").read_text() == f"resumed from {newest}\n"
        assert notes.find("Resumed 'train' from step_200.pt")
        await pilot.press("r")  # running: a restart needs a yes
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="restart dialog")
        assert "still running" in str(app.screen.query_one(".dialog-body").render())
        await pilot.press("y")
        await until(pilot, lambda: (work / "resumed.txt").read_text().count("resumed") == 2, what="restarted")


async def test_stop_and_teardown_without_a_provider_say_so(sshd, tmp_path):
    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await pilot.press("s", "T")
        await pilot.pause(0.2)
        assert notes.find("Pod 'a100' has no provider, so gpuctl cannot stop it")
        assert notes.find("Pod 'a100' has no provider, so gpuctl cannot tear down it") or \
            notes.find("cannot tear down")


async def test_stop_and_teardown_through_the_provider_api(sshd, tmp_path, monkeypatch):
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)  # the next GET sees the change: no 5 s poll wait
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    checkpoints_in(work)
    with ProviderServer(fake) as server:
        provider = {"type": "runpod", "id": "pod1", "api_key_env": "TEST_PROVIDER_KEY", "api_url": server.url}
        config_for(sshd, tmp_path)  # pins the host key
        session = {"name": "train", "workdir": str(work), "command": "sleep 600"}
        doc = {"pods": [{**sshd.pod_entry("a100"), "provider": provider, "sessions": [session]}]}
        config = parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml")
        app = make_app(config, state_file=tmp_path / "tui.json")
        notes = Notes(app)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="stop dialog", timeout=30)
            body = str(app.screen.query_one(".dialog-body").render())
            assert "ask runpod to stop instance pod1" in body and "Kept:" in body and "Lost:" in body
            assert "Checkpoints: NOT safely downloaded:" in body and "step_200.pt" in body  # the stop wipes it
            await pilot.press("y")
            await until(pilot, lambda: notes.find("is stopped"), what="stopped")
            assert server.calls("POST", "/v2/pods/pod1/action")

            # The newest checkpoint is not downloaded yet: the dialog says so, plainly.
            await pilot.press("T")
            await until(pilot, lambda: isinstance(app.screen, TypedConfirmDialog), what="teardown dialog")
            body = str(app.screen.query_one(".dialog-body").render())
            assert "Terminate pod 'a100'" in body and "Checkpoints: NOT safely downloaded:" in body
            assert "step_200.pt" in body
            await pilot.press("escape")
            await until(pilot, lambda: notes.find("was not torn down"), what="cancelled")
            await pilot.press("d")
            await until(pilot, lambda: notes.find("downloaded step_200.pt to "), what="downloaded")
            await pilot.press("T")
            await until(pilot, lambda: isinstance(app.screen, TypedConfirmDialog), what="teardown dialog again")
            body = str(app.screen.query_one(".dialog-body").render())
            assert "Checkpoints: safe: session train: step_200.pt verified" in body
            await pilot.press("y", "enter")  # not the name: nothing happens
            await pilot.pause(0.2)
            assert isinstance(app.screen, TypedConfirmDialog) and not server.calls("DELETE")
            app.screen.query_one("#typed").value = ""
            await pilot.press(*"a100", "enter")
            await until(pilot, lambda: notes.find("is gone"), what="torn down")
            assert server.calls("DELETE", "/v2/pods/pod1")
            assert not [m for m, _ in notes.messages if KEY in m]


async def test_an_action_that_fails_is_a_notification_not_a_crash(sshd, tmp_path, clean_tmux):
    app = make_app(config_for(sshd, tmp_path), state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        pod_tmux(sshd, "new-session", "-d", "-s", "train", "sleep 600")  # started behind gpuctl's back
        app.actions.launch(Target("a100", "train"))  # the snapshot has not seen it yet
        await until(pilot, lambda: notes.find("Launch failed"), what="failure toast")
        message, severity = notes.find("Launch failed")[0]
        assert "already running" in message and severity == "error"
        assert app.is_running


# ------------------------------------------------------------------ policies (watch)


async def test_policies_run_in_the_tui_and_w_pauses_them_per_pod(sshd, tmp_path, clean_tmux, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    ckpt = work / "step_100.pt"
    ckpt.write_bytes(b"x" * 1000)
    os.utime(ckpt, (time.time() - 600, time.time() - 600))
    trust(sshd)
    crash = "sh -c 'while [ ! -f crash ]; do echo step 1/9 \\| loss 2; sleep 0.2; done; rm crash; exit 3'"
    entry = sshd.pod_entry("a100", sessions=[{
        "name": "train", "workdir": str(work), "command": crash,
        "resume": "sh -c 'echo \"$0\" >> resumed; i=101; while [ ! -f fail ]; do "
                  "echo step $i/900 \\| loss 1; i=$((i+1)); sleep 0.2; done; exit 7' {checkpoint}"}])
    config = parse_config(yaml.safe_dump({"policies": {"auto_resume": {"backoff_s": 0.1, "max_restarts": 3}},
                                          "pods": [entry]}), tmp_path / "config.yaml")
    app = make_app(config, state_file=tmp_path / "tui.json")
    notes = Notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: pod_state(app).state == "online", what="pod online")
        await until(pilot, lambda: app.automation and app.automation.watcher, what="policies running")
        await pilot.press("n")  # step_100.pt is there: n asks, and this run starts from scratch
        from tui.dialogs.pick import PickDialog
        await until(pilot, lambda: isinstance(app.screen, PickDialog), what="resume-or-scratch question")
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="from-scratch confirmation")
        await pilot.press("y")
        await until(pilot, lambda: session(app, "train") and session(app, "train").state == "running",
                    what="train running")
        (work / "crash").write_text("")
        await until(pilot, lambda: (work / "resumed").exists(), what="auto-resume")
        assert (work / "resumed").read_text().strip() == str(ckpt)
        await until(pilot, lambda: notes.find("restarted from step_100.pt"), what="resumed toast")

        await pilot.press("escape")  # the log screen the launch opened
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), what="fleet screen")
        await pilot.press("w")
        await until(pilot, lambda: notes.find("Policies paused"), what="paused toast")
        assert not app.automation.actions_enabled("a100")
        restarts = app.automation.watcher.ctx.state.restarts
        await until(pilot, lambda: restarts["a100/train"].progressed, what="the resumed run progressing")
        # It fails (status 7) while paused: nothing restarts it.
        (work / "fail").write_text("")
        await until(pilot, lambda: session(app, "train").state == "exited", what="train exited")
        await pilot.pause(1.5)
        assert (work / "resumed").read_text().count("\n") == 1
        await pilot.press("w")
        await until(pilot, lambda: notes.find("Policies on"), what="on toast")
        assert app.automation.actions_enabled("a100")


def test_a_snapshot_reaching_the_pod_screen_before_it_is_composed_waits_for_its_mount():
    # Seen in a full run: `enter` pushed the pod screen and a fleet update arrived before
    # its widgets existed (NoMatches '#pod-header'). on_mount draws the newest snapshot.
    from sessions.snapshot import FleetSnapshot

    screen = PodScreen("a100")
    screen.show(FleetSnapshot())
    assert screen._drawn is None
