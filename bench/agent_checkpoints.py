"""How soon does the agent report a new checkpoint, and what does watching cost the pod?

Usage: .venv/bin/python bench/agent_checkpoints.py [--checkpoints 20] [--trials 5] [--interval-s 60]

One run, side by side, on a temp workdir shaped like a Hugging Face run (``output/`` with
``--checkpoints`` finished ``checkpoint-N/`` folders of six files each, plus ``data/``
with 200 files and three small folders) watched with gpuctl's default globs:

* baseline: gpuctl's listing exec (``sessions.checkpoints.listing.listing_command``,
  what watch ran every ``checkpoint_interval_s``), CPU per run of ``sh`` and its
  children, and that spread over ``--interval-s``;
* the agent's watch while nothing changes: CPU of one stat pass (in-process,
  ``CheckpointWatch.stamp``), once per second (its cadence), and of one rescan of the
  globs (when a watched folder gained or lost an entry);
* latency: the real agent (``build_agent_command`` under ``sh -c``, gpuctl's
  ``watch_command``: 1 s checks, quiet ``FRESH_S`` + 0.5 s) while a 5 MiB file is
  written in 5 steps 0.2 s apart; the time from its last write to the first report that
  judges it complete (the issue's goal: under 5 s; the periodic listing: up to
  ``--interval-s``, 30 s on average at 60).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import agent_command  # noqa: E402
from backends.pod_agent.checkpoints import CheckpointWatch  # noqa: E402
from sessions.checkpoints.agent_watch import read_report, watch_command  # noqa: E402
from sessions.checkpoints.listing import DEFAULT_PATTERNS, listing_command  # noqa: E402
from sessions.config.model import SessionConfig  # noqa: E402


def make_run(work: Path, checkpoints: int) -> None:
    old = time.time() - 7200
    for folder, count in (("data", 200), ("logs", 10), ("wandb", 10), ("src", 10)):
        (work / folder).mkdir(parents=True)
        for i in range(count):
            (work / folder / f"f{i}").touch()
    for n in range(checkpoints):
        folder = work / "output" / f"checkpoint-{n * 500}"
        folder.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                     "trainer_state.json", "config.json"):
            (folder / name).write_bytes(b"x" * 100)
            os.utime(folder / name, (old, old))
        os.utime(folder, (old, old))


def cpu_ms(fn, runs: int) -> float:
    start = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - start) / runs * 1000


def listing_ms(work: Path, runs: int = 10) -> float:
    command = listing_command(str(work), DEFAULT_PATTERNS)
    before = os.times()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True)
    after = os.times()
    return (after.children_user + after.children_system - before.children_user - before.children_system) / runs * 1000


def latencies(work: Path, trials: int) -> list[float]:
    session = SessionConfig(name="train", workdir=str(work), checkpoints=("ckpt/*.pt",))
    (work / "ckpt").mkdir(parents=True)
    command = agent_command.build_agent_command({"interval": 1.0, "tmux": False, "gpu_loop": False})
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(watch_command(session)) + "\n").encode())
    proc.stdin.flush()

    def report() -> dict:
        for line in proc.stdout:
            message = json.loads(line)
            if message["kind"] == "checkpoints":
                return message
        raise SystemExit("the agent stopped")

    report()
    found = []
    try:
        for trial in range(trials):
            time.sleep(1.5)
            name = f"ckpt/step_{trial}.pt"
            with open(work / name, "wb") as out:
                for _ in range(5):
                    out.write(os.urandom(1 << 20))
                    out.flush()
                    time.sleep(0.2)
            written = time.monotonic()
            while {c.name: c.state for c in read_report(report()) or ()}.get(name) != "complete":
                pass
            found.append(time.monotonic() - written)
    finally:
        proc.stdin.close()
        proc.wait(10)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=20, help="finished checkpoint folders (default 20)")
    parser.add_argument("--trials", type=int, default=5, help="new checkpoints timed (default 5)")
    parser.add_argument("--interval-s", type=float, default=60.0, help="checkpoint_interval_s compared (default 60)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpuctl-agent-ckpt-"))
    try:
        work = tmp / "work"
        make_run(work, args.checkpoints)
        listing = listing_ms(work)
        watch = CheckpointWatch("train", str(work), list(DEFAULT_PATTERNS), listing_command(str(work), DEFAULT_PATTERNS))
        watch.stamp()
        idle = cpu_ms(watch.stamp, 1000)
        rescan = cpu_ms(watch._scan, 100)
        found = latencies(tmp / "latency", args.trials)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_s = listing / args.interval_s
    print(f"workdir: {args.checkpoints} finished HF checkpoints, default globs; one run, this machine")
    print(f"baseline: one listing exec                    {listing:8.2f} ms CPU"
          f"  = {per_s:.3f} ms/s at checkpoint_interval_s {args.interval_s:g}")
    print(f"agent watch, nothing changing: one stat pass  {idle:8.3f} ms CPU  = {idle:.3f} ms/s"
          f"  ({idle / per_s:.2f}x baseline per second)")
    print(f"agent watch: one rescan of the globs          {rescan:8.2f} ms CPU  (only when a watched folder changed)")
    print("last write -> report judging it complete:     " + ", ".join(f"{s:.1f} s" for s in found)
          + f"  (median {statistics.median(found):.1f} s; periodic listing: up to {args.interval_s:g} s)")


if __name__ == "__main__":
    main()
