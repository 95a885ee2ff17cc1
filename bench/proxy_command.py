"""What does a `ProxyCommand` (one `ssh -W` per pod) add on this machine, per pod?

Usage: .venv/bin/python bench/proxy_command.py [--pods 50] [--seconds 10]

Two loopback OpenSSH servers: the pods' sshd and a jump host. In one run, side by
side, gpuctl's own `backends.ssh.connect` opens N connections and runs one exec per
pod per second (a 1 Hz poll's traffic) for a steady window:

  * direct: the pods reached by address (the baseline);
  * proxy: the same pods through SSH config aliases whose `ProxyCommand` is
    `ssh -W %h:%p JUMP`, as SkyPilot and bastion setups write them.

Reported per mode: local processes added, their CPU (% of one core) and RSS (shared
library pages counted in each, so an upper bound), and
gpuctl's own CPU; then per pod, and the proxy's total local CPU as a ratio of the
direct run's. Issue 18 asks for the per-pod figures at 50 pods.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends.ssh import connect, resolve_target, run_command  # noqa: E402
from tests.support.sshd import SshdServer  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int, skip: set[int]) -> list[int]:
    """Every live descendant of `pid` (the proxies and what they exec), leaving out the
    trees under `skip` (the test servers: on a real fleet they are other machines)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            if kid in skip:
                continue
            found.append(kid)
            stack.append(kid)
    return found


def _cpu_rss(pids: list[int]) -> tuple[float, int]:
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return cpu, rss


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_mode(targets: list, seconds: float, servers: set[int]) -> dict[str, float]:
    conns = await asyncio.gather(*(connect(t, notice=lambda _: None) for t in targets))
    try:
        await asyncio.gather(*(run_command(c, "true", timeout=30) for c in conns))  # warm
        kids = _children(os.getpid(), servers)
        cpu0, _ = _cpu_rss(kids)
        self0, t0 = _self_cpu(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            tick = time.monotonic()
            await asyncio.gather(*(run_command(c, "true", timeout=30) for c in conns))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        wall = time.monotonic() - t0
        cpu1, rss = _cpu_rss(kids)
        return {"procs": len(kids), "child_cpu_pct": 100 * (cpu1 - cpu0) / wall, "child_rss_mib": rss / 2**20,
                "self_cpu_pct": 100 * (_self_cpu() - self0) / wall}
    finally:
        for c in conns:
            c.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with SshdServer(log_level="ERROR") as pod, SshdServer(log_level="ERROR") as jump, \
            tempfile.TemporaryDirectory(prefix="gpuctl-bench-proxy-") as tmp:
        known = pod.write_known_hosts(Path(tmp) / "known_hosts")
        proxy = shlex.join(["ssh", *jump.ssh_options(), "-W", "%h:%p", jump.destination])
        cfg = Path(tmp) / "ssh_config"
        cfg.write_text("".join(f"Host pod-{i}\n  HostName {pod.host}\n  Port {pod.port}\n  User {pod.user}\n"
                               f"  IdentityFile {pod.client_key}\n  ProxyCommand {proxy}\n" for i in range(args.pods)))
        common = dict(known_hosts_files=[], gpuctl_known_hosts=str(known), ssh_config_files=[str(cfg)],
                      connect_timeout=60.0)
        direct = [resolve_target(name=f"d{i}", host=pod.host, port=pod.port, user=pod.user,
                                 identity=str(pod.client_key), **common) for i in range(args.pods)]
        proxied = [resolve_target(name=f"pod-{i}", host=f"pod-{i}", **common) for i in range(args.pods)]
        assert all(t.proxy_command for t in proxied)
        results = {}
        for mode, targets in (("direct", direct), ("proxy", proxied)):
            servers = {p for p in (pod.pid, jump.pid) if p is not None}
            results[mode] = asyncio.run(run_mode(targets, args.seconds, servers))
    n = args.pods
    print(f"{n} pods, 1 exec per pod per second, {args.seconds:g} s steady window (this machine, loopback)")
    print(f"{'mode':8} {'local procs':>11} {'their CPU %':>11} {'their RSS MiB':>13} {'gpuctl CPU %':>12}")
    for mode, r in results.items():
        print(f"{mode:8} {r['procs']:>11.0f} {r['child_cpu_pct']:>11.2f} {r['child_rss_mib']:>13.1f} "
              f"{r['self_cpu_pct']:>12.2f}")
    d, p = results["direct"], results["proxy"]
    added = p["procs"] - d["procs"]
    print(f"per pod through ProxyCommand: {added / n:.1f} process(es), "
          f"{(p['child_cpu_pct'] - d['child_cpu_pct']) / n:.3f} % of a core, "
          f"{(p['child_rss_mib'] - d['child_rss_mib']) / n:.2f} MiB RSS")
    total_d = d["child_cpu_pct"] + d["self_cpu_pct"]
    total_p = p["child_cpu_pct"] + p["self_cpu_pct"]
    print(f"local CPU, proxy / direct: {total_p / total_d:.2f}x" if total_d else "direct used no measurable CPU")


if __name__ == "__main__":
    main()
