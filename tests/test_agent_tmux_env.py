"""The agent's tmux listing under the conditions of a real pod's SSH exec channel.

No LANG/LC_* at all (tmux would print format tabs as `_`), and tmux sometimes losing
an exited pane's status (the launch wrapper's exit file must fill it in).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from backends.agent_command import build_agent_command
from backends.pod_agent.tmux import EXIT_FILE, fill_exit_status
from backends.shell_probe import parse_probe_output, probe_command

pytestmark = pytest.mark.requires_tools("tmux")


@pytest.fixture
def private_tmux(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMUX_TMPDIR": str(tmp_path / "tmux")}
    (tmp_path / "tmux").mkdir()
    yield env
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)


def agent_sessions(env: dict) -> list:
    # PEP 538 would set LC_CTYPE=C.UTF-8 for the agent's children where that locale
    # exists; many pod images lack it, so test without the coercion.
    proc = subprocess.Popen(["sh", "-c", build_agent_command({"interval": 0.2, "tmux_refresh_s": 0})],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**env, "PYTHONCOERCECLOCALE": "0"})
    try:
        for _ in range(20):
            message = json.loads(proc.stdout.readline())
            if message["kind"] == "sample" and message["tmux"]:
                return message["tmux"]
        raise AssertionError("no tmux sessions reported")
    finally:
        proc.stdin.close()
        proc.wait(10)


def test_sessions_are_listed_right_without_any_locale(private_tmux):
    """A person started tmux from a UTF-8 terminal; the agent's exec channel has no LANG."""
    assert not any(k.startswith(("LANG", "LC_")) for k in private_tmux)
    subprocess.run(["tmux", "-f", "/dev/null", "new-session", "-d", "-s", "my run", "sleep 60"],
                   env={**private_tmux, "LANG": "C.UTF-8"}, check=True)
    (session,) = agent_sessions(private_tmux)
    assert (session["name"], session["state"], session["exit_status"]) == ("my run", "running", None)
    assert session["pid"] and session["windows"] == 1
    probe = subprocess.run(["sh", "-c", probe_command("~")], capture_output=True, text=True, env=private_tmux)
    assert [s["name"] for s in parse_probe_output(probe.stdout)["tmux"]] == ["my run"]


def test_an_exited_session_without_a_status_from_tmux_takes_it_from_the_exit_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = os.path.expanduser(EXIT_FILE % "train")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as fh:
        fh.write("3\n")
    sessions = [{"name": "train", "state": "exited", "exit_status": None},
                {"name": "other", "state": "exited", "exit_status": None},
                {"name": "live", "state": "running", "exit_status": None}]
    assert [s["exit_status"] for s in fill_exit_status(sessions)] == [3, None, None]


def test_a_launched_session_reports_its_exit_status(private_tmux):
    env = private_tmux
    subprocess.run(["tmux", "-f", "/dev/null", "new-session", "-d", "-s", "done",
                    "sh -c 'mkdir -p ~/.gpuctl/sessions; echo 7 > ~/.gpuctl/sessions/done.exit; exit 7'",
                    ";", "set-window-option", "-t", "=done:", "remain-on-exit", "on"], env=env, check=True)
    deadline = time.monotonic() + 10
    while True:
        sessions = agent_sessions(env)
        if sessions[0]["state"] == "exited":
            break
        assert time.monotonic() < deadline
    assert sessions[0]["exit_status"] == 7
