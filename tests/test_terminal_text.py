"""Pod text reaches the terminal with its control sequences shown, never obeyed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.pinning import trust
from tests.support.pty_run import run_on_pty
from tui.cli import main
from tui.terminal_text import LogBytes, plain_table, visible

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # sets the clipboard to "rm -rf ~"
CLEAR = "\x1b[2J"


@pytest.mark.parametrize("raw, shown", [
    ("step_1.pt", "step_1.pt"),
    (f"a{OSC52}b", "a\\x1b]52;c;cm0gLXJmIH4=\\x07b"),
    (f"x{CLEAR}", "x\\x1b[2J"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("c1\x9bcsi del\x7f", "c1\\x9bcsi del\\x7f"),
    (os.fsdecode(b"step_3_\xff.pt"), "step_3_\\xff.pt"),
    ("ünïcode ✓", "ünïcode ✓"),
])
def test_visible(raw, shown):
    assert visible(raw) == shown


def test_plain_table_aligns_the_visible_form():
    assert plain_table([["NAME", "X"], [f"a{CLEAR}", "1"]]) == "NAME      X\na\\x1b[2J  1\n"


def test_log_bytes_keep_colours_and_carriage_returns_and_escape_the_rest():
    cleaner = LogBytes()
    out = cleaner.feed(b"\x1b[32mok\x1b[0m 10%\r20%\r" + OSC52.encode() + b"\x1b[2J\x07\n")
    assert out == b"\x1b[32mok\x1b[0m 10%\r20%\r\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\x07\n"


def test_log_bytes_keep_a_colour_split_across_chunks_whole():
    cleaner = LogBytes()
    data = b"a\x1b[1;31mred\x1b[0m\n"
    out = b"".join(cleaner.feed(data[i:i + 1]) for i in range(len(data))) + cleaner.flush()
    assert out == data


def test_log_bytes_escape_a_sequence_cut_off_at_the_end():
    cleaner = LogBytes()
    assert cleaner.feed(b"x\x1b[1") == b"x"
    assert cleaner.flush() == b"\\x1b[1"




def _config(tmp_path: Path, server) -> Path:
    trust(server)
    entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(tmp_path), "log": "train.log",
                                             "checkpoints": ["*.pt"]}])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [entry]}))
    return config


@pytest.mark.requires_tools("sshd", "ssh-keygen")
@pytest.mark.usefixtures("isolated_home")
def test_checkpoints_table_shows_a_hostile_name_escaped(sshd, tmp_path, capsys):
    config = _config(tmp_path, sshd)
    hostile = f"step_7{OSC52}{CLEAR}.pt"
    (tmp_path / hostile).write_bytes(b"x" * 10)
    os.utime(tmp_path / hostile, (1_600_000_000, 1_600_000_000))
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "step_7\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J.pt" in out


@pytest.mark.requires_tools("sshd", "ssh-keygen")
@pytest.mark.usefixtures("isolated_home")
def test_logs_on_a_terminal_escape_control_sequences_and_keep_colours(sshd, tmp_path):
    config = _config(tmp_path, sshd)
    (tmp_path / "train.log").write_bytes(b"\x1b[32mstep 1\x1b[0m\n" + OSC52.encode() + b"\nDONE\n")
    env = {**os.environ, "TERM": "xterm-256color"}
    status, printed, _ = run_on_pty([sys.executable, "-m", "tui.cli", "--config", str(config), "logs", "p", "train"],
                                    env, until=b"\x00never", timeout=30)
    assert status == 0, printed
    assert b"\x1b]52" not in printed
    assert b"\\x1b]52;c;cm0gLXJmIH4=\\x07" in printed
    assert b"\x1b[32mstep 1\x1b[0m" in printed
