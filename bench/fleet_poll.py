"""How much does following N pods at 1 Hz cost, against a bare exec-per-poll loop?

Usage: .venv/bin/python bench/fleet_poll.py [--pods 10,50,200] [--seconds 20]
       .venv/bin/python bench/fleet_poll.py --job 16x8 --pods 100 --seconds 30   (issue 18)

For each N, in one run and against the same loopback OpenSSH sshd:
  * gpuctl: one process running `sessions.Fleet` over N pods (one persistent agent
    channel each, 1 Hz), reading fleet snapshots every 100 ms;
  * baseline: one process with a bare asyncssh loop running
    `conn.run("nvidia-smi --query-gpu=...")` per pod per second.
Reported per mode: the client process's CPU (% of one core) over a steady window,
its RSS growth per pod, the p50/p99 age of a pod's data when read, and the pod-side
CPU (every process under the sshd: connection handlers, shells, agents, nvidia-smi).

nvidia-smi here is a tiny shell script printing a fixed CSV line for one-shot queries
(the exec baseline), and the python simulator for loop mode (`-lms`, which the agent
keeps resident as it would the real tool), so the figures measure transport and agent
overhead rather than a fake's start-up.
Targets (foundation issue): 200 pods under 15 % of one core for gpuctl, p99 age under
1.5 s, and less pod-side CPU than the exec baseline.

`--job NODESxGPUS` (issue 18, "one gpuctl process follows a 16-node x 8-GPU job plus 100
single pods at 1 Hz"): beside the `--pods` single pods (one GPU each, as above), NODES pod
entries grouped by a `jobs:` block, served by a second sshd whose simulated nvidia-smi
reports GPUS GPUs (its JSON state file), with the job's session `train` running in that
sshd's tmux and printing training progress to its `log:`, so every rank has a step, rate
and loss. The gpuctl worker also does what the TUI's job row and `gpuctl jobs --json` do
on every snapshot the Fleet publishes: `sessions.jobs.summary.summarize(...).to_json()`,
inside the measured CPU. The exec baseline polls the same NODES + N pods. Goals (issue 18):
gpuctl under 20 % of one core, p99 snapshot age under 1.5 s. Measured (2026-12-06, the 2-core
dev box shared with other work, load 10-14), reproduced with
`.venv/bin/python bench/fleet_poll.py --job 16x8 --pods 100 --seconds 30`: gpuctl 18.3, 17.1,
17.4 and 17.8 % of one core, p99 age 1.04, 1.00, 0.99 and 0.99 s, in four runs (the exec loop
30.9, 27.8, 22.7 and 21.6 %); 19.4 % before the job summary was kept per job's rank snapshots. Also in docs/architecture.md,
section 5 (bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sshd import SshdServer  # noqa: E402

NVSMI_QUERY = (
    "nvidia-smi --query-gpu=index,uuid,name,temperature.gpu,utilization.gpu,"
    "memory.used,memory.total,power.draw,power.limit --format=csv,noheader,nounits"
)
FAST_NVIDIA_SMI = """#!/bin/sh
# Loop mode (-l/-lms) stays resident like the real tool: the python simulator, which
# sleeps in-process between batches. A one-shot query is a bare echo, cheaper per exec
# than any real nvidia-smi (which loads NVML each time), so the exec baseline is flattered.
case " $* " in *" -lms "*|*" -l "*|*" --loop"*) exec {python} {sim} "$@";; esac
echo '0, GPU-8e5c0a6e-6d1b-4b0a-9c1e-000000000000, NVIDIA A100-SXM4-80GB, 61, 97, 61234, 81920, 312.55, 400.00'
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- pod-side CPU: every process under the sshd listener -----------------------------

def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds incl. reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        table[int(entry)] = (ppid, (utime + stime + cutime + cstime) / CLK_TCK)
    return table


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of root_pid's descendants (not the listener itself)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, list(children.get(root_pid, []))
    while stack:
        pid = stack.pop()
        total += table[pid][1]
        stack.extend(children.get(pid, []))
    return total


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the two workers (each in its own process) ---------------------------------------

async def _measure(ages_of, n: int, seconds: float, ready) -> dict:
    await ready()
    await asyncio.sleep(2)  # let start-up bursts pass
    cpu0, wall0 = time.process_time(), time.monotonic()
    print("WINDOW-START", flush=True)
    ages: list[float] = []
    while time.monotonic() - wall0 < seconds:
        await asyncio.sleep(0.1 + random.random() * 0.01)
        ages.extend(ages_of())
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    print("WINDOW-END", flush=True)
    # Keep every connection open until the driver has read the pod-side CPU:
    # closing them first would take their sshd processes' CPU out of the sum.
    await asyncio.to_thread(sys.stdin.readline)
    return {"cpu_pct": 100 * cpu / wall, "p50_age": percentile(ages, 0.5), "p99_age": percentile(ages, 0.99),
            "rss_kib": rss_kib(), "samples": len(ages)}


