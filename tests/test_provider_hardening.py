"""Provider answers, secrets, deadlines and the stop guard (issue 19, items 6 and 12).

Against the local provider stand-ins (tests/support/provider_server.py) and, for the
stop guard, the real loopback sshd holding the checkpoints:

* a 2xx answer gpuctl cannot read (a proxy's `null`, `{}`, an HTML page, a list) makes
  `stop` / `teardown` exit 1 saying so; nothing is reported as gone, nothing is sent;
* a provider echoing the key in any encoding never gets it onto the terminal;
* one deadline per provider call: a provider that does not answer is asked once, and
  the message says how long gpuctl waited; `status --json` carries that error;
* `stop` where the provider's stop wipes a disk (RunPod) refuses like teardown while
  the newest checkpoint has no verified local copy.
"""

from __future__ import annotations

import base64
import json
import threading
from urllib.parse import quote, quote_plus

import pytest
import yaml

from sessions.providers import ops as provider_ops

from sessions.providers import poller as provider_poller
from sessions.config.loader import parse_config
from tests.support.files import put
from tests.support.pinning import trust
from tests.support.provider_server import (
    KEY,
    FakeCrusoe,
    FakeLambda,
    FakeRunPod,
    FakeTensorDock,
    FakeThunder,
    FakeVast,
    ProviderServer,
    Reply,
    crusoe_vm,
    lambda_instance,
    runpod_pod,
    tensordock_instance,
    thunder_instance,
    vast_instance,
)
from tui.cli import main

UNREADABLE = "the provider answered something gpuctl cannot read"


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for name in ("RUNPOD_API_KEY", "VAST_API_KEY", "LAMBDA_API_KEY", "TENSORDOCK_API_KEY", "TNR_API_TOKEN",
                 "CRUSOE_SECRET_KEY"):
        monkeypatch.setenv(name, KEY)
    monkeypatch.setenv("CRUSOE_ACCESS_KEY_ID", "key-id-1")
    for name in ("RUNPOD_API_BASE_URL", "VAST_URL"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, kind: str, ident: str, url: str, extra: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"pods:\n  - name: box\n    host: 203.0.113.9\n"
                    f"    provider: {{type: {kind}, id: '{ident}', api_url: '{url}'{extra}}}\n")
    return str(path)


# --- item 6: answers that do not parse are errors, never "gone" ------------------------

# (provider, fake, instance id, the request `get` makes, config extra)
PROVIDERS = {
    "vastai": (lambda: FakeVast({"5": vast_instance(5)}), "5", ("GET", "/api/v0/instances/5/"), ""),
    "runpod": (lambda: FakeRunPod({"pod1": runpod_pod("pod1")}), "pod1", ("GET", "/v2/pods/pod1"), ""),
    "lambda": (lambda: FakeLambda({"abc": lambda_instance("abc")}), "abc", ("GET", "/api/v1/instances/abc"), ""),
    "tensordock": (lambda: FakeTensorDock({"td-1": tensordock_instance()}), "td-1",
                   ("GET", "/api/v2/instances/td-1"), ""),
    "thunder": (lambda: FakeThunder({"0": thunder_instance()}), "0", ("GET", "/v1/instances/list"), ""),
    "crusoe": (lambda: FakeCrusoe({"vm-1": crusoe_vm()}), "vm-1",
               ("GET", "/v1/projects/proj-1/compute/vms/instances/vm-1"), ", project: proj-1"),
}
BODIES = {
    "empty body": Reply(200),
    "null": Reply(200, "null", content_type="application/json"),
    "{}": Reply(200, {}),
    "HTML from a proxy": Reply(200, "<html><body>Gateway says hello</body></html>", content_type="text/html"),
    "a list": Reply(200, []),
}


def cases():
    for verb in ("teardown", "stop"):
        for kind in PROVIDERS:
            if verb == "stop" and kind in ("lambda", "thunder"):
                continue  # no stop there: refused before any request
            for body in BODIES:
                if kind == "thunder" and body == "{}":
                    continue  # Thunder's list is a map keyed by id: `{}` is a real empty account
                yield pytest.param(verb, kind, body, id=f"{verb}-{kind}-{body}")


@pytest.mark.parametrize(("verb", "kind", "body"), list(cases()))
def test_an_unreadable_answer_is_an_error_and_nothing_is_gone(tmp_path, capsys, verb, kind, body):
    make, ident, (method, path), extra = PROVIDERS[kind]
    with ProviderServer(make()) as server:
        server.push(method, path, BODIES[body])
        force = ["--force"] if verb == "teardown" else []  # the pod has no sessions: stop's guard says yes
        code = main(["--config", write(tmp_path, kind, ident, server.url, extra), verb, "box", "--yes", *force])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert f"gpuctl: {kind}: {UNREADABLE} ({method} {path}" in err
    assert "gone" not in out and "stopped" not in out and out == ""
    assert [r.method for r in server.requests] == [method]  # no DELETE, no stop sent
    assert KEY not in out + err


