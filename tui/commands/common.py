"""Helpers every headless command shares: loading config, running a coroutine."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable

EXIT_USAGE = 2


def complain(message: str) -> None:
    """`gpuctl: message` on stderr, with any pod-sent control characters made visible.

    Messages quote the pod (its stderr, file and session names), and a pod is not
    trusted with the user's terminal (`tui.terminal_text`).
    """
    from tui.terminal_text import visible

    print(f"gpuctl: {visible(message)}", file=sys.stderr)


def load_config_or_explain(args: argparse.Namespace):
    """The validated config, or None after printing why not (to stderr)."""
    from sessions.config.loader import ConfigError, load_config, locate_config

    try:
        return load_config(locate_config(args.config))
    except ConfigError as exc:
        complain(str(exc))
        return None


def find_pod_or_explain(config: Any, name: str):
    """The pod's config entry, or None after a did-you-mean message."""
    try:
        return config.pod(name)
    except KeyError as exc:
        complain(str(exc.args[0] if exc.args else exc))
        return None


def load_pod_or_explain(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(config, pod entry) for `args.config` and `args.pod`, or None after saying why."""
    config = load_config_or_explain(args)
    if config is None:
        return None
    pod = find_pod_or_explain(config, args.pod)
    return None if pod is None else (config, pod)


def refuse_read_only(config: Any, verb: str) -> bool:
    """Say so (and return True) when the config sets `read_only: true`: `gpuctl VERB`
    changes pods, which such a config rules out (a usage error, found before connecting).

    The one wording of that refusal for every headless command that changes a pod.
    """
    if config.read_only:
        complain(f"{config.path} sets read_only: true, so gpuctl {verb} does not change pods")
    return bool(config.read_only)


def ask(question: str) -> bool:
    """Ask on the terminal; only `y`/`yes` is a yes. The question goes to stderr, so
    stdout stays the command's data. The one `[y/N]` prompt of the headless commands."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def run_async(make_coro: Callable) -> int:
    """Run a command's coroutine; Ctrl-C ends it quietly with status 130."""
    try:
        return asyncio.run(make_coro())
    except KeyboardInterrupt:
        return 130
