"""Notifier: real loopback webhooks, real shell commands, a fake notify-send on PATH.

Timing is never asserted: tests wait (with a generous cap) for something to happen
and then check what did and did not happen in that order.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

import pytest

from sessions.watch import notify
from sessions.events import ALL_KINDS, EventKind, WatchEvent
from sessions.watch.notify import DEFAULT_KINDS, DESKTOP_MISSING, INTERRUPTING, Notifier, kinds_for
from sessions.config.policy_model import NotifyTarget
from sessions.config.shell_template import NOTIFY_PLACEHOLDERS, render
from tests.support.net import SilentServer, refused_port
from tests.support.provider_server import ProviderServer, Reply
from tests.support.procs import alive

TOKEN = "xoxb-SECRET-42"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """Retries without the real pauses between them."""
    monkeypatch.setattr(notify, "BACKOFF_S", (0.0, 0.0, 0.0))


@pytest.fixture
def receiver():
    """A loopback webhook receiver that answers 200 unless a test queues other replies."""
    with ProviderServer(fake=lambda rec: Reply(200, "ok")) as srv:
        yield srv


@pytest.fixture
def errors() -> list[str]:
    """What on_error reported (a task cannot fail the test by raising from it)."""
    return []


def event(kind: str = EventKind.ALERT, message: str = "GPU 0 at 91°C", session: str | None = "train",
          **extra) -> WatchEvent:
    return WatchEvent(kind, "pod-a", message, session, ts=1_780_000_000.25, extra=extra)


async def until(check, what: str, limit: float = 20.0) -> None:
    """Wait until `check()` is true; fail (naming `what`) if it never becomes so."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not check():
        if loop.time() > end:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- which events go where -----------------------------------------------------------


def test_default_kind_sets_per_target_type_and_explicit_kinds_win():
    interrupting = {"alert", "session_exited", "preempted", "resumed", "budget_action",
                    "checkpoint_downloaded", "disconnected"}
    assert set(INTERRUPTING) == interrupting
    assert kinds_for(NotifyTarget("webhook", "http://x/")) == set(ALL_KINDS) == set(DEFAULT_KINDS["webhook"])
    assert kinds_for(NotifyTarget("desktop")) == interrupting
    assert kinds_for(NotifyTarget("command", "true")) == interrupting
    assert kinds_for(NotifyTarget("webhook", "http://x/", kinds=("alert",))) == {"alert"}
    assert kinds_for(NotifyTarget("desktop", kinds=("connected", "alert"))) == {"connected", "alert"}


async def test_each_target_gets_its_kinds(receiver, tmp_path, errors):
    default_cmd, only_connected = tmp_path / "default", tmp_path / "connected"
    targets = [
        NotifyTarget("webhook", receiver.url + "/all"),
        NotifyTarget("webhook", receiver.url + "/alerts", kinds=("alert",)),
        NotifyTarget("command", f"echo {{kind}} >> {shlex.quote(str(default_cmd))}"),
        NotifyTarget("command", f"echo {{kind}} >> {shlex.quote(str(only_connected))}", kinds=("connected",)),
    ]
    notifier = Notifier(targets, on_error=errors.append)
    for kind in ("connected", "checkpoint_found", "alert"):
        await notifier.send(event(kind))
    await notifier.aclose()
    assert errors == []
    assert sorted(r.json["kind"] for r in receiver.calls(path="/all")) == ["alert", "checkpoint_found", "connected"]
    assert [r.json["kind"] for r in receiver.calls(path="/alerts")] == ["alert"]
    assert lines(default_cmd) == ["alert"]
    assert lines(only_connected) == ["connected"]


# --- webhooks --------------------------------------------------------------------------


