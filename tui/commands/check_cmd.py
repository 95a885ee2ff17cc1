"""`gpuctl check POD`: the pre-flight check (GPUs, driver/CUDA, torch, disk, tmux,
clock, ulimits, /dev/shm) as a table of pass/warn/fail; see `sessions.preflight`.

Exit status: 0 every check passed or only warned (the last line counts the
warnings); 1 a check failed, or the pod could not be reached; 2 the command line
or config is wrong.

stdout carries the table (coloured on a terminal, plain in a pipe) with the hints
for warnings and failures under it, or with `--json` a list of
`{name, status, detail, hint}` objects; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, complain, load_pod_or_explain, run_async

EXIT_FAILED = 1
COLUMNS = ("NAME", "STATUS", "DETAIL")
STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def register(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="pre-flight check of a pod: GPUs, driver/CUDA, torch, disk, tmux, "
                                         "clock, ulimits (pass/warn/fail)")
    check.add_argument("pod", metavar="POD")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--min-free-gb", type=float, metavar="N",
                       help="fail below N GiB free in the pod's workdir, warn below 2N (default 20)")
    check.add_argument("--expect-gpus", type=int, metavar="N", help="warn unless the pod has N GPUs")
    check.add_argument("--expect-mem-gib", type=float, metavar="N",
                       help="warn unless every GPU has about N GiB of memory (±5%%)")
    check.set_defaults(handler=_check)



def _check(args: argparse.Namespace) -> int:
    for flag, value in (("--min-free-gb", args.min_free_gb), ("--expect-gpus", args.expect_gpus),
                        ("--expect-mem-gib", args.expect_mem_gib)):
        if value is not None and not value >= 0:
            complain(f"{flag} must be a number >= 0, not {value:g}")
            return EXIT_USAGE
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    return run_async(lambda: _check_async(config, pod, args))


async def _check_async(config: Any, pod: Any, args: argparse.Namespace) -> int:
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet
    from sessions.preflight import FAIL, MIN_FREE_GB

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            results = await fleet.check(
                pod.name, min_free_gb=MIN_FREE_GB if args.min_free_gb is None else args.min_free_gb,
                expect_gpus=args.expect_gpus, expect_mem_gib=args.expect_mem_gib)
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    elif sys.stdout.isatty():
        _render_rich(results, pod.name)
    else:
        sys.stdout.write(render_plain(results, pod.name))
    return EXIT_FAILED if any(r.status == FAIL for r in results) else 0


def summary(results: list[Any], pod_name: str) -> str:
    """'pod 'a100': 1 failed, 2 warnings, 6 passed'."""
    counts = {s: sum(r.status == s for r in results) for s in STATUS_STYLE}
    parts = []
    if counts["fail"]:
        parts.append(f"{counts['fail']} failed")
    if counts["warn"]:
        parts.append(f"{counts['warn']} warning{'s' if counts['warn'] != 1 else ''}")
    parts.append(f"{counts['pass']} passed")
    return f"pod {pod_name!r}: " + ", ".join(parts)


def _hints(results: list[Any]) -> list[str]:
    return [f"{r.name}: {r.hint}" for r in results if r.status != "pass" and r.hint]


def render_plain(results: list[Any], pod_name: str) -> str:
    """Aligned plain text for pipes and logs: the table, the hints, the counts."""
    from tui.terminal_text import plain_table, visible

    lines = []
    hints = _hints(results)
    if hints:
        lines += ["", "hints:"] + [f"  {visible(hint)}" for hint in hints]
    lines += ["", summary(results, pod_name)]
    return plain_table([list(COLUMNS)] + [[r.name, r.status, r.detail] for r in results]) + "\n".join(lines) + "\n"


def _render_rich(results: list[Any], pod_name: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tui.terminal_text import visible

    console = Console(file=sys.stdout, highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(Text(r.name), Text(r.status, style=STATUS_STYLE.get(r.status, "")), Text(visible(r.detail)))
    console.print(table)
    hints = _hints(results)
    if hints:
        console.print()
        console.print("hints:", style="bold")
        for hint in hints:
            console.print(Text("  " + visible(hint)))
    console.print()
    console.print(Text(summary(results, pod_name)))