def _pod_entry(pod: dict, spec: dict) -> str:
    session = (f", sessions: [{{name: {spec['job']['session']}, command: python train.py, log: {spec['job']['log']}}}]"
               if pod.get("job") else "")
    return (f"  - {{name: {pod['name']}, host: 127.0.0.1, port: {pod['port']}, user: {spec['user']}, "
            f"identity: {pod['key']}, connect_timeout: 60{session}}}")


def bench_config_text(spec: dict) -> str:
    """The config the gpuctl worker follows: every pod, and the `jobs:` block if any."""
    text = "pods:\n" + "\n".join(_pod_entry(p, spec) for p in spec["pods"]) + "\n"
    job = spec.get("job")
    if job:
        ranks = ", ".join(p["name"] for p in spec["pods"] if p.get("job"))
        text += f"jobs:\n  - {{name: {job['name']}, session: {job['session']}, pods: [{ranks}]}}\n"
    return text


async def worker_gpuctl(spec: dict) -> dict:
    from sessions.config.loader import parse_config
    from sessions.fleet.facade import Fleet
    from sessions.jobs.summary import summarize

    n = len(spec["pods"])
    os.environ["XDG_DATA_HOME"] = spec["data_home"]
    config = parse_config(bench_config_text(spec), Path(spec["data_home"]) / "bench.yaml")
    rss0 = rss_kib()
    job_rows: dict = {"last": None, "count": 0}

    async with Fleet(config) as fleet:
        async def summarize_each_snapshot():
            # What the TUI's job row and `gpuctl jobs --json` compute, once per published snapshot.
            async for snapshot in fleet.subscribe():
                for job in config.jobs:
                    job_rows["last"] = summarize(job, snapshot).to_json()
                    job_rows["count"] += 1

        summarizer = asyncio.create_task(summarize_each_snapshot())

        def job_ready() -> bool:  # every rank with a step, so each summary does its full work
            last = job_rows["last"]
            return not config.jobs or bool(last and all(r["step"] is not None for r in last["ranks"]))

        async def ready():
            while sum(p.state == "online" for p in fleet.snapshot().pods) < n or not job_ready():
                await asyncio.sleep(0.2)
            job_rows["count"] = 0

        def ages():
            now = time.time()
            return [now - p.sampled_at for p in fleet.snapshot().pods if p.sampled_at]

        result = await _measure(ages, n, spec["seconds"], ready)
        summarizer.cancel()
    result["rss_per_pod_kib"] = (result["rss_kib"] - rss0) / n
    if config.jobs:
        last = job_rows["last"]
        result["job"] = {"summaries": job_rows["count"], "nodes_online": last["nodes_online"], "gpus": last["gpus"],
                         "pace": last["pace"], "step_skew": last["step_skew"]}
    return result


async def worker_exec(spec: dict) -> dict:
    import asyncssh

    n = len(spec["pods"])
    last_done: dict[int, float] = {}
    rss0 = rss_kib()
    sem = asyncio.Semaphore(20)

    async def open_one(pod):
        async with sem:
            return await asyncssh.connect("127.0.0.1", port=pod["port"], username=spec["user"],
                                          client_keys=[pod["key"]], known_hosts=spec["known_hosts"])

    conns = await asyncio.gather(*(open_one(pod) for pod in spec["pods"]))

    async def poll(i, conn):
        await asyncio.sleep(random.random())
        while True:
            tick = time.monotonic()
            await conn.run(NVSMI_QUERY, check=True)
            last_done[i] = time.time()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    tasks = [asyncio.create_task(poll(i, c)) for i, c in enumerate(conns)]

    async def ready():
        while len(last_done) < n:
            await asyncio.sleep(0.2)

    def ages():
        now = time.time()
        return [now - t for t in last_done.values()]

    result = await _measure(ages, n, spec["seconds"], ready)
    for t in tasks:
        t.cancel()
    for c in conns:
        c.close()
    result["rss_per_pod_kib"] = (result["rss_kib"] - rss0) / n
    return result


# -- the driver ----------------------------------------------------------------------