def test_a_vast_mutation_answered_without_success_is_not_taken_as_done(tmp_path, capsys):
    with ProviderServer(FakeVast({"5": vast_instance(5)})) as server:
        server.push("DELETE", "/api/v0/instances/5/", Reply(200, {}))
        server.push("PUT", "/api/v0/instances/5/", Reply(200, "null", content_type="application/json"))
        config = write(tmp_path, "vastai", "5", server.url)
        assert main(["--config", config, "teardown", "box", "--yes", "--force", "--timeout", "0"]) == 1
        assert f"vastai: {UNREADABLE} (DELETE /api/v0/instances/5/: an empty object" in capsys.readouterr().err
        assert main(["--config", config, "stop", "box", "--yes", "--timeout", "0"]) == 1
        assert f"vastai: {UNREADABLE} (PUT /api/v0/instances/5/: null" in capsys.readouterr().err


async def test_the_documented_null_instance_still_means_gone():
    """Vast's own "no such instance" shape, `{"instances": null}`, is read as before."""
    with ProviderServer(FakeVast({})) as server:
        config = parse_config(f"pods:\n  - {{name: box, host: h, provider: {{type: vastai, id: '9', "
                              f"api_url: '{server.url}'}}}}\n", "c.yaml")
        result = await provider_ops.teardown(config, config.pods[0], force=True)
    assert (result.outcome, result.message) == ("already", "pod 'box' is already gone (vastai does not know 9)")


# --- item 12: the key in any encoding never reaches the terminal ------------------------

def _variants(key: str) -> dict[str, str]:
    b64, url64 = base64.b64encode, base64.urlsafe_b64encode
    return {
        "raw": key, "lower": key.lower(), "upper": key.upper(),
        "base64": b64(key.encode()).decode(), "base64 unpadded": b64(key.encode()).decode().rstrip("="),
        "urlsafe base64": url64(key.encode()).decode().rstrip("="),
        "basic key:": b64(f"{key}:".encode()).decode(), "basic :key": b64(f":{key}".encode()).decode(),
        "basic user:key": b64(f"user:{key}".encode()).decode(),
        "url-encoded": quote(key, safe=""), "form-encoded": quote_plus(key),
    }


ODD_KEY = "rp_9f/Zq+x=Lm 77kQ~tail"
"""A key with characters URL encoding changes (`/`, `+`, `=`, space, `~`)."""


@pytest.mark.parametrize(("key", "form"), [(KEY, f) for f in _variants(KEY) if "encoded" not in f] + [
    (ODD_KEY, f) for f in ("url-encoded", "form-encoded", "base64", "lower")])
def test_a_401_echoing_the_key_in_any_encoding_is_redacted(tmp_path, capsys, monkeypatch, key, form):
    monkeypatch.setenv("RUNPOD_API_KEY", key)
    echoed = _variants(key)[form]
    with ProviderServer(FakeRunPod({"pod1": runpod_pod("pod1")}, key=key)) as server:
        server.push("GET", "/v2/pods/pod1", Reply(401, {"title": "Unauthorized", "status": 401,
                                                        "detail": f"bad key {echoed} (Authorization: Basic {echoed})"}))
        assert main(["--config", write(tmp_path, "runpod", "pod1", server.url), "stop", "box", "--yes"]) == 1
    _, err = capsys.readouterr()
    assert "gpuctl: runpod: bad key " in err and "***" in err
    for name, text in _variants(key).items():
        assert text not in err, name


# --- item 12: one deadline per provider call; status --json carries the error -----------

@pytest.fixture
def silent_runpod():
    """A RunPod stand-in whose GETs never answer until the test ends (no sleeping)."""
    release = threading.Event()
    fake = FakeRunPod({"pod1": runpod_pod("pod1")})

    def handler(rec):
        if rec.method == "GET":
            release.wait(60)
        return fake(rec)

    with ProviderServer(handler) as server:
        try:
            yield server
        finally:
            release.set()


def test_stop_gives_up_after_one_deadline_and_says_so(tmp_path, capsys, silent_runpod):
    config = write(tmp_path, "runpod", "pod1", silent_runpod.url)
    assert main(["--config", config, "stop", "box", "--yes", "--api-timeout", "0.5"]) == 1
    _, err = capsys.readouterr()
    assert "gpuctl: runpod: RunPod did not answer within 0.5 s (GET /v2/pods/pod1)" in err
    assert [(r.method, r.path) for r in silent_runpod.requests] == [("GET", "/v2/pods/pod1")]  # not retried


