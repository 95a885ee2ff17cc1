"""The `gpuctl` command: argument parsing and dispatch.

Headless commands import only what they need, and never `textual`: `gpuctl status`
in a cron job should not pay for (or break on) the TUI. stdout carries data, stderr
carries diagnostics; exit status 2 means the command line or the config is wrong.
Each command group lives in `tui/commands/` and registers its own subparser.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any, Sequence

# Order here is the order in `gpuctl --help`.
COMMAND_MODULES = (
    "tui.commands.status_cmd",
    "tui.commands.logs_cmds",
    "tui.commands.config_cmd",
    "tui.commands.session_cmds",
    "tui.commands.provider_cmds",
    "tui.commands.demo_cmd",
    "tui.commands.checkpoint_cmds",
    "tui.commands.upload_cmd",
    "tui.commands.check_cmd",
    "tui.commands.doctor_cmd",
    "tui.commands.watch_cmd",
    "tui.commands.jobs_cmds",
)


def _version() -> str:
    # Imported here: importlib.metadata pulls in email and zipfile (~45 ms), a fifth of
    # the TUI's time to first frame, and only --version needs it.
    from importlib import metadata

    try:
        return metadata.version("gpuctl")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


class _VersionAction(argparse.Action):
    """`--version`, looking the installed version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        print(f"gpuctl {_version()}")
        parser.exit()


class _Commands(argparse._SubParsersAction):
    """Subcommands that describe themselves and take the global `--config` too.

    `gpuctl status --config FILE` is how people type it (and how cron lines get edited),
    so every (sub)command accepts `--config` after its name as well as before; the
    default is SUPPRESS so a value given before the command is not reset by the
    subparser. A command's one-line help becomes its `--help` description.
    `reads_config=False` is for a command that never reads the user's config (demo).
    """

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        reads_config = kwargs.pop("reads_config", True)
        kwargs.setdefault("description", kwargs.get("help"))
        parser = super().add_parser(name, **kwargs)
        if reads_config:
            parser.add_argument(
                "--config", metavar="PATH", default=argparse.SUPPRESS,
                help="config file (also accepted before the command)")
        return parser


class GpuctlParser(argparse.ArgumentParser):
    """argparse with gpuctl's subcommand behaviour (`_Commands`) and a did-you-mean
    for a mistyped command or choice (`gpuctl stauts`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and isinstance(value, str) and value not in choices:
            import difflib

            close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
            if close:
                raise argparse.ArgumentError(action, f"invalid choice: {value!r}; did you mean {close[0]!r}?")
        super()._check_value(action, value)


def _add_tui_options(parser: argparse.ArgumentParser) -> None:
    """The options of `gpuctl` alone (the TUI), also accepted before any command."""
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $GPUCTL_CONFIG, then the platform config dir)")
    parser.add_argument("--read-only", action="store_true",
                        help="TUI: hide and refuse every action that changes a pod (for a shared screen)")


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags (names are a contract with users' scripts)."""
    parser = GpuctlParser(
        prog="gpuctl",
        description="Terminal control center for training runs on rented GPU machines.",
    )
    parser.add_argument("--version", action=_VersionAction)
    _add_tui_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class _NotTheTui(Exception):
    pass


class _TuiOnlyParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _NotTheTui(message)


def _tui_args(argv: Sequence[str] | None) -> argparse.Namespace | None:
    """The options if `argv` asks for the TUI and nothing else, else None.

    `gpuctl` alone need not import every command module to build their subparsers
    (~20 ms before the first frame). Anything this small parser does not take (a
    command, --help, --version, a malformed option) goes to the full parser, which
    parses or explains it exactly as before.
    """
    parser = _TuiOnlyParser(prog="gpuctl", add_help=False)
    _add_tui_options(parser)
    try:
        args = parser.parse_args(argv)
    except _NotTheTui:
        return None
    args.command = None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    tui_args = _tui_args(argv)
    if tui_args is not None:
        return _tui(tui_args)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _tui(args)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `gpuctl status | head`
        return 0


def _tui(args: argparse.Namespace) -> int:
    """`gpuctl` alone: the full-screen control center (Textual is imported only here).

    With a config file to read, the app reads it after its first frame (the schema
    and YAML take ~50 ms to import); a bad one closes the app and is printed here like
    any command's config error. Without one, that is explained before Textual loads.
    """
    from tui.commands.common import EXIT_USAGE, load_config_or_explain

    guess = config_path_guess(args.config)
    if os.path.isfile(guess) and os.access(guess, os.R_OK):
        config = functools.partial(_read_config, args.config)
    else:
        config = load_config_or_explain(args)
        if config is None:
            return EXIT_USAGE
    from tui.app import run_app

    try:
        return run_app(config, read_only=args.read_only)
    except Exception as exc:
        from sessions.config.loader import ConfigError

        if not isinstance(exc, ConfigError):
            raise
        print(f"gpuctl: {exc}", file=sys.stderr)
        return EXIT_USAGE


def config_path_guess(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The file `sessions.config.loader.locate_config` picks (same precedence), without
    importing it: enough to know, before loading Textual, whether there is a file to
    open at all. `locate_config` stays the authority (the app reads through it), so a
    guess that ever drifts only moves where a config error is shown, never what it says."""
    path = cli_path or environ.get("GPUCTL_CONFIG", "")
    if path:
        return os.path.expanduser(path)
    import platformdirs  # cheap, and Textual imports it anyway

    return os.path.join(platformdirs.user_config_dir("gpuctl", appauthor=False), "config.yaml")


def _read_config(cli_path: str | None):
    """The app's `ConfigLoader` (called in a thread after the first frame)."""
    from sessions.config.loader import load_config, locate_config

    return load_config(locate_config(cli_path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
