"""`gpuctl status [POD...] [--json] [--watch]`."""

from __future__ import annotations

import argparse
import sys

from tui.commands.common import EXIT_USAGE, find_pod_or_explain, load_config_or_explain, run_async


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="connect to every pod and print GPUs, disk, load, uptime")
    status.add_argument("pods", nargs="*", metavar="POD", help="only these pods (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--watch", action="store_true", help="keep printing until interrupted")
    status.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="seconds between prints with --watch (default 2)")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    config = load_config_or_explain(args)
    if config is None:
        return EXIT_USAGE
    if any(find_pod_or_explain(config, name) is None for name in args.pods):
        return EXIT_USAGE
    if not config.pods:
        print(f"gpuctl: {config.path} lists no pods", file=sys.stderr)
        return EXIT_USAGE
    from tui.headless_status import run_status

    return run_async(lambda: run_status(
        config, as_json=args.json, watch=args.watch, interval=args.interval, pod_names=args.pods or None
    ))
