"""A pod operation is told once, by the Fleet that performed it (issue 13).

Launch, kill, resume and stop publish `session_launched`, `session_killed`, `resumed`
and `provider_action` on the fleet's one stream (`sessions.fleet.news`): the TUI toasts
each from that event (one toast, the words it always had), and a webhook `notify:`
target, a real HTTP server on loopback, receives the same event, through the same
router the Watcher's events take. Driven with Pilot against the real sshd pod and tmux;
the stop talks to the local RunPod stand-in. A Fleet alone (no Watcher) tells its pods'
connection too (`sessions.fleet.connection_news`).
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sessions.checkpoints.listing import Checkpoint
from sessions.checkpoints.resume import ResumeResult
from sessions.config.loader import parse_config
from sessions.events import EventKind, EventStream, WatchEvent
from sessions.fleet.facade import Fleet
from sessions.fleet.news import killed_event, launched_event, provider_event, resumed_event
from sessions.providers.ops import ActionResult
from sessions.snapshot import PodSnapshot, SessionSnapshot
from sessions.tmux.control import KillResult, LaunchResult
from sessions.watch.state import open_state
from sessions.watch.watcher import Watcher
from tests.support.pilot_wait import until
from tests.support.pinning import trust
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, Reply, runpod_pod
from tui.actions import Target
from tui.app import make_app
from tui.dialogs.confirm import ConfirmDialog, TypedConfirmDialog

FIXED = ["ts", "pod", "session", "kind", "message"]
ACTIONS = (EventKind.SESSION_LAUNCHED, EventKind.SESSION_KILLED, EventKind.RESUMED, EventKind.PROVIDER_ACTION)


def keys(event: WatchEvent) -> list[str]:
    return list(event.to_json())


# -- the events' keys (what `gpuctl watch --json` and a webhook get) -----------------


def test_each_operation_event_has_its_documented_keys():
    launched = launched_event("p", LaunchResult("p", "train", "~/train.log", False, replaced=True), "python train.py")
    assert keys(launched) == FIXED + ["command", "log_path", "replaced"]
    assert launched.message == "launched session 'train' (replacing its exited run); log: ~/train.log"
    killed = killed_event("p", KillResult("train", existed=True, was_running=True))
    assert keys(killed) == FIXED + ["existed", "was_running", "exit_status"]
    c = Checkpoint("step_200.pt", "/w/step_200.pt", "file", 200, 10, 1.0)
    resumed = resumed_event("p", "train", ResumeResult(c, "python train.py --from /w/step_200.pt",
                                                       LaunchResult("p", "train", "~/t.log", False)))
    # auto-resume's keys (checkpoint, attempt, max_restarts, command) are all there: None for a person's
    assert keys(resumed) == FIXED + ["checkpoint", "step", "attempt", "max_restarts", "command", "restarted"]
    assert (resumed.extra["attempt"], resumed.message) == (None, "resumed from step_200.pt")
    stopped = provider_event(ActionResult("p", "stop", "done", "stopped", "the volume", "the GPU", "pod p is stopped"))
    assert keys(stopped) == FIXED + ["action", "outcome", "state", "kept", "gone"]
    assert stopped.session is None
    assert all(e.kind in ACTIONS for e in (launched, killed, resumed, stopped))


@pytest.fixture
async def watched(tmp_path):
    doc = {"pods": [{"name": "p", "host": "h", "sessions": [{"name": "train", "workdir": "/w"}]}]}
    config = parse_config(yaml.safe_dump(doc), tmp_path / "c.yaml")
    fleet = SimpleNamespace(config=config, events=EventStream(), recent_log=lambda _p, _s: "step 7\n")
    state, _ = open_state(tmp_path / "state.json")
    events: list[WatchEvent] = []
    fleet.events.subscribe(events.append)
    watcher = Watcher(fleet, state, start_dir=tmp_path)
    yield watcher, fleet, events
    await watcher.aclose()
    state.close()


def pod_with(state: str, pid: int | None = 41) -> PodSnapshot:
    return PodSnapshot("p", "h", state="online", sessions=(SessionSnapshot("train", state=state, pid=pid,
                                                                          configured=True),))


async def test_a_kill_the_fleet_told_is_not_told_again_as_an_exit(watched):
    watcher, fleet, events = watched
    watcher.observe(pod_with("running"))
    fleet.events.publish(killed_event("p", KillResult("train", existed=True, was_running=True)))
    watcher.observe(pod_with("absent", None))
    assert [e.kind for e in events if e.session] == [EventKind.SESSION_KILLED]
    # The next end of a new run is news again.
    watcher.observe(pod_with("running", 77))
    watcher.observe(pod_with("absent", None))
    assert [e.kind for e in events if e.session] == [EventKind.SESSION_KILLED, EventKind.SESSION_EXITED]


async def test_a_session_ended_behind_gpuctls_back_is_still_an_exit(watched):
    watcher, _fleet, events = watched
    watcher.observe(pod_with("running"))
    watcher.observe(pod_with("absent", None))
    [exited] = [e for e in events if e.session]
    assert (exited.kind, exited.message) == (EventKind.SESSION_EXITED, "tmux session ended (killed by hand?)")


# -- Pilot: one event, one toast, the same event at the webhook -----------------------


pytestmark_tools = pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")


class Seen:
    """Every toast the app shows and every operation event on its fleet's stream."""

    def __init__(self, app) -> None:
        self.toasts: list[str] = []
        self.events: list[WatchEvent] = []
        self._subscribed = False
        notify = app.notify

        def recording(message, *args, **kwargs):
            self.toasts.append(str(message))
            return notify(message, *args, **kwargs)

        app.notify = recording

    def follow(self, app) -> bool:
        if not self._subscribed and app.fleet is not None:
            app.fleet.events.subscribe(lambda e: self.events.append(e) if e.kind in ACTIONS else None)
            self._subscribed = True
        return self._subscribed

    def of(self, kind: str) -> list[WatchEvent]:
        return [e for e in self.events if e.kind == kind]

    def toasted(self, text: str) -> list[str]:
        return [t for t in self.toasts if text in t]


