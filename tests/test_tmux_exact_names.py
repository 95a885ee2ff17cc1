"""Session names are exact: real tmux 3.x on a `host: local` pod, no mocks.

The review found three ways a tmux session's name was not what gpuctl meant:

* tmux 3.3a resolves `list-panes -t =train` to a session `train2`, so `launch
  train` refused ("already running") while only `train2` ran;
* tmux stores `a.b` as `a_b`, so `a.b` and `a_b` were one session to gpuctl and
  killing one killed the other;
* tmux expands `%` (strftime) and `#` (formats) in a pipe-pane command, so an
  adopted session named `x%Hy` logged into `x03y.log`.

Each test makes the other session by hand with plain tmux, as a user would, in a
tmux server of the test's own (`TMUX_TMPDIR` under tmp_path, `$TMUX` unset by
`isolated_home`): the tests never talk to the tmux server of whoever runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sessions.tmux import control as sc
from sessions.config.model import Defaults, PodConfig, SessionConfig
from sessions.link.pod_link import open_transport
from sessions.tmux.logs import default_log_path, log_file_name
from sessions.tmux.commands import tmux_name_problem
from tui.cli import main

pytestmark = pytest.mark.requires_tools("tmux")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The local pod's HOME, with a private tmux server that is killed after."""
    tmpdir = tmp_path / "tmux"
    tmpdir.mkdir(mode=0o700)
    monkeypatch.setenv("TMUX_TMPDIR", str(tmpdir))
    tmux = shutil.which("tmux") or "tmux"
    yield isolated_home
    subprocess.run([tmux, "kill-server"], check=False, capture_output=True, timeout=10,
                   env={**os.environ, "TMUX_TMPDIR": str(tmpdir)})


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    """Plain tmux against the test's server (the environment `home` set up)."""
    return subprocess.run(["tmux", *args], check=False, capture_output=True, text=True, timeout=10)


def by_hand(name: str, command: str = "sleep 300") -> None:
    """Start a session the way a user would (tmux may store another name)."""
    made = tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "20", command)
    assert made.returncode == 0, made.stderr


def pid_of(name: str) -> str:
    return tmux("display-message", "-p", "-t", f"={name}:", "#{pane_pid}").stdout.strip()


def names() -> list[str]:
    return tmux("-u", "list-sessions", "-F", "#{session_name}").stdout.splitlines()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def config_file(tmp_path: Path, sessions: list[dict]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [{"name": "me", "host": "local", "sessions": sessions}]}))
    return path


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def on_pod(action: Callable[[Any], Any]) -> Any:
    """Run `action(runner)` with the local pod's runner."""

    async def go() -> Any:
        async with open_transport(PodConfig(name="me", host="local"), Defaults()) as runner:
            return await action(runner)

    return asyncio.run(go())


# ------------------------------------------------------- item 8: train vs train2


