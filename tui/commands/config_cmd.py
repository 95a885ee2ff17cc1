"""`gpuctl config check|path`."""

from __future__ import annotations

import argparse
import sys

from tui.commands.common import EXIT_USAGE, load_config_or_explain


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="inspect the config file")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate the config and print what gpuctl understood")
    check.set_defaults(handler=_check)
    path = config_sub.add_parser("path", help="print which config file gpuctl reads")
    path.set_defaults(handler=_path)


def _path(args: argparse.Namespace) -> int:
    from sessions.config.loader import resolve_config_path

    print(resolve_config_path(args.config))
    return 0


def _check(args: argparse.Namespace) -> int:
    from sessions.config.loader import deprecations, describe_config

    config = load_config_or_explain(args)
    if config is None:
        return EXIT_USAGE
    print(describe_config(config))
    for line in deprecations(config):  # still valid, so a warning, not a failure
        print(f"warning: {line}", file=sys.stderr)
    return 0