def hooked(receiver: ProviderServer, kind: str) -> list[dict]:
    return [r.json for r in receiver.calls("POST", "/hook") if r.json and r.json.get("kind") == kind]


def same(posted: dict, event: WatchEvent) -> bool:
    return {k: v for k, v in posted.items() if k != "text"} == event.to_json() and posted["text"] == event.readable()


@pytest.fixture
def receiver():
    with ProviderServer(fake=lambda rec: Reply(200, "ok")) as srv:
        yield srv


@pytest.fixture
def clean_tmux(sshd):
    yield
    sshd.kill_tmux_sessions("train", "eval")


def aged_checkpoint(work: Path) -> Path:
    path = work / "step_200.pt"
    path.write_bytes(os.urandom(1 << 16))
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def session_state(app, name: str) -> str | None:
    found = next((s for s in app.snapshot.pod("a100").sessions if s.name == name), None)
    return found.state if found else None


def watcher_saw(app, name: str, state: str) -> bool:
    """The TUI's Watcher (tui.watch_bridge) has observed the session in `state`."""
    watcher = app.automation.watcher if app.automation else None
    snap = watcher.ctx.pod("a100") if watcher else None
    return snap is not None and any(s.name == name and s.state == state for s in snap.sessions)


@pytestmark_tools
@pytest.mark.usefixtures("isolated_home")
async def test_launch_kill_and_resume_are_each_one_event_one_toast_and_one_webhook_post(
        sshd, tmp_path, receiver, clean_tmux):
    trust(sshd)
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    newest = aged_checkpoint(work)
    entry = sshd.pod_entry("a100", sessions=[
        {"name": "eval", "workdir": str(scratch), "command": "sleep 600"},
        {"name": "train", "workdir": str(work), "command": "sleep 600", "checkpoints": ["step_*.pt"],
         "resume": "echo resumed from {checkpoint} >> resumed.txt; sleep 600"}])
    doc = {"policies": {"notify": [{"webhook": receiver.url + "/hook"}]}, "pods": [entry]}
    app = make_app(parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml"), state_file=tmp_path / "tui.json")
    seen = Seen(app)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: seen.follow(app) and app.snapshot.pod("a100").state == "online", what="online")
        await until(pilot, lambda: watcher_saw(app, "eval", "absent"), what="the Watcher following the pod")

        app.actions.launch(Target("a100", "eval"))
        await until(pilot, lambda: session_state(app, "eval") == "running", what="eval running")
        await until(pilot, lambda: seen.toasted("Launched session 'eval'"), what="the launch toast")
        [launched] = seen.of(EventKind.SESSION_LAUNCHED)
        assert (launched.pod, launched.session, launched.extra["command"]) == ("a100", "eval", "sleep 600")
        assert len(seen.toasted("Launched session 'eval'. Log: ")) == 1

        await until(pilot, lambda: watcher_saw(app, "eval", "running"), what="the Watcher seeing eval run")
        app.actions.kill(Target("a100", "eval"))
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the kill dialog")
        await pilot.press("y")
        await until(pilot, lambda: watcher_saw(app, "eval", "absent"), what="the Watcher seeing eval gone")
        [killed] = seen.of(EventKind.SESSION_KILLED)
        assert (killed.session, killed.extra["existed"]) == ("eval", True)
        await until(pilot, lambda: seen.toasted("Killed session 'eval'."), what="the kill toast")
        assert len(seen.toasted("Killed session 'eval'.")) == 1

        app.actions.resume(Target("a100", "train"))  # not running: no question
        await until(pilot, lambda: seen.of(EventKind.RESUMED), what="the resumed event")
        await until(pilot, lambda: seen.toasted("Resumed 'train' from step_200.pt: "), what="the resume toast")
        [resumed] = seen.of(EventKind.RESUMED)
        assert (resumed.extra["checkpoint"], resumed.extra["attempt"]) == (str(newest), None)
        assert len(seen.toasted("Resumed 'train'")) == 1

        for event in (launched, killed, resumed):
            await until(pilot, lambda kind=event.kind: hooked(receiver, kind), what=f"the webhook's {event.kind}")
        await pilot.pause(0.3)  # a second post of any of them would have arrived by now
        # The kill is one event: the Watcher does not tell the end again as an exit.
        assert not hooked(receiver, EventKind.SESSION_EXITED)
        for event in (launched, killed, resumed):
            [posted] = hooked(receiver, event.kind)
            assert same(posted, event)
        assert [e.kind for e in seen.events] == [EventKind.SESSION_LAUNCHED, EventKind.SESSION_KILLED,
                                                 EventKind.RESUMED]


