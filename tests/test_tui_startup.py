"""The TUI paints before it connects, and `gpuctl` with no command is the TUI.

asyncssh costs ~170 ms to import (PERF-NOTES), so the app must draw its first frame
without it and load it in the worker that starts the Fleet. Checked in fresh
subprocesses, since this test process has long since imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.pty_run import run_on_pty

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_app_loads_neither_asyncssh_nor_the_fleet():
    code = "import sys, tui.app; print(sorted(m for m in sys.modules if m in ('asyncssh', 'sessions.fleet.facade')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_first_frame_is_drawn_before_asyncssh_is_imported(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("pods:\n  - {name: nowhere, host: 127.0.0.1, port: 9, connect_timeout: 2}\n")
    script = textwrap.dedent(f"""
        import asyncio, sys
        from sessions.config.loader import load_config
        from tui.app import GpuctlApp

        class Probe(GpuctlApp):
            def on_mount(self):
                self.call_after_refresh(lambda: print("FIRST FRAME asyncssh:", "asyncssh" in sys.modules))

        async def main():
            app = Probe(load_config({str(config)!r}), state_file=None)
            async with app.run_test(size=(80, 24)) as pilot:
                for _ in range(200):
                    await pilot.pause(0.05)
                    if app.snapshot.pods[0].state == "offline":
                        break
                print("CONNECTED asyncssh:", "asyncssh" in sys.modules, app.snapshot.pods[0].state)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = [line for line in out.stdout.splitlines() if "asyncssh:" in line]
    assert lines == ["FIRST FRAME asyncssh: False", "CONNECTED asyncssh: True offline"], out.stdout + out.stderr


def test_gpuctl_alone_opens_the_tui_on_a_terminal_and_q_quits(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("pods:\n  - {name: far-away-pod, host: 127.0.0.1, port: 9, connect_timeout: 2}\n")
    gpuctl = str(Path(sys.executable).with_name("gpuctl"))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    code, seen, at = run_on_pty([gpuctl, "--config", str(config), "--read-only"], env, b"far-away-pod", b"q")
    assert at is not None, seen[-2000:]
    assert code == 0, seen[-2000:]
    assert b"Traceback" not in seen


def test_gpuctl_alone_without_a_config_explains_and_never_loads_textual(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from tui.cli import main
        code = main(["--config", {str(tmp_path / 'missing.yaml')!r}])
        print("CODE", code, "TEXTUAL", any(m == "textual" or m.startswith("textual.") for m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "CODE 2 TEXTUAL False" in out.stdout, out.stdout + out.stderr
    assert "missing.yaml" in out.stderr and "Traceback" not in out.stderr


def test_gpuctl_alone_builds_no_command_parsers(tmp_path):
    """The TUI needs none of the command modules (~20 ms of imports before the first frame)."""
    script = textwrap.dedent(f"""
        import sys
        from tui.cli import main
        main(["--read-only", "--config", {str(tmp_path / 'missing.yaml')!r}])
        print("COMMANDS", sorted(m for m in sys.modules if m.startswith("tui.commands.") and m != "tui.commands.common"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "COMMANDS []" in out.stdout, out.stdout + out.stderr


def test_the_first_frame_is_drawn_before_the_config_schema_is_imported(tmp_path):
    """From the CLI the app gets a function that reads the config (YAML and the schema
    take ~50 ms to import) and calls it after the first frame; the config then sets the
    pods, read-only mode, keys and theme as if it had been there from the start."""
    config = tmp_path / "config.yaml"
    config.write_text("read_only: true\ntheme: gpuctl-light\nkeys: {fleet.sort: S}\n"
                      "pods:\n  - {name: nowhere, host: 127.0.0.1, port: 9, connect_timeout: 2}\n")
    script = textwrap.dedent(f"""
        import asyncio, sys
        from tui.app import GpuctlApp
        from tui.cli import _read_config

        def header(app):
            return str(app.screen.query_one("#fleet-header").render())

        class Probe(GpuctlApp):
            def on_mount(self):
                self.call_after_refresh(lambda: print("FIRST FRAME schema:", "sessions.config.schema" in sys.modules,
                                                      "yaml:", "yaml" in sys.modules, "|", header(self)))

        async def main():
            app = Probe(lambda: _read_config({str(config)!r}), state_file=None)
            async with app.run_test(size=(80, 24)) as pilot:
                for _ in range(200):
                    await pilot.pause(0.05)
                    if app.snapshot.pods:
                        break
                await pilot.pause(0.05)
                keys = {{v.binding.key for v in app.screen.active_bindings.values()}}
                print("READ", [p.name for p in app.snapshot.pods], app.theme, app.screen.has_class("-read-only"),
                      "S" in keys, "|", header(app))

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith(("FIRST FRAME", "READ"))]
    assert lines == ["FIRST FRAME schema: False yaml: False | Reading config…",
                     "READ ['nowhere'] gpuctl-light True True | READ-ONLY · 0/1 pods online · 0 GPUs"], out.stdout + out.stderr


def test_a_bad_config_closes_the_tui_and_is_explained_like_any_command(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("pods:\n  - {name: a, host: 127.0.0.1, port: 99999}\n")
    gpuctl = str(Path(sys.executable).with_name("gpuctl"))
    env = {**os.environ, "TERM": "xterm-256color"}
    code, seen, _ = run_on_pty([gpuctl, "--config", str(config)], env, b"\x00never", None, timeout=30)
    assert code == 2, seen[-2000:]
    restored = seen.rindex(b"\x1b[?1049l")  # the app has left the alternate screen
    assert f"gpuctl: {config}:2:".encode() in seen[restored:] and b"port" in seen[restored:], seen[-2000:]
    assert b"Traceback" not in seen


def test_the_guessed_config_path_is_the_one_config_reads(tmp_path, monkeypatch):
    from sessions.config.loader import locate_config
    from tui.cli import config_path_guess

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for cli, environ in ((None, {}), (None, {"GPUCTL_CONFIG": "~/env.yaml"}), ("~/cli.yaml", {"GPUCTL_CONFIG": "x"}),
                         (None, {"GPUCTL_CONFIG": ""})):
        assert config_path_guess(cli, environ) == str(locate_config(cli, environ).path)
