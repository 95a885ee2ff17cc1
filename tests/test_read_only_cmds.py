"""A `read_only: true` config refuses every headless command that changes a pod, in one
wording (`tui.commands.common.refuse_read_only`), as a usage error before connecting:
the pod here is an unreachable address, so a command that tried to connect would say
so instead, and exit 1."""

from __future__ import annotations

import pytest

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