@pytestmark_tools
@pytest.mark.usefixtures("isolated_home")
async def test_a_stop_and_a_teardown_are_each_one_provider_action_toasted_once_and_posted(sshd, tmp_path, receiver, monkeypatch):
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    trust(sshd)
    with ProviderServer(fake) as api:
        provider = {"type": "runpod", "id": "pod1", "api_key_env": "TEST_PROVIDER_KEY", "api_url": api.url}
        doc = {"policies": {"notify": [{"webhook": receiver.url + "/hook"}]},
               "pods": [{**sshd.pod_entry("a100"), "provider": provider}]}
        app = make_app(parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml"), state_file=tmp_path / "tui.json")
        seen = Seen(app)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: seen.follow(app) and app.snapshot.pod("a100").state == "online",
                        what="online")
            app.actions.stop(Target("a100"))
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the stop dialog")
            await pilot.press("y")
            await until(pilot, lambda: seen.of(EventKind.PROVIDER_ACTION), what="the provider_action event")
            await until(pilot, lambda: seen.toasted("is stopped"), what="the stop toast")
            [stopped] = seen.of(EventKind.PROVIDER_ACTION)
            assert (stopped.pod, stopped.extra["action"], stopped.extra["outcome"]) == ("a100", "stop", "done")
            await until(pilot, lambda: hooked(receiver, EventKind.PROVIDER_ACTION), what="the webhook's post")
            await until(pilot, lambda: app.snapshot.pod("a100").state == "stopped", what="shown stopped")
            await pilot.pause(0.3)
            [posted] = hooked(receiver, EventKind.PROVIDER_ACTION)
            assert same(posted, stopped)
            # One toast for the stop: the lifecycle's own `disconnected` (stopped by gpuctl) is not toasted.
            assert len(seen.toasted("is stopped")) == 1 and not seen.toasted("Connection lost")
            assert [m for m in seen.toasts if "Stopped" in m or "stopped" in m] == seen.toasted("is stopped")

            app.actions.teardown(Target("a100"))  # the same path: one more provider_action, one toast
            await until(pilot, lambda: isinstance(app.screen, TypedConfirmDialog), what="the teardown dialog")
            await pilot.press(*"a100", "enter")
            await until(pilot, lambda: len(seen.of(EventKind.PROVIDER_ACTION)) == 2, what="the teardown's event")
            torn = seen.of(EventKind.PROVIDER_ACTION)[1]
            assert (torn.extra["action"], torn.extra["outcome"]) == ("teardown", "done")
            await until(pilot, lambda: seen.toasted("is gone"), what="the teardown toast")
            await until(pilot, lambda: len(hooked(receiver, EventKind.PROVIDER_ACTION)) == 2, what="its post")
            await pilot.pause(0.3)
            assert len(seen.toasted("is gone")) == 1 and same(hooked(receiver, EventKind.PROVIDER_ACTION)[1], torn)
            assert len(seen.of(EventKind.PROVIDER_ACTION)) == 2


