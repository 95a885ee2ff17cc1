"""A failed attach says why: ssh's or tmux's own words, kept while they pass through."""

from __future__ import annotations

import pytest

from tui.actions import attach_failure, run_teeing_stderr

SSH = ["ssh", "-t", "-p", "1", "127.0.0.1", "tmux attach-session -t =train"]


@pytest.mark.requires_tools("ssh")
async def test_ssh_words_pass_through_and_are_kept(capfd, refused_port):
    argv = ["ssh", "-p", str(refused_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=/dev/null", "127.0.0.1", "true"]
    status, tail = await run_teeing_stderr(argv)
    assert status == 255
    assert "Connection refused" in tail
    assert "Connection refused" in capfd.readouterr().err  # the user saw it at the time too


@pytest.mark.requires_tools("tmux")
async def test_tmux_words_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    status, tail = await run_teeing_stderr(["tmux", "attach-session", "-t", "=nosuch"])
    assert status == 1 and tail.strip()
    assert attach_failure(status, tail, ["tmux"], "nosuch") == tail.strip().splitlines()[-1]


@pytest.mark.parametrize("status, stderr, argv, expected", [
    (255, "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n", SSH,
     "ssh could not connect: ssh: connect to host 127.0.0.1 port 1: Connection refused"),
    (255, "", SSH, "ssh could not connect"),
    (1, "can't find session: train\n", SSH, "can't find session: train"),
    (1, "", SSH, "tmux could not attach to 'train' (it may have just ended)"),
    (1, "bad \x1b]52;c;eA==\x07 name\n", SSH, "bad \\x1b]52;c;eA==\\x07 name"),
])
def test_attach_failure(status, stderr, argv, expected, monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    assert attach_failure(status, stderr, argv, "train") == expected


def test_an_unusual_term_is_named_as_a_possible_cause(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-kitty")
    assert "TERM" not in attach_failure(1, "", SSH, "train")
    monkeypatch.setenv("TERM", "alacritty")
    assert "TERM='alacritty' (try TERM=xterm-256color)" in attach_failure(1, "", SSH, "train")