async def test_webhook_receives_the_event_json_with_a_text_key(receiver, errors):
    notifier = Notifier([NotifyTarget("webhook", f"{receiver.url}/hook?token={TOKEN}")], on_error=errors.append)
    sent = [event(EventKind.ALERT, alert="gpu_temp_c", value=91, threshold=85),
            event(EventKind.CONNECTED, "connected", session=None)]
    for ev in sent:
        await notifier.send(ev)
    await notifier.aclose()
    assert errors == []
    assert len(receiver.requests) == 2
    for req in receiver.requests:
        assert (req.method, req.path, req.query) == ("POST", "/hook", {"token": [TOKEN]})
        assert req.headers["content-type"] == "application/json"
        assert req.headers["user-agent"] == "gpuctl"
    got = sorted((r.json for r in receiver.requests), key=lambda body: body["kind"])
    want = sorted(({**ev.to_json(), "text": ev.readable()} for ev in sent), key=lambda body: body["kind"])
    assert got == want
    assert got[0]["alert"] == "gpu_temp_c" and "pod-a/train  alert  GPU 0 at 91°C" in got[0]["text"]


async def test_webhook_retries_5xx_and_429_then_succeeds(receiver, errors):
    receiver.push("POST", "/hook", Reply(500, "oops"), Reply(503, "busy"), Reply(429, "", headers={"Retry-After": "0"}))
    notifier = Notifier([NotifyTarget("webhook", receiver.url + "/hook")], on_error=errors.append)
    await notifier.send(event())
    await notifier.aclose()
    assert errors == []
    assert len(receiver.requests) == 4
    assert all(r.json["kind"] == "alert" for r in receiver.requests)


async def test_webhook_gives_up_after_four_5xx_and_on_a_long_retry_after(receiver, errors):
    receiver.push("POST", "/down", *[Reply(502, "bad gateway")] * 4)
    receiver.push("POST", "/slow", Reply(429, "", headers={"Retry-After": "3600"}))
    notifier = Notifier([NotifyTarget("webhook", receiver.url + "/down"),
                         NotifyTarget("webhook", receiver.url + "/slow")], on_error=errors.append)
    await notifier.send(event())
    await notifier.aclose()
    assert len(receiver.calls(path="/down")) == 4 and len(receiver.calls(path="/slow")) == 1
    assert sorted(errors) == sorted([
        f"notify webhook {receiver.url}/down: HTTP 502 Bad Gateway: bad gateway (tried 4 times)",
        f"notify webhook {receiver.url}/slow: HTTP 429 Too Many Requests; it asks to wait 3600s, "
        "so this event is dropped",
    ])


async def test_webhook_4xx_is_not_retried_and_the_report_hides_the_query_string(receiver, errors):
    receiver.push("POST", "/hook", Reply(403, f"invalid_token (token={TOKEN})"))
    url = f"http://user:pw@127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/hook?token={TOKEN}#frag"
    notifier = Notifier([NotifyTarget("webhook", url, line=12)], on_error=errors.append)
    await notifier.send(event())
    await notifier.aclose()
    assert len(receiver.requests) == 1
    assert errors == [f"notify webhook {receiver.url}/hook (config line 12): HTTP 403 Forbidden: invalid_token (…)"]
    assert TOKEN not in errors[0] and "pw" not in errors[0]


async def test_a_refused_webhook_is_reported_once_not_per_event(errors):
    url = f"http://127.0.0.1:{refused_port()}/hook?key={TOKEN}"
    notifier = Notifier([NotifyTarget("webhook", url)], on_error=errors.append)
    for _ in range(3):
        await notifier.send(event())
    await notifier.aclose()
    assert errors == [f"notify webhook {notify.safe_url(url)}: connection refused"]
    assert TOKEN not in errors[0]


async def test_a_hanging_webhook_delays_neither_a_command_nor_later_events(tmp_path, errors):
    out = tmp_path / "out"
    with SilentServer() as silent:
        notifier = Notifier([NotifyTarget("webhook", f"http://127.0.0.1:{silent.port}/hook"),
                             NotifyTarget("command", f"echo {{message}} >> {shlex.quote(str(out))}")],
                            on_error=errors.append, timeout=120)
        await notifier.send(event(message="first"))
        await until(lambda: lines(out) == ["first"] and silent.accepted >= 1, "the command ran, the webhook waits")
        await notifier.send(event(message="second"))
        await until(lambda: lines(out) == ["first", "second"], "the command got the later event")
        # The webhook is still waiting for an answer: nothing reported yet, both in flight.
        assert errors == []
        await notifier.aclose(grace=0.1)
    assert errors == [f"notify webhook http://127.0.0.1:{silent.port}/hook: gave up on 2 deliveries "
                      "still in flight when gpuctl stopped"]


