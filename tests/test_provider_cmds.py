"""`gpuctl pods import`, `gpuctl stop`, `gpuctl teardown` end to end against the fake APIs."""

from __future__ import annotations

import logging

import pytest

from sessions.config.loader import load_config
from tests.support.provider_server import (
    KEY,
    FakeLambda,
    FakeRunPod,
    FakeVast,
    ProviderServer,
    lambda_instance,
    runpod_pod,
    vast_instance,
)
from tests.support.tty import Tty
from tui.cli import main


@pytest.fixture(autouse=True)
def keys(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("RUNPOD_API_KEY", "VAST_API_KEY", "LAMBDA_API_KEY"):
        monkeypatch.setenv(name, KEY)
    monkeypatch.delenv("RUNPOD_API_BASE_URL", raising=False)
    monkeypatch.delenv("VAST_URL", raising=False)


@pytest.fixture
def runpod():
    fake = FakeRunPod({"pod1": runpod_pod("pod1"), "pod2": runpod_pod("pod2", direct=False, name="proxied"),
                       "pod3": runpod_pod("pod3", "EXITED", name="old")}, settle=0)
    with ProviderServer(fake) as server:
        yield server, fake


def no_key_anywhere(capsys, caplog, *more: str) -> tuple[str, str]:
    out, err = capsys.readouterr()
    for text in (out, err, caplog.text, *more):
        assert KEY not in text
    return out, err


CONFIG = """\
# my pods, by hand
defaults:
  user: root   # everyone

pods:
  - name: existing      # keep this comment
    host: 198.51.100.1
    provider: {{type: runpod, id: pod1, api_url: '{url}'}}

# trailing note
"""


def test_import_prints_what_it_would_add_and_changes_nothing(tmp_path, runpod, capsys, caplog):
    server, _ = runpod
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(url=server.url))
    assert main(["--config", str(path), "pods", "import", "runpod"]) == 0
    out, err = no_key_anywhere(capsys, caplog)
    assert path.read_text() == CONFIG.format(url=server.url)
    assert "would add 1 pod(s)" in out
    assert "- name: proxied" in out and "host: ssh.runpod.io" in out and "ssh_proxy: true" in out
    assert f"api_url: \"{server.url}\"" in out  # reached the way its sibling pod is
    assert "skipped runpod pod1 (train-01): already in the config as pod 'existing'" in err
    assert "skipped runpod pod3 (old): not running (EXITED)" in err
    assert "direct TCP, which is faster" in err
    listing, gql = server.requests  # GraphQL only because pod3 is stopped: was it a spot pod?
    assert (listing.method, listing.path, listing.headers["authorization"]) == ("GET", "/v2/pods", f"Bearer {KEY}")
    assert (gql.method, gql.path) == ("POST", "/graphql")


def test_import_write_appends_keeps_comments_and_never_duplicates(tmp_path, runpod, capsys, caplog):
    server, fake = runpod
    fake.instances.pop("pod2")
    fake.instances["pod4"] = runpod_pod("pod4", name="train 02")
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(url=server.url))
    path.chmod(0o600)
    assert main(["--config", str(path), "pods", "import", "runpod", "--write"]) == 0
    out, _ = no_key_anywhere(capsys, caplog)
    assert "added 1 pod(s)" in out and "train-02" in out
    text = path.read_text()
    assert text.startswith(CONFIG.format(url=server.url).split("# trailing note")[0].rstrip("\n"))
    assert "    host: 198.51.100.1\n    provider:" in text and "# keep this comment" in text
    assert text.rstrip().endswith("# trailing note")
    assert path.stat().st_mode & 0o777 == 0o600
    pod = load_config(path).pod("train-02")
    assert (pod.host, pod.port, pod.user, pod.host_key, pod.price_per_hour) == ("203.0.113.9", 40122, "root", "accept-new", 3.28)
    assert (pod.provider.type, pod.provider.id, pod.provider.api_url) == ("runpod", "pod4", server.url)
    assert main(["--config", str(path), "pods", "import", "runpod", "--write"]) == 0
    out, err = no_key_anywhere(capsys, caplog)
    assert "nothing to import" in out and "already in the config as pod 'train-02'" in err
    assert path.read_text() == text


def test_import_creates_the_config_when_there_is_none(tmp_path, monkeypatch, capsys, caplog):
    with ProviderServer(FakeVast({"123": vast_instance(123)})) as server:
        monkeypatch.setenv("VAST_URL", server.url)  # vast-cli's own override works too
        path = tmp_path / "new" / "config.yaml"
        assert main(["--config", str(path), "pods", "import", "vast", "--write"]) == 0
    no_key_anywhere(capsys, caplog)
    pod = load_config(path).pods[0]
    assert (pod.name, pod.host, pod.port, pod.provider.type, pod.provider.id) == (
        "train-01", "198.51.100.20", 40022, "vastai", "123")
    assert server.requests[0].path == "/api/v1/instances/"


