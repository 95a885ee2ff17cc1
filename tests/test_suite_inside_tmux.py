"""The suite passes when run from inside the user's own tmux, and leaves that tmux alone.

Users of a tmux tool run its tests from tmux. There `$TMUX` names the user's server,
and a bare `tmux` command talks to it whatever `TMUX_TMPDIR` says: tests would see the
user's sessions, and a test's cleanup could kill them. This runs tmux-touching tests
in a child pytest whose environment looks like a pane of a real "user" tmux server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.requires_tools("tmux", "sshd", "ssh-keygen")


@pytest.fixture
def users_tmux(tmp_path: Path):
    """A tmux server standing in for the user's own, with one session of theirs."""
    socket = tmp_path / "user.sock"
    base = [*("tmux", "-S", str(socket))]
    subprocess.run([*base, "new-session", "-d", "-s", "users-work", "sleep 600"], check=True)
    pid = subprocess.run([*base, "display", "-p", "#{pid}"], capture_output=True, text=True, check=True).stdout.strip()
    pane = subprocess.run([*base, "display", "-p", "#{pane_id}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        yield {"TMUX": f"{socket},{pid},0", "TMUX_PANE": pane}, base
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)


def test_tmux_tests_pass_inside_tmux_and_the_users_session_survives(users_tmux, tmp_path):
    tmux_vars, base = users_tmux
    env = {**os.environ, **tmux_vars}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_sshd_fixture.py::test_tmux_sessions_survive_restart_and_close_kills_them",
         "tests/test_tmux_commands.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    sessions = subprocess.run([*base, "ls", "-F", "#{session_name}"], capture_output=True, text=True, check=True)
    assert sessions.stdout.split() == ["users-work"]