def run_mode(mode: str, spec: dict, sshd_pids: list[int]) -> dict:
    def pod_side() -> float:
        return sum(tree_cpu(pid) for pid in sshd_pids)

    proc = subprocess.Popen([sys.executable, __file__, "--worker", mode, json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pod_cpu0 = None
    result = None
    for line in proc.stdout:
        if line.startswith("WINDOW-START"):
            pod_cpu0, t0 = pod_side(), time.monotonic()
        elif line.startswith("WINDOW-END"):
            pod_cpu = pod_side() - pod_cpu0
            pod_pct = 100 * pod_cpu / (time.monotonic() - t0)
            proc.stdin.write("measured\n")
            proc.stdin.flush()
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    proc.wait()
    if result is None:
        raise SystemExit(f"{mode} worker failed")
    result["pod_cpu_pct"] = pod_pct
    return result


def install_fast_nvidia_smi(server: SshdServer) -> None:
    nvsmi = Path(server.bin_dir) / "nvidia-smi"
    nvsmi.unlink(missing_ok=True)
    nvsmi.write_text(FAST_NVIDIA_SMI.format(python=sys.executable, sim=ROOT / "backends" / "sim_nvidia_smi.py"))
    nvsmi.chmod(0o755)


def job_gpus(count: int) -> list[dict]:
    """A node of `count` busy H100s in the simulator's state format."""
    return [{"index": i, "uuid": f"GPU-00000000-0000-4000-8000-{i:012d}", "name": "NVIDIA H100 80GB HBM3",
             "temperature.gpu": 60 + i, "utilization.gpu": 97, "memory.used": 70123, "memory.total": 81559,
             "power.draw": 612.5, "power.limit": 700.0} for i in range(count)]


#: The job's session on every node: a trainer printing torchrun-style progress at 5 Hz.
TRAINER = ("i=0; while :; do i=$((i+1)); echo \"step $i/1000000 | loss 2.$((i % 97)) | lr 1e-4\" >> {log}; "
           "sleep 0.2; done")


def start_job_session(server: SshdServer, log: Path) -> None:
    """The job's `train` session in the job sshd's tmux (every rank's pod shares it: one
    machine stands in for the nodes), so each rank's agent follows a moving log."""
    env = {**os.environ, "TMUX_TMPDIR": str(server.tmux_tmpdir)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", "train", TRAINER.format(log=shlex.quote(str(log)))],
                   env=env, check=True, stdin=subprocess.DEVNULL)


def print_row(label: str, mode: str, r: dict) -> None:
    print(f"{label:>8} {mode:>8} {r['cpu_pct']:>12.1f} {r['rss_per_pod_kib']:>12.0f} "
          f"{r['p50_age']:>10.2f} {r['p99_age']:>10.2f} {r['pod_cpu_pct']:>9.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", default="10,50,200")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--job", metavar="NODESxGPUS",
                        help="add a job of NODES pods with GPUS GPUs each (e.g. 16x8) beside each --pods count")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SPEC"))
    args = parser.parse_args()
    if args.worker:
        mode, spec = args.worker[0], json.loads(args.worker[1])
        fn = worker_gpuctl if mode == "gpuctl" else worker_exec
        print("RESULT " + json.dumps(asyncio.run(fn(spec))), flush=True)
        return

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 200 connections need more than 1024 fds
    counts = [int(x) for x in args.pods.split(",")]
    nodes, gpus = (int(x) for x in args.job.lower().split("x")) if args.job else (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        servers = [SshdServer()]
        if nodes:
            servers.append(SshdServer(gpus=job_gpus(gpus)))
        try:
            for server in servers:
                server.start()
                install_fast_nvidia_smi(server)
            known = Path(tmp) / "known_hosts"
            known.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
            data_home = Path(tmp) / "data"
            (data_home / "gpuctl").mkdir(parents=True)
            (data_home / "gpuctl" / "known_hosts").write_text(known.read_text())
            job = None
            if nodes:
                log = Path(tmp) / "train.log"
                start_job_session(servers[1], log)
                job = {"name": "llm", "session": "train", "log": str(log)}
            print(f"{'pods':>8} {'mode':>8} {'client CPU%':>12} {'RSS/pod KiB':>12} {'p50 age s':>10} "
                  f"{'p99 age s':>10} {'pod CPU%':>9}")
            for n in counts:
                pods = [{"name": f"p{i}", "port": servers[0].port, "key": str(servers[0].client_key)} for i in range(n)]
                pods += [{"name": f"node{r}", "port": servers[-1].port, "key": str(servers[-1].client_key), "job": True}
                         for r in range(nodes)]
                label = f"{n}+{nodes}x{gpus}" if nodes else str(n)
                spec = {"pods": pods, "job": job, "user": servers[0].user,
                        "known_hosts": str(known), "seconds": args.seconds, "data_home": str(data_home)}
                rows = {}
                for mode in ("gpuctl", "exec"):
                    rows[mode] = r = run_mode(mode, spec, [s.pid for s in servers])
                    print_row(label, mode, r)
                g, e = rows["gpuctl"], rows["exec"]
                if "job" in g:
                    j = g["job"]
                    print(f"{label:>8}   job: {j['nodes_online']}/{nodes} nodes online, {j['gpus']} GPUs, "
                          f"{j['summaries']} summaries in the window, pace {j['pace']}, skew {j['step_skew']}")
                print(f"{label:>8}   ratio gpuctl/exec: client CPU {g['cpu_pct'] / e['cpu_pct']:.2f}x, "
                      f"pod CPU {g['pod_cpu_pct'] / e['pod_cpu_pct']:.2f}x", flush=True)
        finally:
            for server in servers:
                server.close()


if __name__ == "__main__":
    main()