def test_import_refuses_unknown_providers_missing_keys_and_ssh(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.yaml"
    assert main(["--config", str(path), "pods", "import", "runpd"]) == 2
    assert "did you mean 'runpod'?" in capsys.readouterr().err
    monkeypatch.delenv("LAMBDA_API_KEY")
    assert main(["--config", str(path), "pods", "import", "lambda", "--api-url", "http://127.0.0.1:9"]) == 2
    assert "set LAMBDA_API_KEY to your Lambda API key" in capsys.readouterr().err
    assert main(["--config", str(path), "pods", "import", "ssh"]) == 2
    assert "no provider API" in capsys.readouterr().err
    assert not path.exists()


# --- stop / teardown ------------------------------------------------------------------

POD = """\
pods:
  - name: box
    host: 203.0.113.9
    provider: {{type: {kind}, id: '{ident}', api_url: '{url}'}}
"""


def write(tmp_path, kind, ident, url, extra: str = ""):
    path = tmp_path / "config.yaml"
    path.write_text(extra + POD.format(kind=kind, ident=ident, url=url))
    return str(path)


def test_stop_without_a_terminal_needs_yes(tmp_path, runpod, capsys):
    server, _ = runpod
    assert main(["--config", write(tmp_path, "runpod", "pod1", server.url), "stop", "box"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert server.requests == []


def test_stop_yes_stops_and_says_what_is_kept_and_lost(tmp_path, runpod, capsys, caplog):
    server, _ = runpod
    assert main(["--config", write(tmp_path, "runpod", "pod1", server.url), "stop", "box", "--yes"]) == 0
    out, err = no_key_anywhere(capsys, caplog)
    assert out.splitlines() == [
        "pod 'box' is stopped",
        "  kept: the volume disk (/workspace) and the pod itself, to start again later",
        "  lost: the container disk is wiped (everything outside /workspace); the volume disk keeps billing; "
        "a restart can come up with zero GPUs if the host's GPU was taken",
    ]
    assert "box: asking runpod to stop pod1" in err
    assert server.calls("POST", "/v2/pods/pod1/action")[0].json == {"action": "stop"}


def test_stop_on_a_terminal_asks_for_the_pod_name(tmp_path, runpod, capsys, monkeypatch):
    server, _ = runpod
    config = write(tmp_path, "runpod", "pod1", server.url)
    monkeypatch.setattr("sys.stdin", Tty("bxo\n"))
    assert main(["--config", config, "stop", "box"]) == 1
    err = capsys.readouterr().err
    assert "Stop pod 'box' (runpod pod1)?" in err and "  lost: the container disk is wiped" in err
    assert "not stopped" in err and server.calls("POST") == []
    monkeypatch.setattr("sys.stdin", Tty("box\n"))
    assert main(["--config", config, "stop", "box"]) == 0
    assert len(server.calls("POST", "/v2/pods/pod1/action")) == 1


def test_stop_where_the_provider_has_none_refuses(tmp_path, capsys):
    with ProviderServer(FakeLambda({"abc": lambda_instance("abc")})) as server:
        assert main(["--config", write(tmp_path, "lambda", "abc", server.url), "stop", "box", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "Lambda has no stop" in err and "use teardown" in err
    assert server.requests == []


def test_teardown_refuses_while_checkpoints_cannot_be_checked(tmp_path, runpod, capsys, refused_port):
    server, _ = runpod
    path = tmp_path / "config.yaml"
    path.write_text(
        f"pods:\n  - {{name: box, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
        f"      sessions: [{{name: train}}], provider: {{type: runpod, id: pod1, api_url: '{server.url}'}}}}\n")
    assert main(["--config", str(path), "teardown", "box", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "not tearing down pod 'box': cannot check its checkpoints" in err and "--force" in err
    # The provider is only asked whether the pod runs (so a stopped pod is said to be
    # stopped, not unreachable); nothing is deleted or stopped.
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v2/pods/pod1")]


def test_teardown_force_yes_deletes_and_is_idempotent(tmp_path, runpod, capsys, caplog):
    server, _ = runpod
    config = write(tmp_path, "runpod", "pod1", server.url)
    assert main(["--config", config, "teardown", "box", "--yes", "--force"]) == 0
    out, _ = no_key_anywhere(capsys, caplog)
    assert out.splitlines()[0] == "pod 'box' is gone"
    assert "  gone: the pod, its container disk and its volume disk" in out
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v2/pods/pod1"), ("DELETE", "/v2/pods/pod1"), ("GET", "/v2/pods/pod1")]
    assert main(["--config", config, "teardown", "box", "--yes", "--force"]) == 0
    out, _ = no_key_anywhere(capsys, caplog)
    assert out.startswith("pod 'box' is already gone (runpod does not know pod1)")


def test_teardown_on_a_terminal_shows_what_goes_and_wants_the_name(tmp_path, runpod, capsys, monkeypatch):
    server, _ = runpod
    monkeypatch.setattr("sys.stdin", Tty("nope\n"))
    assert main(["--config", write(tmp_path, "runpod", "pod1", server.url), "teardown", "box", "--force"]) == 1
    err = capsys.readouterr().err
    assert "Tear down pod 'box' (runpod pod1)?" in err
    assert "checkpoints: not checked (--force)" in err and "not torn down" in err
    assert server.calls("DELETE") == []


def test_provider_errors_exit_1_with_the_providers_words(tmp_path, runpod, capsys, caplog):
    server, fake = runpod
    fake.key = "another-key"
    assert main(["--config", write(tmp_path, "runpod", "pod1", server.url), "stop", "box", "--yes"]) == 1
    _, err = no_key_anywhere(capsys, caplog)
    assert "gpuctl: runpod: missing bearer token (HTTP 401, Unauthorized)" in err


def test_setup_problems_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("pods:\n  - {name: box, host: h}\n")
    assert main(["--config", str(path), "stop", "box", "--yes"]) == 2
    assert "has no provider: entry" in capsys.readouterr().err
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["--config", write(tmp_path, "runpod", "p", "http://127.0.0.1:9"), "teardown", "box", "--yes"]) == 2
    assert "set RUNPOD_API_KEY" in capsys.readouterr().err
    assert main(["--config", write(tmp_path, "runpod", "p", "http://127.0.0.1:9", "read_only: true\n"),
                 "stop", "box", "--yes"]) == 2
    assert "read_only: true" in capsys.readouterr().err
