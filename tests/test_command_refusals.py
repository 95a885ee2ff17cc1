"""What the headless commands that change pods say before they connect.

A `read_only: true` config refuses every headless command that changes a pod, in one
wording (`tui.commands.common.refuse_read_only`), as a usage error before connecting:
the pod here is an unreachable address, so a command that tried to connect would say
so instead, and exit 1."""

from __future__ import annotations

import io
import sys

import pytest

from tests.support.tty import Tty
from tui.cli import main

CONFIG = """\
read_only: true
pods:
  - name: box
    host: 127.0.0.1
    port: 9
    provider: {type: runpod, id: p1, api_url: "http://127.0.0.1:9"}
    sessions:
      - {name: train, command: python train.py, resume: "python train.py --from {checkpoint}"}
  - {name: box2, host: 127.0.0.1, port: 9, sessions: [{name: train, command: python train.py}]}
jobs:
  - {name: pair, pods: [box, box2], session: train}
"""


@pytest.mark.parametrize("argv, verb", [
    (["launch", "box", "train"], "launch"),
    (["kill", "box", "train", "--yes"], "kill"),
    (["resume", "box", "train"], "resume"),
    (["stop", "box", "--yes"], "stop"),
    (["teardown", "box", "--yes"], "teardown"),
    (["upload", "box", "."], "upload"),
    (["jobs", "launch", "pair"], "jobs launch"),
    (["jobs", "resume", "pair"], "jobs resume"),
    (["jobs", "kill", "pair", "--yes"], "jobs kill"),
    (["jobs", "teardown", "pair", "--yes"], "jobs teardown"),
])
def test_a_read_only_config_refuses_each_changing_command_alike(argv, verb, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    assert main(["--config", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"gpuctl: {path} sets read_only: true, so gpuctl {verb} does not change pods\n"


@pytest.mark.parametrize("typed, code", [("n\n", 1), ("\n", 1), ("yes\n", None)])
def test_jobs_kill_asks_with_the_one_y_n_prompt(typed, code, tmp_path, capsys, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("read_only: true\n", ""))
    monkeypatch.setattr(sys, "stdin", Tty(typed))
    status = main(["--config", str(path), "jobs", "kill", "pair"])
    err = capsys.readouterr().err
    assert err.startswith("Kill 'train' on every node of job 'pair' (box, box2)? [y/N] ")
    if code is not None:
        assert status == code
    else:  # a yes goes on to the pods, which are unreachable here
        assert status == 1 and "connection refused by 127.0.0.1:9" in err


def test_jobs_kill_without_a_terminal_needs_yes(tmp_path, capsys, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("read_only: true\n", ""))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["--config", str(path), "jobs", "kill", "pair"]) == 2
    assert "not without confirmation; pass --yes" in capsys.readouterr().err
