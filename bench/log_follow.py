"""Does gpuctl keep up with a log flood, with bounded memory?

Usage: .venv/bin/python bench/log_follow.py [--rate 50000] [--seconds 10]

A writer process appends `step N | loss X | tok/s Y` lines to a session's log on the
loopback pod at --rate lines/s for --seconds. gpuctl (a Fleet in this process) follows
the log through its agent and parses progress. Reported:
  * lag at the end: time from the writer's last line until gpuctl's step shows it;
  * gpuctl's RSS and the agent's RSS (on the pod) at start, peak and end;
  * how much the agent skipped (its per-check cap keeps a flood from swamping the
    link: monitoring wants the newest lines, not every line).
Baseline, same run: `tail -F` of the same log over the same sshd (what a person runs),
counting how far behind it is when the writer stops.
Target (sessions issue): lag under 1 s at the end, memory bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sshd import SshdServer  # noqa: E402

WRITER = r"""
import sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
batch = max(1, rate // 100)
start = time.monotonic(); n = 0
with open(path, "a", buffering=1 << 20) as fh:
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        target = int(elapsed * rate) + batch
        while n < target:
            n += 1
            fh.write(f"step {n} | loss {3.0 - n * 1e-6:.6f} | lr 3.0e-04 | tok/s 123,456\n")
        fh.flush()
        time.sleep(0.01)
print(n, time.time(), flush=True)
"""


def rss_kib(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def agent_pid(sshd_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"b64decode" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


async def gpuctl_run(server: SshdServer, workdir: Path, rate: int, seconds: float) -> dict:
    import yaml

    from sessions.config.loader import parse_config
    from sessions.fleet.facade import Fleet

    entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(workdir), "log": "train.log"}])
    config = parse_config(yaml.safe_dump({"pods": [entry]}), workdir / "c.yaml")
    log = workdir / "train.log"
    log.write_text("")
    async with Fleet(config) as fleet:
        while fleet.snapshot().pod("p").state != "online":
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        agent = agent_pid(server.pid)
        rss0, agent0 = rss_kib(), rss_kib(agent) if agent else 0
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(log), str(rate), str(seconds), stdout=subprocess.PIPE)
        peak = agent_peak = 0

        def step() -> int:
            sessions = fleet.snapshot().pod("p").sessions
            prog = sessions[0].progress if sessions else None
            return (prog.step or 0) if prog else 0

        done = asyncio.create_task(writer.stdout.readline())
        while not done.done():
            peak = max(peak, rss_kib())
            agent_peak = max(agent_peak, rss_kib(agent) if agent else 0)
            await asyncio.sleep(0.1)
        last_n, finished_at = done.result().split()
        last_n, finished_at = int(last_n), float(finished_at)
        while step() < last_n and time.time() - finished_at < 30:
            await asyncio.sleep(0.005)
        lag = time.time() - finished_at
        return {"lines": last_n, "lag_s": lag, "caught_up": step() >= last_n,
                "rss0": rss0, "rss_peak": peak, "rss_end": rss_kib(),
                "agent0": agent0, "agent_peak": agent_peak, "log_mb": log.stat().st_size / 1e6}


def tail_baseline(server: SshdServer, workdir: Path, rate: int, seconds: float) -> dict:
    log = workdir / "tail.log"
    log.write_text("")
    tail = subprocess.Popen(server.ssh_argv(f"tail -F {log}"), stdout=subprocess.PIPE,
                            env={**os.environ, **server.session_env})
    time.sleep(1)
    writer = subprocess.run([sys.executable, "-c", WRITER, str(log), str(rate), str(seconds)],
                            capture_output=True, text=True, check=True)
    last_n, finished_at = writer.stdout.split()
    want = f"step {last_n} |".encode()
    buf = b""
    while want not in buf[-4096:]:
        chunk = tail.stdout.read1(1 << 20)
        if not chunk:
            break
        buf = buf[-4096:] + chunk
    lag = time.time() - float(finished_at)
    tail.kill()
    return {"lag_s": lag}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "data")
        server = SshdServer(env={"HOME": str(home)})
        server.start()
        try:
            (Path(tmp) / "data" / "gpuctl").mkdir(parents=True)
            server.write_known_hosts(Path(tmp) / "data" / "gpuctl" / "known_hosts")
            g = asyncio.run(gpuctl_run(server, Path(tmp), args.rate, args.seconds))
            b = tail_baseline(server, Path(tmp), args.rate, args.seconds)
        finally:
            server.close()
    print(f"writer: {g['lines']:,} lines in {args.seconds:g}s ({g['log_mb']:.0f} MB)")
    print(f"gpuctl:  lag at end {g['lag_s']:.2f}s (caught up: {g['caught_up']}); "
          f"RSS {g['rss0'] // 1024}->{g['rss_peak'] // 1024}->{g['rss_end'] // 1024} MiB (start/peak/end); "
          f"agent RSS {g['agent0'] // 1024}->{g['agent_peak'] // 1024} MiB")
    print(f"tail -F over ssh (baseline): lag at end {b['lag_s']:.2f}s")


if __name__ == "__main__":
    main()
