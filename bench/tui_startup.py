"""How long until `gpuctl` shows its first frame, against a minimal Textual app?

Usage: .venv/bin/python bench/tui_startup.py [--rounds 5] [--pods 3]

Each round starts, on a fresh 80x24 pseudo-terminal, (a) a minimal Textual app (one
Static) and (b) `gpuctl --config CONFIG` with N pods (on ports where nothing listens:
the first frame must not wait for any pod), alternating so all see the same machine
load. Time to first frame = from fork to the moment the app's own text has appeared
on the terminal: `minimal app ready` for the minimal app; for gpuctl its fleet screen
(header, table, key bar), whose header says `Reading config…` while the app reads its
config, which it does after that frame. (c) gpuctl again, timed to the pods: until its
header reads `pods online`, the fleet filled in from config, still before any pod has
answered. Then `q` quits and the process must exit 0. Reported: every round, the
medians, and their ratios to the minimal app.

Both apps load their modules' bytecode from a cache in the bench's temp dir, filled by
one unmeasured start of each, as an installed gpuctl does (pip compiles it at install,
and Textual's is precompiled in site-packages): under PYTHONDONTWRITEBYTECODE, as set
in some shells and sandboxes, gpuctl would otherwise compile its own ~40 modules from
source on every start (~25 ms) while Textual's come precompiled. `--no-bytecode-cache`
keeps the environment as it is, to measure that case.

Target (TUI issue): gpuctl's first frame at most 1.4x the minimal app (PERF-NOTES: the
minimal app paints in ~170 ms, `import asyncssh` alone costs ~170 ms, so gpuctl paints
first and imports asyncssh in the worker that starts the Fleet).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.pty_run import run_on_pty  # noqa: E402
from tui.screens.fleet_screen import LOADING  # noqa: E402


MINIMAL = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Static

    class Minimal(App):
        BINDINGS = [("q", "quit", "Quit")]

        def compose(self):
            yield Static("minimal app ready")

    Minimal().run()
""")


def first_frame(argv: list[str], env: dict[str, str], marker: bytes, timeout: float = 30.0) -> tuple[float, int]:
    """(seconds from fork until `marker` was printed, exit status after `q`)."""
    code, _, found_at = run_on_pty(argv, env, marker, b"q", timeout)
    return (found_at if found_at is not None else float("nan")), (code if code is not None else -9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run with this environment's bytecode settings (see above)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gpuctl-startup-"))
    try:
        return _measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(args: argparse.Namespace, tmp: Path) -> int:
    config = tmp / "config.yaml"
    config.write_text("pods:\n" + "".join(
        f"  - {{name: pod-{i}, host: 127.0.0.1, port: 9, connect_timeout: 2}}\n" for i in range(args.pods)))
    minimal = tmp / "minimal.py"
    minimal.write_text(MINIMAL)
    env = {**os.environ, "TERM": "xterm-256color", "XDG_STATE_HOME": str(tmp / "state"),
           "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    if not args.no_bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # nothing written into the source tree
    bytecode = ("bytecode as the environment says (PYTHONDONTWRITEBYTECODE="
                f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})" if args.no_bytecode_cache
                else "bytecode cached for both")
    gpuctl = str(Path(sys.executable).with_name("gpuctl"))
    starts = (("minimal", [sys.executable, str(minimal)], b"minimal app ready"),
              ("gpuctl", [gpuctl, "--config", str(config)], LOADING.encode()),
              ("pods", [gpuctl, "--config", str(config)], b"pods online"))
    runs: dict[str, list[float]] = {name: [] for name, _, _ in starts}
    load_before = os.getloadavg()
    # One unmeasured start of each, so all read their files from the page cache.
    for _, argv, marker in starts:
        first_frame(argv, env, marker)
    for _ in range(args.rounds):
        for name, argv, marker in starts:
            seconds, code = first_frame(argv, env, marker)
            if code != 0:
                print(f"{name} exited with status {code}", file=sys.stderr)
                return 1
            runs[name].append(seconds)
    load_after = os.getloadavg()
    print(f"time to first frame on an 80x24 pty, {args.rounds} rounds alternating, gpuctl with {args.pods} "
          f"unreachable pods, {bytecode}; {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    for name, label in (("minimal", "minimal"), ("gpuctl", "gpuctl"), ("pods", "  pods")):
        ms = " ".join(f"{1000 * s:6.0f}" for s in runs[name])
        print(f"{label:<8} {ms}   median {1000 * statistics.median(runs[name]):6.0f} ms"
              f"   best {1000 * min(runs[name]):6.0f} ms")
    for name, what in (("gpuctl", "first frame"), ("pods", "pods shown ")):
        ratio = statistics.median(runs[name]) / statistics.median(runs["minimal"])
        best = min(runs[name]) / min(runs["minimal"])
        print(f"gpuctl {what} / minimal: {ratio:.2f}x by median, {best:.2f}x by best")
    print("target: first frame at most 1.4x; on a loaded machine the best run is the steadier figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
