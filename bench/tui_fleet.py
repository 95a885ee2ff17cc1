"""What does the fleet screen cost? 50 pods updating at 1 Hz, with and without the UI.

Usage: .venv/bin/python bench/tui_fleet.py [--pods 50] [--seconds 60] [--rounds 1]
                                           [--size 120x40] [--ui-interval 0.25]

Each mode runs in a fresh child process, one after the other, in the same invocation:
  * baseline ("screen not mounted"): the gpuctl app, headless, with everything but the
    fleet screen: the worker subscribed to the Fleet, FleetUpdated messages, the
    sparkline history (toasts come from events, none here); a blank screen instead of the fleet screen.
  * ui ("fleet screen"): the same, with the fleet screen mounted and drawing.
The Fleet is `tests.support.fake_fleet.TickingFleet`: N pods, each publishing a new
sample once per second, staggered evenly, with GPU temperatures and utilization, step,
rate, loss and ETA changing in every sample (so most cells change). A stand-in on
purpose: the subject is the UI's cost, not SSH's (bench/fleet_poll.py measures that).

Reported per mode: CPU of the app process as % of one core over the run after a 5 s
warm-up (process_time / wall time), and latency percentiles from a pod's sample being
published to it being composited on screen (ui: Textual's `_display` after the fleet
table drew it; baseline: to the app handling the FleetUpdated that carries it). Also
the machine's load average before and after, since both modes share the machine.
Headless: Textual composites every frame but writes no bytes to a terminal.
Target (TUI issue): the UI adds under 15 % of one core at 50 pods.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARMUP_S = 5.0


def child(mode: str, pods: int, seconds: float, size: tuple[int, int], ui_interval: float) -> dict:
    """One measured run (in a child process); returns the figures as a dict."""
    import asyncio

    import yaml
    from textual.screen import Screen

    from sessions.config.loader import parse_config
    from tests.support.fake_fleet import TickingFleet
    from tui.app import GpuctlApp
    from tui.screens.fleet_screen import FleetScreen

    names = [f"pod-{i:03d}" for i in range(pods)]
    config = parse_config(yaml.safe_dump({"pods": [{"name": n, "host": "10.0.0.1"} for n in names]}),
                          Path(tempfile.mkdtemp()) / "config.yaml")
    latencies: list[float] = []
    state = {"painted": {}, "pending": {}}

    class Blank(Screen):
        pass

    class BenchApp(GpuctlApp):
        def home_screen(self):
            return Blank() if mode == "baseline" else None

        def on_fleet_updated(self, message) -> None:
            super().on_fleet_updated(message)
            if mode == "baseline":
                now = time.perf_counter()
                for pod in message.snapshot.pods:
                    seen = state["painted"].get(pod.name)
                    if pod.sampled_at is not None and pod.sampled_at != seen:
                        state["painted"][pod.name] = pod.sampled_at
                        latencies.append(now - pod.sampled_at)

    original_draw = FleetScreen._draw

    def draw(self) -> None:
        original_draw(self)
        for pod in self.snapshot.pods:
            if pod.sampled_at is not None and state["painted"].get(pod.name) != pod.sampled_at:
                state["pending"][pod.name] = pod.sampled_at

    FleetScreen._draw = draw
    fleet = TickingFleet(pods, 1.0)
    app = BenchApp(config, fleet_factory=lambda _c: fleet, state_file=Path(tempfile.mkdtemp()) / "tui.json",
                   ui_interval=ui_interval)
    original_display = app._display

    def display(screen, renderable) -> None:
        original_display(screen, renderable)
        if state["pending"]:
            now = time.perf_counter()
            for name, sampled in state["pending"].items():
                state["painted"][name] = sampled
                latencies.append(now - sampled)
            state["pending"] = {}

    app._display = display

    async def run() -> dict:
        async with app.run_test(size=size) as pilot:
            await pilot.pause(WARMUP_S)
            latencies.clear()
            cpu0, wall0, published0 = time.process_time(), time.perf_counter(), fleet.published
            await asyncio.sleep(seconds)
            cpu1, wall1, published1 = time.process_time(), time.perf_counter(), fleet.published
        return {"cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0), "published": published1 - published0,
                "latencies": sorted(latencies)}

    return asyncio.run(run())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1, help="baseline/ui pairs, alternating")
    parser.add_argument("--size", default="120x40", help="terminal size of the headless app, WxH")
    parser.add_argument("--ui-interval", type=float, default=None, help="override tui.app.UI_INTERVAL")
    parser.add_argument("--child", choices=("baseline", "ui"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    from tui.app import UI_INTERVAL

    ui_interval = UI_INTERVAL if args.ui_interval is None else args.ui_interval
    if args.child:
        print(json.dumps(child(args.child, args.pods, args.seconds, (width, height), ui_interval)))
        return 0

    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {"baseline": [], "ui": []}
    for _ in range(args.rounds):
        for mode in ("baseline", "ui"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--pods", str(args.pods), "--seconds", str(args.seconds),
                 "--size", args.size, "--ui-interval", str(ui_interval)],
                capture_output=True, text=True, cwd=ROOT, timeout=args.seconds + 120)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()

    print(f"{args.pods} pods at 1 Hz, {args.seconds:g} s per run after {WARMUP_S:g} s warm-up, headless "
          f"{width}x{height}, UI redraw interval {ui_interval:g} s, {args.rounds} round(s); "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'mode':<30} {'CPU % of a core':>16} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    cpu = {}
    for mode, label in (("baseline", "screen not mounted (baseline)"), ("ui", "fleet screen (ui)")):
        runs = results[mode]
        cpu[mode] = sum(r["cpu_pct"] for r in runs) / len(runs)
        lat = sorted(x for r in runs for x in r["latencies"])
        print(f"{label:<30} {cpu[mode]:>16.1f} {len(lat):>8} {1000 * pct(lat, 0.5):>8.1f} "
              f"{1000 * pct(lat, 0.99):>8.1f} {1000 * (lat[-1] if lat else float('nan')):>8.1f}")
    added = cpu["ui"] - cpu["baseline"]
    print(f"the UI adds {added:.1f} % of one core (target: under 15 %); "
          f"ratio ui/baseline {cpu['ui'] / cpu['baseline']:.2f}x")
    print("latency: baseline = sample published -> app handled it; ui = sample published -> composited on screen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
