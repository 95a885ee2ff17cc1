"""The contracts `./scripts/test` enforces beside the tests: lint, types, import rules.

Each tool runs from this venv (the `test` extras install them) on the whole tree as
pyproject.toml configures it, and a finding fails the run with the tool's own report.
`tests/test_architecture.py` keeps the checks these tools cannot express (the wheel's
contents, the subprocess proof that headless commands never load textual); the agent's
"standard library only" rule is positive (sys.stdlib_module_names) and stays in
tests/test_agent_script.py, import-linter adding the named packages it must not touch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(argv: list[str], cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=280, **kwargs)


def test_ruff_finds_nothing():
    out = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_no_error_in_sessions_and_backends():
    # The cache (pyproject.toml: under .venv) turns the ~50 s cold run into seconds.
    out = _run([sys.executable, "-m", "mypy", "sessions", "backends"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_contracts_are_kept():
    out = _run([str(BIN / "lint-imports"), "--no-cache"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def _sessions_layers() -> list[str]:
    """The layers of the contract whose container is `sessions`, from pyproject.toml
    (read with a pattern: tomllib is Python 3.11+, gpuctl runs on 3.10)."""
    import json
    import re

    found = re.search(r'containers = \["sessions"\]\s*\nlayers = (\[[^\]]*\])', (ROOT / "pyproject.toml").read_text())
    assert found, "pyproject.toml: the sessions layers contract moved; update this reader"
    return json.loads(found.group(1))


def test_the_import_contracts_catch_tui_importing_backends(tmp_path):
    """The contracts must bite: the same config over a tree where tui imports backends."""
    for package in ("tui", "sessions", "backends", "themes"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "sessions" / "link.py").write_text("import backends\n")
    # The sub-packages the sessions layers contract names must exist, or it complains;
    # read from pyproject.toml, so a new layer needs no edit here.
    for layer in _sessions_layers():
        if layer == "link":
            continue  # sessions/link.py above stands for it
        (tmp_path / "sessions" / layer).mkdir()
        (tmp_path / "sessions" / layer / "__init__.py").write_text("")
    (tmp_path / "tui" / "screen.py").write_text("import sessions.link\nfrom backends import ssh\n")
    (tmp_path / "backends" / "ssh.py").write_text("")
    (tmp_path / "backends" / "pod_agent").mkdir()
    (tmp_path / "backends" / "pod_agent" / "__init__.py").write_text("")
    (tmp_path / "backends" / "pod_agent" / "main.py").write_text("import json\n")
    # The two type-only imports the cycle contract ignores must exist, or it complains.
    (tmp_path / "backends" / "transport").mkdir()
    (tmp_path / "backends" / "transport" / "__init__.py").write_text("")
    (tmp_path / "backends" / "transport" / "pty_shell.py").write_text("")
    (tmp_path / "backends" / "transfer.py").write_text("from backends.transport import pty_shell\n")
    (tmp_path / "tui" / "app.py").write_text("")
    (tmp_path / "tui" / "actions.py").write_text("from tui import app\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = _run([str(BIN / "lint-imports"), "--no-cache"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout + out.stderr
    assert "tui reaches backends only through sessions BROKEN" in out.stdout, out.stdout
    assert "tui.screen -> backends.ssh" in out.stdout, out.stdout
