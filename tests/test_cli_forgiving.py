"""The command line forgives the usual slips: options after the command, typos, --help."""

from __future__ import annotations

import pytest

from tui.cli import build_parser, main


@pytest.mark.parametrize("argv", [
    ["--config", "/tmp/a.yaml", "config", "path"],
    ["config", "--config", "/tmp/a.yaml", "path"],
    ["config", "path", "--config", "/tmp/a.yaml"],
    ["--config", "/tmp/other.yaml", "config", "path", "--config", "/tmp/a.yaml"],
])
def test_config_is_accepted_before_or_after_the_command(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "/tmp/a.yaml"


def test_status_takes_config_after_its_name():
    args = build_parser().parse_args(["status", "--config", "x.yaml", "--json"])
    assert args.config == "x.yaml" and args.json


def test_without_config_anywhere_it_is_none():
    assert build_parser().parse_args(["status"]).config is None


@pytest.mark.parametrize("argv, suggestion", [
    (["stauts"], "did you mean 'status'?"),
    (["config", "chek"], "did you mean 'check'?"),
    (["dowload", "p", "s"], "did you mean 'download'?"),
])
def test_a_mistyped_command_gets_a_did_you_mean(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_nothing_close_gets_the_usual_list(capsys):
    with pytest.raises(SystemExit):
        main(["zzzzzz"])
    err = capsys.readouterr().err
    assert "did you mean" not in err and "invalid choice: 'zzzzzz'" in err


@pytest.mark.parametrize("command", ["status", "demo", "download", "watch", "check"])
def test_every_command_help_opens_with_its_one_line_description(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: gpuctl {command}")
    assert description.strip() and not description.startswith(("positional", "options"))


def test_demo_does_not_pretend_to_take_a_config(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--config" not in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["kill", "p", "a.b", "--yes"], ["attach", "p", "a:b"], ["logs", "p", "x.y"]])
def test_a_session_name_tmux_cannot_have_is_a_usage_error_before_connecting(argv, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("pods:\n  - {name: p, host: 127.0.0.1, port: 1, user: root}\n")
    assert main(["--config", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert "no tmux session can be named" in err and "connection refused" not in err
