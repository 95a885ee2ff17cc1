"""No dependency's warning reaches a user: every module that imports asyncssh, imported
first in a fresh interpreter with every warning shown, prints nothing on stderr."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _asyncssh_importers() -> list[str]:
    found = []
    for package in ("backends", "sessions", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
            names |= {node.module.split(".")[0] for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
            if "asyncssh" in names:
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                found.append(module.removesuffix(".__init__"))
    return found


def test_there_are_asyncssh_importers_to_check():
    assert "backends.ssh" in _asyncssh_importers()


@pytest.mark.parametrize("module", _asyncssh_importers())
def test_importing_prints_no_warning(module):
    done = subprocess.run([sys.executable, "-W", "always", "-c", f"import {module}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


HEADLESS = [
    ["status"], ["status", "--json"], ["sessions", "nowhere"], ["logs", "nowhere", "train"],
    ["checkpoints", "nowhere", "train"], ["check", "nowhere"], ["config", "check"], ["config", "path"],
    ["kill", "nowhere", "train", "--yes"], ["stop", "nowhere", "--yes"], ["--help"],
]


@pytest.mark.parametrize("argv", HEADLESS, ids=" ".join)
def test_headless_commands_print_no_warning(argv, tmp_path):
    """Each headless command, against a pod that refuses connections, says only its own
    words on stderr: no dependency warning, no traceback."""
    config = tmp_path / "config.yaml"
    config.write_text("pods:\n  - name: nowhere\n    host: 127.0.0.1\n    port: 1\n    user: root\n"
                      "    sessions: [{name: train, command: 'true', log: train.log}]\n")
    done = subprocess.run([sys.executable, "-W", "always", "-m", "tui.cli", "--config", str(config), *argv],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
