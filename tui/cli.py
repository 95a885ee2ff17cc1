"""The `gpuctl` command: argument parsing and dispatch.

Headless commands import only what they need, and never `textual`: `gpuctl status`
in a cron job should not pay for (or break on) the TUI. stdout carries data, stderr
carries diagnostics; exit status 2 means the command line or the config is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import metadata
from typing import Callable, Sequence

EXIT_USAGE = 2


def _version() -> str:
    try:
        return metadata.version("gpuctl")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags (names are a contract with users' scripts)."""
    parser = argparse.ArgumentParser(
        prog="gpuctl",
        description="Terminal control center for training runs on rented GPU machines.",
    )
    parser.add_argument("--version", action="version", version=f"gpuctl {_version()}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $GPUCTL_CONFIG, then the platform config dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    status = sub.add_parser("status", help="connect to every pod and print GPUs, disk, load, uptime")
    status.add_argument("pods", nargs="*", metavar="POD", help="only these pods (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--watch", action="store_true", help="keep printing until interrupted")
    status.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between prints with --watch (default 2)")
    status.set_defaults(handler=_cmd_status)

    config = sub.add_parser("config", help="inspect the config file")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate the config and print what gpuctl understood")
    check.set_defaults(handler=_cmd_config_check)
    path = config_sub.add_parser("path", help="print which config file gpuctl reads")
    path.set_defaults(handler=_cmd_config_path)
    return parser


def _load_config(args: argparse.Namespace):
    """The validated config, or None after printing why not (to stderr)."""
    from sessions.config import ConfigError, load_config, resolve_config_path

    try:
        return load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(f"gpuctl: {exc}", file=sys.stderr)
        return None


def _cmd_config_path(args: argparse.Namespace) -> int:
    from sessions.config import resolve_config_path

    print(resolve_config_path(args.config))
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from sessions.config import describe_config

    config = _load_config(args)
    if config is None:
        return EXIT_USAGE
    print(describe_config(config))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if config is None:
        return EXIT_USAGE
    unknown = [n for n in args.pods if n not in {p.name for p in config.pods}]
    if unknown:
        for name in unknown:
            try:
                config.pod(name)
            except KeyError as exc:
                print(f"gpuctl: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if not config.pods:
        print(f"gpuctl: {config.path} lists no pods", file=sys.stderr)
        return EXIT_USAGE
    from tui.headless_status import run_status

    return _run_async(lambda: run_status(
        config, as_json=args.json, watch=args.watch, interval=args.interval, pod_names=args.pods or None
    ))


def _run_async(make_coro: Callable) -> int:
    """Run a command's coroutine; Ctrl-C ends it quietly with status 130."""
    try:
        return asyncio.run(make_coro())
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nThe full-screen control center is not built yet; `gpuctl status --watch` follows every pod live.")
        return 0
    try:
        return args.handler(args)
    except BrokenPipeError:  # `gpuctl status | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
