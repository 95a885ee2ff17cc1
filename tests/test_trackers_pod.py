"""Tracker files end to end: a real sshd pod whose session workdir holds a real run's
files; the agent finds and reads them there, and `gpuctl sessions --json` shows the
figures with their sources. Also `trackers:` in config, validated like the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import ConfigError, parse_config
from tests.support.pinning import trust
from tests.test_trackers import run_dir
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "ssh")]


def sessions_json(sshd, tmp_path: Path, capsys, session: dict) -> dict:
    trust(sshd)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [sshd.pod_entry("p", sessions=[session])]}, sort_keys=False))
    capsys.readouterr()
    assert main(["--config", str(config), "sessions", "p", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["sessions"]
    return doc


def test_a_sessions_workdir_trainer_state_shows_in_sessions_json(sshd, tmp_path, capsys):
    root, truth = run_dir("hf_trainer", tmp_path)
    doc = sessions_json(sshd, tmp_path, capsys, {"name": "sft", "workdir": str(root), "command": "true"})
    assert (doc["step"], doc["total"], doc["loss"]) == (truth["global_step"], truth["max_steps"], truth["last_loss"])
    assert doc["sources"]["step"] == doc["sources"]["total"] == "trainer_state"
    assert doc["sources"]["loss"] == "trainer_state"
    assert doc["sources"]["rate"] == "tfevents"  # trainer_state.json has no timestamps; the events file has
    state, events = doc["trackers"]
    assert (state["source"], events["source"]) == ("trainer_state", "tfevents")
    assert state["best_checkpoint"] == truth["best_model_checkpoint"]
    assert state["eval"]["eval_loss"] == truth["evals"][str(truth["global_step"])]
    assert state["history_points"] == len(truth["logged"])


def test_trackers_named_in_config_replace_the_search(sshd, tmp_path, capsys):
    hf, _ = run_dir("hf_trainer", tmp_path)
    lightning, truth = run_dir("lightning", tmp_path)
    doc = sessions_json(sshd, tmp_path, capsys, {
        "name": "pl", "workdir": str(hf), "command": "true", "trackers": [str(lightning / "lightning_logs")]})
    assert [t["source"] for t in doc["trackers"]] == ["csv"]
    assert doc["step"] == truth["global_step"] and doc["sources"]["step"] == "csv"


def test_trackers_false_reads_none(sshd, tmp_path, capsys):
    hf, _ = run_dir("hf_trainer", tmp_path)
    doc = sessions_json(sshd, tmp_path, capsys, {"name": "off", "workdir": str(hf), "command": "true",
                                                 "trackers": False})
    assert doc["trackers"] == [] and doc["step"] is None and doc["sources"] == {}


@pytest.mark.parametrize(("value", "message"), [
    ("true", "trackers: expected a path, a list of paths, or false"),
    ("[out, '']", "trackers[1]: expected a tracker file or folder, got an empty string"),
    ("{a: 1}", "trackers: expected a path, a list of paths, or false, got a mapping"),
])
def test_bad_trackers_config_names_file_line_and_field(tmp_path, value, message):
    text = f"pods:\n  - name: p\n    host: h\n    sessions:\n      - name: s\n        trackers: {value}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "c.yaml")
    rendered = str(caught.value)
    assert "c.yaml:6" in rendered and message in rendered, rendered


def test_good_trackers_config():
    text = "pods:\n  - name: p\n    host: h\n    sessions:\n      - {name: a, trackers: out}\n" \
           "      - {name: b, trackers: [x, /y]}\n      - {name: c, trackers: false}\n      - {name: d}\n"
    sessions = parse_config(text, Path("c.yaml")).pods[0].sessions
    assert [s.trackers for s in sessions] == [("out",), ("x", "/y"), (), None]


def test_a_local_pods_session_reads_its_trackers_in_process(tmp_path, capsys):
    """`host: local` runs the agent's readers in-process (backends/local.py), same answer."""
    root, truth = run_dir("mlflow", tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [{"name": "here", "host": "local", "sessions": [
        {"name": "ml", "workdir": str(root), "command": "true"}]}]}, sort_keys=False))
    assert main(["--config", str(config), "sessions", "here", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["sessions"]
    assert (doc["step"], doc["loss"], doc["sources"].get("loss")) == (truth["last_step"], truth["last_loss"], "mlflow"), doc