# -- a Fleet alone tells its pods' state changes (no Watcher needed) ------------------


@pytestmark_tools
@pytest.mark.usefixtures("isolated_home")
async def test_a_fleet_without_a_watcher_tells_its_pods_connection(sshd, tmp_path):
    """`gpuctl status --watch`, a library caller: the Fleet's own news, not the Watcher's."""
    trust(sshd)
    config = parse_config(yaml.safe_dump({"pods": [sshd.pod_entry("a100")]}), tmp_path / "config.yaml")
    told: list[WatchEvent] = []
    async with Fleet(config) as fleet:
        fleet.events.subscribe(told.append)
        deadline = time.monotonic() + 30
        while not told and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    [connected] = told
    assert (connected.kind, connected.pod, connected.before, connected.after) == ("connected", "a100", "connecting",
                                                                                  "online")
    assert keys(connected) == FIXED + ["transport", "state"] and connected.message.startswith("connected over ")
    assert connected.to_json()["state"] == "online"


class ClosedPipe(io.StringIO):
    """stdout after `gpuctl watch | head` has read its lines: every write fails."""

    def write(self, _text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.usefixtures("isolated_home")
async def test_watch_ends_quietly_when_nobody_reads_its_output(tmp_path, refused_port):
    """The Fleet's news (here the pod's first `disconnected`) reaches a closed stdout:
    watch ends with status 0, not a monitor taking the failed write for a lost link."""
    from tui.headless_watch import run_watch

    doc = {"pods": [{"name": "p", "host": "127.0.0.1", "port": refused_port, "user": "nobody"}]}
    config = parse_config(yaml.safe_dump(doc), tmp_path / "config.yaml")
    status = await asyncio.wait_for(run_watch(config, state_path=tmp_path / "state.json", as_json=True,
                                              pod_names=None, start_dir=tmp_path, out=ClosedPipe()), 60)
    assert status == 0
