"""How many bytes a second does the TUI write to the terminal? Fleet, pod and log screens.

Usage: .venv/bin/python bench/tui_bytes.py [--seconds 10] [--size 160x48] [--pace 0.4]
                                            [--baseline REV | --no-baseline]

Runs `gpuctl demo` in a private tmux server (its own socket, no user config) at the
given size, and counts the bytes the app writes to its pane through `tmux pipe-pane`
over a fixed window on each screen, in steady state (a few seconds after each screen
opened):
  * fleet: the home screen (the reference: a table updated once a second);
  * pod: `h100x8`, whose session prints a torchrun/llm.c step line per step: with
    `--pace 0.4` a step takes 0.1 s, so its log scrolls at 10 lines/s;
  * log: the same session's log, full screen (`l`).
Target (issue 16): under 20 KB/s on the pod and log screens.

Baseline, side by side in the same invocation: the same measurement with the code of
`--baseline REV` (default: the commit before the terminal-scroll change, found as the
parent of the commit that added tui/widgets/band_scroll.py), exported with `git archive`
into a temp dir and run from there with the same virtualenv. The working tree itself
is measured as "now". Figures vary with what else the machine runs (the demo's pods
run here too), so compare the two rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ("fleet", "pod", "log")


def tmux(socket: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                            check=check)
    return result.stdout


def wait_for(socket: str, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in tmux(socket, "capture-pane", "-p", "-t", "bench", check=False):
            return
        time.sleep(0.5)
    screen = tmux(socket, "capture-pane", "-p", "-t", "bench", check=False)
    raise SystemExit(f"tui_bytes: {text!r} did not appear within {timeout:g}s; the pane shows:\n{screen}")


def count_bytes(socket: str, seconds: float, out: Path) -> float:
    """Bytes per second the app wrote to the pane over `seconds`."""
    out.unlink(missing_ok=True)
    tmux(socket, "pipe-pane", "-t", "bench", f"cat > {out}")
    time.sleep(seconds)
    tmux(socket, "pipe-pane", "-t", "bench")  # no command: stop piping
    time.sleep(0.3)
    return out.stat().st_size / seconds if out.exists() else 0.0


def measure(tree: Path, args: argparse.Namespace, label: str) -> dict[str, float]:
    """Run the demo from `tree` and measure each screen; returns bytes/s per screen."""
    width, height = (int(n) for n in args.size.split("x"))
    socket = f"gpuctl-bench-{os.getpid()}-{label}"
    scratch = Path(tempfile.mkdtemp(prefix="gpuctl-bytes-"))
    # From the tree's own directory, so `-m tui.cli` imports that tree's code.
    command = f"cd {tree} && exec {sys.executable} -m tui.cli demo --pace {args.pace}"
    env_unset = ["-u", "TMUX", "-u", "TMUX_PANE"]
    figures: dict[str, float] = {}
    try:
        subprocess.run(["env", *env_unset, "tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d",
                        "-s", "bench", "-x", str(width), "-y", str(height), command], check=True)
        wait_for(socket, "pods online", 90)
        time.sleep(args.settle)
        figures["fleet"] = count_bytes(socket, args.seconds, scratch / "fleet.bin")
        tmux(socket, "send-keys", "-t", "bench", "Down", "Enter")  # h100x8: 10 log lines/s
        wait_for(socket, "Log · pretrain", 30)
        time.sleep(args.settle)
        figures["pod"] = count_bytes(socket, args.seconds, scratch / "pod.bin")
        tmux(socket, "send-keys", "-t", "bench", "l")
        wait_for(socket, "Log · h100x8 / pretrain", 30)
        time.sleep(args.settle)
        figures["log"] = count_bytes(socket, args.seconds, scratch / "log.bin")
        tmux(socket, "send-keys", "-t", "bench", "q")
        time.sleep(3)
    finally:
        tmux(socket, "kill-server", check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return figures


def baseline_revision() -> str | None:
    """The parent of the commit that added the terminal-scroll path, if there is one."""
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
                            "tui/widgets/band_scroll.py"], capture_output=True, text=True).stdout.split()
    return f"{added[-1][:10]}^" if added else None


def export(revision: str) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="gpuctl-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per screen")
    parser.add_argument("--settle", type=float, default=4.0, help="wait after a screen opens")
    parser.add_argument("--size", default="160x48")
    parser.add_argument("--pace", type=float, default=0.4, help="demo step time factor (0.4: 10 log lines/s)")
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare against")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tui_bytes: needs tmux", file=sys.stderr)
        return 1

    runs: list[tuple[str, dict[str, float]]] = []
    revision = None if args.no_baseline else (args.baseline or baseline_revision())
    if revision:
        tree = export(revision)
        try:
            runs.append((f"baseline {revision}", measure(tree, args, "baseline")))
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    runs.append(("now (working tree)", measure(ROOT, args, "now")))

    print(f"terminal output at {args.size}, KB/s over {args.seconds:g}s per screen (KB = 1000 bytes)")
    print(f"{'':30}" + "".join(f"{s:>10}" for s in SCREENS))
    for label, figures in runs:
        print(f"{label:30}" + "".join(f"{figures.get(s, 0) / 1000:10.1f}" for s in SCREENS))
    if len(runs) == 2:
        (_, before), (_, after) = runs
        print(f"{'ratio now/baseline':30}" + "".join(
            f"{(after[s] / before[s] if before.get(s) else 0):10.2f}" for s in SCREENS))
    print("target: pod and log under 20 KB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