async def test_a_stuck_target_holds_at_most_max_in_flight_deliveries(monkeypatch, errors):
    monkeypatch.setattr(notify, "MAX_IN_FLIGHT", 2)
    with SilentServer() as silent:
        notifier = Notifier([NotifyTarget("webhook", f"http://127.0.0.1:{silent.port}/")],
                            on_error=errors.append, timeout=120)
        for _ in range(4):
            await notifier.send(event())
        assert errors == [f"notify webhook http://127.0.0.1:{silent.port}/: 2 deliveries still in flight; "
                          "dropping new events"]
        await notifier.aclose(grace=0.1)
    assert errors[1:] == [f"notify webhook http://127.0.0.1:{silent.port}/: gave up on 2 deliveries "
                          "still in flight when gpuctl stopped"]


async def test_send_never_raises_even_with_a_broken_callback_or_an_unknown_target():
    def broken(message: str) -> None:
        raise RuntimeError("callback bug")

    notifier = Notifier([NotifyTarget("pager", "x", kinds=("alert",)), NotifyTarget("webhook", None)],
                        on_error=broken)
    await notifier.send(event())
    await notifier.aclose()
    await notifier.send(event())  # after close: ignored


async def test_a_webhook_that_never_answers_is_reported_after_the_timeout(errors):
    with SilentServer() as silent:
        notifier = Notifier([NotifyTarget("webhook", f"http://127.0.0.1:{silent.port}/")],
                            on_error=errors.append, timeout=0.3)
        await notifier.send(event())
        await notifier.aclose()
    assert errors == [f"notify webhook http://127.0.0.1:{silent.port}/: no answer within 0.3s"]


# --- commands ------------------------------------------------------------------------------


HOSTILE = "it's \"quoted\" $(touch {canary}) `touch {canary}`; touch {canary} & echo $HOME \\n {kind}"


@pytest.mark.parametrize("template", [
    "printf '%s\\n' {message} >> {out}",
    "printf '%s\\n' '{message}' >> {out}",
    'printf \'%s\\n\' "{message}" >> {out}',
    "printf '%s\\n' 'says: '{message}'!' >> {out}",
    'printf \'%s\\n\' "says: {message}!" >> {out}',
])
async def test_command_gets_a_hostile_message_literally(tmp_path, template, errors):
    out, canary = tmp_path / "out", tmp_path / "canary"
    message = HOSTILE.format(canary=canary, kind="{kind}")
    filled = template.replace("{out}", shlex.quote(str(out)))
    notifier = Notifier([NotifyTarget("command", filled)], on_error=errors.append)
    await notifier.send(event(message=message))
    await notifier.aclose()
    assert errors == []
    want = f"says: {message}!" if "says" in template else message
    assert out.read_text() == want + "\n"
    assert not canary.exists()


async def test_command_fills_every_placeholder_and_leaves_others(tmp_path, errors):
    out = tmp_path / "out"
    template = (f"printf '%s|%s|%s|%s|%s|%s\\n' {{kind}} {{pod}} {{session}} {{ts}} '{{unknown}}' '${{kind}}' "
                f">> {shlex.quote(str(out))}")
    notifier = Notifier([NotifyTarget("command", template)], on_error=errors.append)
    await notifier.send(event())
    await notifier.send(event(EventKind.DISCONNECTED, session=None))
    await notifier.aclose()
    assert errors == []
    assert sorted(lines(out)) == ["alert|pod-a|train|1780000000.25|{unknown}|${kind}",
                                  "disconnected|pod-a||1780000000.25|{unknown}|${kind}"]
    assert render("x {session} {nope}", NOTIFY_PLACEHOLDERS) == 'x "$GPUCTL_SESSION" {nope}'