def test_status_json_carries_a_provider_that_did_not_answer(tmp_path, capsys, silent_runpod, refused_port,
                                                             monkeypatch):
    monkeypatch.setattr(provider_poller, "REQUEST_TIMEOUT_S", 0.5)
    path = tmp_path / "config.yaml"
    path.write_text(f"pods:\n  - {{name: box, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
                    f"      provider: {{type: runpod, id: pod1, api_url: '{silent_runpod.url}'}}}}\n")
    main(["--config", str(path), "status", "--json"])
    pod = json.loads(capsys.readouterr().out)["pods"][0]
    assert pod["provider_error"] == "runpod: RunPod did not answer within 0.5 s (GET /v2/pods/pod1)"
    assert pod["provider_state"] is None


def test_status_json_says_so_when_it_stops_waiting_for_the_provider(tmp_path, capsys, silent_runpod,
                                                                    refused_port, monkeypatch):
    monkeypatch.setattr(provider_poller, "FIRST_ROUND_WAIT_S", 0.3)  # shorter than the call's deadline
    path = tmp_path / "config.yaml"
    path.write_text(f"pods:\n  - {{name: box, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
                    f"      provider: {{type: runpod, id: pod1, api_url: '{silent_runpod.url}'}}}}\n")
    main(["--config", str(path), "status", "--json"])
    assert json.loads(capsys.readouterr().out)["pods"][0]["provider_error"] == (
        "runpod: RunPod did not answer within 0.3 s")


# --- item 12: stop runs the teardown guard where the provider's stop wipes a disk --------

class GuardedPod:
    """A RunPod pod whose SSH side is the real loopback sshd holding the checkpoints."""

    def __init__(self, sshd, tmp_path, server, kind: str = "runpod", ident: str = "pod1"):
        self.workdir = tmp_path / "pod run"
        self.workdir.mkdir()
        trust(sshd)
        entry = sshd.pod_entry("p", sessions=[{"name": "train", "workdir": str(self.workdir)}])
        entry["provider"] = {"type": kind, "id": ident, "api_url": server.url}
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(yaml.safe_dump({"pods": [entry]}))
        self.config = parse_config(self.config_path.read_text(), self.config_path)
        put(self.workdir / "step_100.pt", b"one hundred")
        put(self.workdir / "step_200.pt", b"two hundred")

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config_path), *args])


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runpod_server():
    with ProviderServer(FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)) as server:
        yield server


def test_stop_is_refused_until_the_newest_checkpoint_is_downloaded(sshd, tmp_path, capsys, home, runpod_server):
    pod = GuardedPod(sshd, tmp_path, runpod_server)
    assert pod.cli("stop", "p", "--yes") == 1
    out, err = capsys.readouterr()
    assert ("gpuctl: not stopping pod 'p': session train's newest checkpoint step_200.pt has no verified local "
            "copy; a stop loses data there (the container disk is wiped") in err
    assert "or pass --force" in err and out == ""
    assert runpod_server.calls("POST") == []
    assert pod.cli("download", "p", "train") == 0
    capsys.readouterr()
    assert pod.cli("stop", "p", "--yes") == 0
    assert capsys.readouterr().out.startswith("pod 'p' is stopped")
    assert [r.json for r in runpod_server.calls("POST", "/v2/pods/pod1/action")] == [{"action": "stop"}]


def test_stop_with_force_goes_through_unverified(sshd, tmp_path, capsys, home, runpod_server):
    pod = GuardedPod(sshd, tmp_path, runpod_server)
    assert pod.cli("stop", "p", "--yes", "--force") == 0
    assert capsys.readouterr().out.startswith("pod 'p' is stopped")
    assert len(runpod_server.calls("POST", "/v2/pods/pod1/action")) == 1


async def test_the_fleet_and_tui_stop_path_runs_the_guard_by_default(sshd, tmp_path, home, runpod_server):
    """`Fleet.stop_instance` (the TUI's `s`, the budget) calls `provider_ops.stop` with no guard."""
    pod = GuardedPod(sshd, tmp_path, runpod_server)
    with pytest.raises(provider_ops.ActionRefused, match="step_200.pt has no verified local copy"):
        await provider_ops.stop(pod.config, pod.config.pod("p"))
    assert runpod_server.calls("POST") == []
    result = await provider_ops.stop(pod.config, pod.config.pod("p"), force=True)
    assert result.outcome == "done"


async def test_a_stop_that_keeps_the_disk_is_not_guarded(sshd, tmp_path, home):
    """Vast keeps all data on a stop (PROVIDERS.md 1.3): no checkpoint check, no refusal."""
    with ProviderServer(FakeVast({"5": vast_instance(5)}, settle=0)) as server:
        pod = GuardedPod(sshd, tmp_path, server, kind="vastai", ident="5")
        result = await provider_ops.stop(pod.config, pod.config.pod("p"))
    assert result.outcome == "done"
    assert [r.json for r in server.calls("PUT")] == [{"state": "stopped"}]