def test_launch_train_while_train2_runs_and_each_is_its_own_session(home, tmp_path, capsys):
    by_hand("train2")
    train2 = pid_of("train2")
    config = config_file(tmp_path, [{"name": "train", "command": "sleep 300"}])

    assert cli(config, "launch", "me", "train") == 0, capsys.readouterr().err
    assert sorted(names()) == ["train", "train2"]
    train = pid_of("train")

    state = on_pod(lambda r: sc.session_state(r, "train"))
    other = on_pod(lambda r: sc.session_state(r, "train2"))
    assert (state.exists, state.running, str(state.pid)) == (True, True, train)
    assert (other.exists, other.running, str(other.pid)) == (True, True, train2)

    capsys.readouterr()
    # As a user runs it (a process of its own: the local agent's subprocess ends with it).
    status = subprocess.run([sys.executable, "-m", "tui.cli", "--config", str(config), "status", "--json"],
                            check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert status.returncode == 0, status.stderr
    (pod,) = json.loads(status.stdout)["pods"]
    assert sorted((s["name"], s["state"]) for s in pod["sessions"]) == [("train", "running"), ("train2", "running")]

    assert cli(config, "kill", "me", "train", "--yes") == 0
    assert "killed session 'train' on pod 'me'" in capsys.readouterr().out
    assert names() == ["train2"] and pid_of("train2") == train2


def test_with_only_train2_there_train_is_absent_to_state_kill_and_attach(home, tmp_path, capsys):
    by_hand("train2")
    train2 = pid_of("train2")
    config = config_file(tmp_path, [{"name": "train", "command": "sleep 300"}])

    assert on_pod(lambda r: sc.session_state(r, "train")) == sc.SessionState("train", exists=False)
    assert cli(config, "kill", "me", "train", "--yes") == 0
    assert "no session 'train' on pod 'me'; nothing to kill" in capsys.readouterr().err
    assert cli(config, "attach", "me", "train") == 1
    assert "no tmux session 'train' on pod 'me' (start it: gpuctl launch me train)" in capsys.readouterr().err
    assert pid_of("train2") == train2


# ---------------------------------------------------- item 9: names tmux rewrites


def test_a_dotted_name_is_refused_and_never_reaches_the_underscored_session(home, tmp_path, capsys):
    by_hand("a.b")  # what a user typed; tmux calls it a_b
    assert names() == ["a_b"]
    a_b = pid_of("a_b")
    config = config_file(tmp_path, [])

    assert cli(config, "kill", "me", "a.b", "--yes") == 2  # a usage error, found before connecting
    err = capsys.readouterr().err
    assert "no tmux session can be named 'a.b'" in err and "'a_b': use that name" in err
    assert cli(config, "attach", "me", "a.b") == 2
    assert "no tmux session can be named 'a.b'" in capsys.readouterr().err
    with pytest.raises(sc.BadSessionName, match="'a_b'"):
        on_pod(lambda r: sc.session_state(r, "a.b", pod_name="me"))
    with pytest.raises(sc.BadSessionName):
        on_pod(lambda r: sc.adopt(r, "a.b"))
    with pytest.raises(sc.BadSessionName):
        on_pod(lambda r: sc.capture(r, "a.b"))
    assert pid_of("a_b") == a_b

    # The name tmux gave it is exact, and is what gpuctl acts on.
    assert on_pod(lambda r: sc.session_state(r, "a_b")).running
    assert cli(config, "kill", "me", "a_b", "--yes") == 0
    assert names() == []


@pytest.mark.parametrize("name", ["a.b", "a:b", "a#b", "a$b"])
def test_launch_refuses_a_name_tmux_would_rewrite_and_starts_nothing(home, name):
    by_hand("a_b")
    before = pid_of("a_b")
    pod = PodConfig(name="me", host="local", sessions=(SessionConfig(name, command="sleep 300"),))
    with pytest.raises(sc.BadSessionName, match="tmux would"):
        on_pod(lambda r: sc.launch(r, pod, name))
    assert names() == ["a_b"] and pid_of("a_b") == before


# What real tmux does to each name; a name tmux_name_problem accepts must be kept as
# given, and each name it refuses here is one tmux really rewrites. `##` and `#{host}`
# because a lone `#` followed by a letter happens to survive; no `#(...)`: tmux
# would run it.
KEPT = ["train", "my run", "-x", "é日本", "a=b", "a,b", "a{b}", "it's", "a|b", "x%Hy", "a/b", "{last}"]
REWRITTEN = ["a.b", "a:b", "a##b", "a#{host}b", "a\\b", "a$b", "a\tb", "a\x7fb", "a\x85b"]


@pytest.mark.parametrize("name", KEPT + REWRITTEN, ids=ascii)
def test_tmux_name_problem_agrees_with_real_tmux(home, name):
    by_hand(name)
    (stored,) = names()
    problem = tmux_name_problem(name)
    if problem is None:
        assert stored == name
    assert (name in REWRITTEN) == (problem is not None) == (stored != name)


# -------------------------------------------- item 12: adopted names with % and #


def test_adopted_sessions_named_with_percent_and_hash_log_to_their_own_files(home, tmp_path):
    marker = tmp_path / "ran"
    # `##` makes one literal `#` in a name typed to tmux new-session.
    by_hand("q%Hz##x", "sh")
    by_hand(f"x%Hy ##{{pane_pid}}##(touch {marker})", "sh")
    simple, nasty = names()
    assert simple == "q%Hz#x" and nasty.startswith("x%Hy #{pane_pid}#(touch /")

    reported = []
    for name in (simple, nasty):
        adopted = on_pod(lambda r, name=name: sc.adopt(r, name))
        assert adopted == sc.AdoptResult(name, default_log_path(name), started_pipe=True)
        tmux("send-keys", "-t", f"={name}:", f"echo MARK-{len(reported)}-$((6*7))", "Enter")
        reported.append(adopted.log_path)

    # The output lands where gpuctl says (and `gpuctl logs` follows), nowhere else.
    logs = [home / path.removeprefix("~/") for path in reported]
    for i, log in enumerate(logs):
        wait_until(lambda log=log, i=i: log.exists() and f"MARK-{i}-42" in log.read_text(), "output in its log")
    assert sorted(os.listdir(logs[0].parent)) == sorted(log.name for log in logs)
    assert reported[0] == "~/.gpuctl/logs/q+25Hz+23x.log"
    assert re.fullmatch(r"~/\.gpuctl/logs/[A-Za-z0-9._+-]+\.log", reported[1])
    assert not marker.exists()
    # Adopting again finds gpuctl's own pipe at that same path.
    again = on_pod(lambda r: sc.adopt(r, nasty))
    assert again == sc.AdoptResult(nasty, default_log_path(nasty), started_pipe=False)


def test_log_file_names_are_one_to_one():
    names_ = ["a b", "a+20b", "a+b", "a%b", "a#b", "a/b", "é", "+C3+A9", "train", "run.1"]
    files = [log_file_name(n) for n in names_]
    assert len(set(files)) == len(files)
    assert log_file_name("train") == "train" and log_file_name("run.1") == "run.1"
    assert log_file_name("x%Hy #{pane_pid}") == "x+25Hy+20+23+7Bpane_pid+7D"
    assert log_file_name("é") == "+C3+A9"