async def test_command_gets_the_event_in_its_environment(tmp_path, errors):
    out = tmp_path / "out"
    template = ('printf \'%s\\n\' "$GPUCTL_KIND" "$GPUCTL_POD" "$GPUCTL_SESSION" "$GPUCTL_MESSAGE" '
                f'"$GPUCTL_EVENT" > {shlex.quote(str(out))}')
    ev = event(message="a b $(c)", alert="stall_minutes", value=16)
    notifier = Notifier([NotifyTarget("command", template)], on_error=errors.append)
    await notifier.send(ev)
    await notifier.aclose()
    assert errors == []
    kind, pod, session, message, line = lines(out)
    assert (kind, pod, session, message) == ("alert", "pod-a", "train", "a b $(c)")
    assert json.loads(line) == ev.to_json()


async def test_a_failing_command_is_reported_with_its_exit_status_and_stderr_tail(errors):
    template = "echo starting >&2; echo 'boom: disk full' >&2; exit 3"
    notifier = Notifier([NotifyTarget("command", template, line=7)], on_error=errors.append)
    await notifier.send(event())
    await notifier.aclose()
    assert errors == ["notify command echo (config line 7): exit status 3: starting | boom: disk full"]


async def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path, errors):
    pid_file = tmp_path / "pid"
    notifier = Notifier([NotifyTarget("command", f"sleep 300 & echo $! > {shlex.quote(str(pid_file))}; wait")],
                        on_error=errors.append, timeout=0.5)
    await notifier.send(event())
    await notifier.aclose()
    assert errors == ["notify command sleep: did not finish within 0.5s; killed it"]
    pid = int(pid_file.read_text())
    await until(lambda: not alive(pid), "the background sleep was killed")




# --- desktop ---------------------------------------------------------------------------------


@pytest.fixture
def fake_notify_send(tmp_path, monkeypatch):
    """A `notify-send` alone on PATH that writes each call's argv (NUL-separated) to a file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    script = bin_dir / "notify-send"
    script.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {shlex.quote(str(calls))}/call.$$\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))

    def recorded() -> list[list[str]]:
        return sorted(p.read_text().split("\0")[:-1] for p in calls.iterdir())
    return recorded


async def test_desktop_calls_notify_send_with_app_name_urgency_summary_and_body(fake_notify_send, errors):
    notifier = Notifier([NotifyTarget("desktop")], on_error=errors.append)
    await notifier.send(event(EventKind.ALERT, "GPU 0 at 91°C"))
    await notifier.send(event(EventKind.SESSION_EXITED, "exited with status 0"))
    await notifier.send(event(EventKind.DISCONNECTED, "-lost the connection", session=None))
    await notifier.send(event(EventKind.CONNECTED, "connected", session=None))  # not in the default set
    await notifier.aclose()
    assert errors == []
    assert fake_notify_send() == sorted([
        ["--app-name=gpuctl", "--urgency=critical", "gpuctl: pod-a/train: alert", "GPU 0 at 91°C"],
        ["--app-name=gpuctl", "--urgency=normal", "gpuctl: pod-a/train: session_exited", "exited with status 0"],
        ["--app-name=gpuctl", "--urgency=normal", "gpuctl: pod-a: disconnected", " -lost the connection"],
    ])


async def test_desktop_without_notify_send_says_so_once(tmp_path, monkeypatch, errors):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    notifier = Notifier([NotifyTarget("desktop")], on_error=errors.append)
    await notifier.send(event())
    await until(lambda: errors, "the missing tool was reported")
    for _ in range(3):
        await notifier.send(event())
    await notifier.aclose()
    assert errors == [f"notify desktop: {DESKTOP_MISSING}"]


def test_a_secret_in_a_webhook_path_is_not_shown():
    assert notify.safe_url("https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX") == \
        "https://hooks.slack.com/services/T0001/B0002/…"
    assert notify.safe_url("https://discord.com/api/webhooks/123/abcdefghijklmnopqrstuvwxyz") == \
        "https://discord.com/api/webhooks/123/…"
    assert notify.safe_url("http://127.0.0.1:8080/hook?token=x") == "http://127.0.0.1:8080/hook"
