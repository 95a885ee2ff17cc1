"""The layout rules from ARCHITECTURE.md, checked rather than hoped for."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tui", "backends", "sessions", "themes")
# Which top-level packages each package may import: tui -> sessions -> backends.
ALLOWED = {
    "backends": {"backends"},
    "sessions": {"sessions", "backends"},
    "tui": {"tui", "sessions", "themes"},  # backends only through sessions (sessions.errors, sessions.demo)
    "themes": {"themes"},
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_direction_tui_sessions_backends(package):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) - ALLOWED[package]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}, f"{package} may import only {sorted(ALLOWED[package])}"


def test_the_wheel_ships_exactly_the_four_top_level_packages(tmp_path):
    """Editable installs hide the file list, so build the real wheel and read it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=120,
    )
    (wheel,) = tmp_path.glob("gpuctl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == set(PACKAGES)


def test_version_flag_prints_the_installed_version():
    out = subprocess.run([sys.executable, "-m", "tui.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"gpuctl {metadata.version('gpuctl')}"


def test_headless_commands_never_import_textual(tmp_path):
    """Headless start-up must not pay for the TUI (as harlequin checks)."""
    config = tmp_path / "config.yaml"
    # A pod on a port nobody listens on: status runs its whole path and fails fast.
    config.write_text("pods:\n  - {name: nowhere, host: 127.0.0.1, port: 9, connect_timeout: 2}\n")
    script = textwrap.dedent(
        f"""
        import sys
        from tui.cli import main
        codes = [main(["--config", {str(config)!r}, "config", "check"]),
                 main(["--config", {str(config)!r}, "status", "--json"])]
        loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
        print("CODES", codes, "TEXTUAL", loaded)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "CODES [0, 1] TEXTUAL []" in out.stdout, out.stdout + out.stderr
