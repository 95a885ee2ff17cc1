"""`gpuctl watch [POD...] [--json] [--state FILE]`: unattended runs, events on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.commands.common import EXIT_USAGE, find_pod_or_explain, load_config_or_explain, run_async


def register(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser(
        "watch", help="follow the fleet unattended: events, alerts, auto-download/resume, budget",
        description="Follow every pod (or the ones named) until interrupted, printing one line per "
                    "event and acting by the config's `policies:` (auto_download, keep_local, "
                    "auto_resume, alerts, budget, notify).")
    watch.add_argument("pods", nargs="*", metavar="POD", help="only these pods (default: all)")
    watch.add_argument("--json", action="store_true", help="one JSON object per event")
    watch.add_argument("--state", metavar="FILE", type=Path,
                       help="state file (restart counts, downloads done); default: one per config "
                            "file and start directory under the platform state dir")
    watch.set_defaults(handler=_watch)


def _watch(args: argparse.Namespace) -> int:
    config = load_config_or_explain(args)
    if config is None:
        return EXIT_USAGE
    if any(find_pod_or_explain(config, name) is None for name in args.pods):
        return EXIT_USAGE
    from sessions.watch.state import default_state_path
    from tui.headless_watch import run_watch

    start_dir = Path.cwd()
    state_path = args.state or default_state_path(config.path, start_dir, config)
    return run_async(lambda: run_watch(config, state_path=state_path, as_json=args.json,
                                       pod_names=args.pods or None, start_dir=start_dir))
