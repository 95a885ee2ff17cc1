"""What does one agent tick cost the pod, against one exec of nvidia-smi per tick?

Usage: .venv/bin/python bench/agent_tick.py [--ticks 50] [--interval 0.1] [--old-ref REF]
       [--health-reads 20] [--health-only]

Each measurement runs in a fresh driver process that starts the agent exactly as gpuctl
does (``build_agent_command`` under ``sh -c``), reads its samples, closes its stdin and
reaps it; the driver's ``RUSAGE_CHILDREN`` then holds the CPU of the agent and of every
process it ran and reaped (nvidia-smi execs, the resident loop, tmux). A short run and a
long run are taken per mode and subtracted, so start-up (python, unpacking the agent,
the first NVML/loop start) drops out and what remains is CPU per tick. Modes, all in
one run, side by side:

* ``exec``: ``gpu_loop`` off, one nvidia-smi exec per tick (the agent before loop mode);
* ``loop``: one resident ``nvidia-smi -lms`` read each tick (the default);
* each without a tmux server (no tmux exec at all) and with one (a private server under
  a temp ``TMUX_TMPDIR`` with two idle sessions: ``list-panes -a`` runs only when the
  server's state changes or every ``tmux_refresh_s``), plus loop mode with
  ``tmux_refresh_s: 0``, which lists tmux every tick (the agent before that cache);
* ``old agent`` (optional, ``--old-ref``, default the commit before loop mode): that
  commit's agent, which exec'd nvidia-smi and ``tmux list-sessions`` every tick;
* GPU health (issue 17): the CPU of each kind of health read, measured in a driver of
  its own over ``--health-reads`` reads (a batch of the resident ``nvidia-smi -l`` health
  loop, a read of remapped rows + compute apps: two execs, a kernel-log read), spread
  over the ticks between reads at the agent's default cadence counted in 1 s ticks
  (every 30, 1800 and 300), added to the agent's own tick without health reads
  (``health_interval_s: 0``, measured above); the ratio is printed (goal: under
  1.25x). Measured per read rather than as a long agent run, because a run long enough
  to hold half-hourly reads at their rate does not fit a loaded machine's patience.
  ``dmesg`` is a ``#!/bin/sh`` script printing a boot log, as cheap as the real C
  program; ``--health-only`` runs these rows alone;
* baseline: one ``sh -c 'nvidia-smi --query-gpu=...'`` per tick, what an exec-per-poll
  monitor costs the pod before its SSH session costs (see bench/fleet_poll.py for those).

Start-up is printed first: the CPU of a start plus one sample (python, unpacking the
agent, compiling and importing its modules), median of ``--start-runs`` fresh
processes, and the command's size, for this tree's agent (the ``backends/pod_agent``
package bundled at send time) and, when ``--old-ref`` still had it, that commit's
one-file ``backends/agent_script.py`` (``--old-ref 9aebe52``: the last one-file agent).

nvidia-smi is a stand-in, chosen to flatter the exec modes: for exec it is a ``#!/bin/sh``
script echoing a fixed CSV line (cheaper per exec than any real nvidia-smi, which loads
NVML each time: tens of ms on a GPU box); for loop mode it is the python simulator
(``backends/sim_nvidia_smi.py -lms``), which re-reads a JSON state file and formats each
batch. The real tool is resident in loop mode too and sleeps in-process between batches,
so on a real GPU box the gap between exec and loop only widens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import agent_command  # noqa: E402
from backends.pod_agent.nvidia_smi import NVIDIA_SMI_QUERY_ARGS  # noqa: E402
from backends.pod_agent.health import HEALTH_INTERVAL_S, KERNEL_LOG_INTERVAL_S, SLOW_INTERVAL_S  # noqa: E402
from backends.sim_dmesg import BOOT_LINES  # noqa: E402
from backends.sim_nvidia_smi import install_wrapper  # noqa: E402

FAST_NVIDIA_SMI = """#!/bin/sh
echo '0, GPU-8e5c0a6e-6d1b-4b0a-9c1e-000000000000, NVIDIA A100-SXM4-80GB, 61, 97, 61234, 81920, 312.55, 400.00'
"""
BASELINE_COMMAND = "nvidia-smi " + " ".join(shlex.quote(arg) for arg in NVIDIA_SMI_QUERY_ARGS)
OLD_REF = "ac33f37"  # the agent as it was before loop mode: exec nvidia-smi + tmux list-sessions


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- driver (runs in its own process, so RUSAGE_CHILDREN holds one measurement only) --


def drive_agent(spec: dict) -> dict:
    """Start the agent, read ``spec['ticks']`` samples, stop it; report children's CPU."""
    proc = subprocess.Popen(["/bin/sh", "-c", spec["command"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=spec["env"])
    buffer, samples, errors = b"", 0, []
    deadline = time.monotonic() + 30 + spec["ticks"] * spec["interval"] * 3
    while samples < spec["ticks"]:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stdout.fileno(), 1 << 16) if ready else b""
        if not chunk:
            raise SystemExit("the agent stopped or went silent after %d samples" % samples)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message["kind"] == "sample":
                samples += 1
                if message["gpu_status"] != "ok":
                    errors.append(message["gpu_error"])
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()
    return {"cpu_s": children_cpu(), "samples": samples, "gpu_errors": errors[:3]}


def drive_baseline(spec: dict) -> dict:
    """One ``sh -c 'nvidia-smi ...'`` per tick, as an exec-per-poll monitor runs it."""
    for _ in range(spec["ticks"]):
        subprocess.run(["/bin/sh", "-c", BASELINE_COMMAND], env=spec["env"], stdout=subprocess.DEVNULL, check=True)
    return {"cpu_s": children_cpu(), "samples": spec["ticks"], "gpu_errors": []}


def drive_health(spec: dict) -> dict:
    """CPU of ``spec['reads']`` health reads of one kind (children and this process)."""
    from backends.pod_agent import health

    os.environ["PATH"] = spec["env"]["PATH"]
    os.environ["GPUCTL_SIM_GPU_STATE"] = spec["env"]["GPUCTL_SIM_GPU_STATE"]
    smi = shutil.which("nvidia-smi")
    reads = spec["reads"]
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    if spec["kind"] == "loop":
        loop = health.SmiHealthLoop(smi, 0.05)
        loop.next_batch()  # the probe exec's batch, then the loop's first
        loop.next_batch()
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(reads):
            loop.next_batch()
        loop.proc.terminate()
        loop.proc.wait()  # its CPU arrives with its reaping: a run of 0 reads is subtracted for the start
    elif spec["kind"] == "slow":
        for _ in range(reads):
            health.read_slow(smi)
    else:
        for _ in range(reads):
            health.read_kernel_log(kmsg_path="/nonexistent")
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    own = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    return {"cpu_s": children_cpu() + own, "reads": reads}


def measure(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--driver", json.dumps(spec)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit("driver failed: %s" % (done.stderr.strip() or done.stdout.strip()))
    return json.loads(done.stdout)


def per_tick_ms(spec: dict, short: int, long: int) -> tuple[float, list]:
    """CPU ms per tick: (long run - short run) / (extra ticks), start-up cancelled out."""
    a = measure(dict(spec, ticks=short))
    b = measure(dict(spec, ticks=long))
    return 1000.0 * (b["cpu_s"] - a["cpu_s"]) / (b["samples"] - a["samples"]), b["gpu_errors"]


# -- the pod ---------------------------------------------------------------------------


class Pod:
    """Temp folders: a PATH for exec mode, one for loop mode, a private tmux socket dir."""

    def __init__(self, root: Path):
        self.root = root
        self.exec_bin, self.loop_bin, self.tmux_dir = root / "exec-bin", root / "loop-bin", root / "tmux"
        for folder in (self.exec_bin, self.loop_bin, self.tmux_dir):
            folder.mkdir()
        smi = self.exec_bin / "nvidia-smi"
        smi.write_text(FAST_NVIDIA_SMI)
        smi.chmod(0o755)
        install_wrapper(str(self.loop_bin))
        dmesg = self.loop_bin / "dmesg"  # the health reads' kernel log: a clean boot log, printed as cheaply as dmesg
        dmesg.write_text("#!/bin/sh\ncat <<'EOF'\n%s\nEOF\n" % "\n".join("[%12.6f] %s" % (0.5 + i, line)
                                                                       for i, line in enumerate(BOOT_LINES)))
        dmesg.chmod(0o755)
        self.python = root / "python3"
        # -S: no site-packages, so a pynvml in this venv cannot take over on a GPU machine.
        self.python.write_text("#!/bin/sh\nexec %s -S \"$@\"\n" % shlex.quote(sys.executable))
        self.python.chmod(0o755)
        self.tmux = shutil.which("tmux")

    def env(self, loop: bool) -> dict:
        bin_dir = self.loop_bin if loop else self.exec_bin
        return {"PATH": "%s:/usr/bin:/bin" % bin_dir, "HOME": str(self.root), "TMUX_TMPDIR": str(self.tmux_dir),
                "GPUCTL_SIM_GPU_STATE": str(self.root / "no-state.json")}

    def tmux_server(self, running: bool) -> None:
        if not self.tmux:
            return
        env = self.env(False)
        if running:
            sleep = shutil.which("sleep")
            for name in ("train", "eval"):
                subprocess.run([self.tmux, "new-session", "-d", "-s", name, "%s 3600" % sleep], env=env, check=True)
        else:
            subprocess.run([self.tmux, "kill-server"], env=env, capture_output=True)


def old_agent_command(ref: str, options: dict, python: str) -> str | None:
    """The one-file agent of commit ``ref`` (``backends/agent_script.py``, before the
    agent became the ``backends/pod_agent`` package), packed as gpuctl packed it, or None
    without git or without that file."""
    import base64
    import zlib

    try:
        source = subprocess.run(["git", "show", "%s:backends/agent_script.py" % ref], cwd=ROOT,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    payload = base64.b64encode(zlib.compress(source, 9)).decode("ascii")
    code = agent_command._BOOTSTRAP.format(payload=payload)
    argument = json.dumps(options, separators=(",", ":"), sort_keys=True)
    return " ".join(shlex.quote(part) for part in (python, "-u", "-c", code, argument))


def start_ms(command: str, env: dict, runs: int) -> float:
    """CPU of a start plus one sample (python, unpacking the agent, importing its
    modules, the first read), median of ``runs`` fresh processes."""
    costs = sorted(measure({"command": command, "env": env, "interval": 0.1, "ticks": 1})["cpu_s"]
                   for _ in range(runs))
    return 1000.0 * costs[len(costs) // 2]


def start_rows(pod: Pod, ref: str, runs: int) -> list[tuple[str, int, float]]:
    """(label, command bytes, start ms) for this agent and, when ``ref`` has one, the
    one-file agent of ``ref``: exec mode, no tmux, so only start-up differs."""
    options = {"interval": 0.1, "disk_path": "~", "tmux": False, "gpu_loop": False}
    rows = []
    old = old_agent_command(ref, options, str(pod.python)) if ref else None
    if old is not None:
        rows.append(("one-file agent of %s" % ref, len(old), start_ms(old, pod.env(False), runs)))
    new = agent_command.build_agent_command(options, python=str(pod.python))
    rows.append(("this tree's agent (package bundled at send time)", len(new), start_ms(new, pod.env(False), runs)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=50, help="extra ticks of the long run (default 50)")
    parser.add_argument("--interval", type=float, default=0.1, help="agent interval in seconds (default 0.1)")
    parser.add_argument("--old-ref", default=OLD_REF, help="git ref of an older agent to compare ('' to skip)")
    parser.add_argument("--start-runs", type=int, default=9, help="fresh starts timed per agent (default 9)")
    parser.add_argument("--health-reads", type=int, default=20,
                        help="reads of each kind timed for the GPU health rows (default 20)")
    parser.add_argument("--health-only", action="store_true", help="only the GPU health rows and the baseline")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        spec = json.loads(args.driver)
        if spec.get("health"):
            print(json.dumps(drive_health(spec)))
        else:
            print(json.dumps(drive_baseline(spec) if spec.get("baseline") else drive_agent(spec)))
        return

    short, long = 3, 3 + args.ticks
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpuctl-agent-tick-") as tmp:
        pod = Pod(Path(tmp))
        base = {"interval": args.interval, "disk_path": "~", "tmux": True}
        starts = [] if args.health_only else start_rows(pod, args.old_ref, args.start_runs)
        ms, _ = per_tick_ms({"baseline": True, "env": pod.env(False)}, short, long)
        rows.append(("baseline: sh -c 'nvidia-smi ...' per tick", ms, []))
        try:
            for server in (False, True):
                pod.tmux_server(server)
                where = "tmux server" if server else "no tmux server"
                if server and not pod.tmux:
                    print("tmux is not installed: the tmux-server rows are skipped", file=sys.stderr)
                    break
                modes = [] if args.health_only else [("exec per tick", False, {}), ("loop mode", True, {})]
                if server and args.health_only:
                    break
                if server:
                    modes.append(("loop mode, tmux listed every tick", True, {"tmux_refresh_s": 0}))
                else:
                    modes += [("loop mode, no health reads", True, {"health_interval_s": 0})]
                for label, loop, extra in modes:
                    options = dict(base, gpu_loop=loop, **extra)
                    command = agent_command.build_agent_command(options, python=str(pod.python))
                    spec = {"command": command, "env": pod.env(loop), "interval": args.interval}
                    ms, errors = per_tick_ms(spec, short, long)
                    rows.append(("agent, %s, %s" % (label, where), ms, errors))
                old = old_agent_command(args.old_ref, base, str(pod.python)) if args.old_ref and not args.health_only else None
                if old is not None:
                    spec = {"command": old, "env": pod.env(False), "interval": args.interval}
                    ms, errors = per_tick_ms(spec, short, long)
                    rows.append(("old agent %s (exec + list-sessions), %s" % (args.old_ref, where), ms, errors))
        finally:
            pod.tmux_server(False)
        reads = {}
        for kind in ("loop", "slow", "kernel"):
            spec = {"health": True, "kind": kind, "reads": args.health_reads, "env": pod.env(True)}
            done = measure(spec)
            start = measure(dict(spec, reads=0))["cpu_s"] if kind == "loop" else 0.0
            reads[kind] = 1000.0 * (done["cpu_s"] - start) / done["reads"]

    print("Start-up on the pod (CPU of a start plus one sample, median of %d) and command size, one run:"
          % args.start_runs)
    for label, size, ms in starts:
        print("%-58s %9.1f ms %8d bytes" % (label, ms, size))
    baseline = rows[0][1]
    print("CPU per tick on the pod (agent + its children), %d ticks at %g s, one run:" % (args.ticks, args.interval))
    print("%-58s %9s %12s" % ("mode", "ms/tick", "x baseline"))
    for label, ms, errors in rows:
        print("%-58s %9.3f %11.2fx" % (label, ms, ms / baseline))
        if errors:
            print("    (gpu errors seen: %s)" % "; ".join(str(e) for e in errors))
    by_label = {label: ms for label, ms, _ in rows}
    without = by_label.get("agent, loop mode, no health reads, no tmux server")
    cadence = {"loop": HEALTH_INTERVAL_S, "slow": SLOW_INTERVAL_S, "kernel": KERNEL_LOG_INTERVAL_S}
    words = {"loop": "health fields, one batch of the resident loop", "slow": "remapped rows + compute apps (2 execs)",
             "kernel": "kernel log for Xid lines (dmesg)"}
    print("GPU health reads, CPU each (the mean of %d), and per tick at the default cadence:" % args.health_reads)
    added = 0.0
    for kind, ms in reads.items():
        added += ms / cadence[kind]
        print("%-58s %9.2f ms  every %4g ticks: %6.3f ms/tick" % (words[kind], ms, cadence[kind], ms / cadence[kind]))
    if without:
        print("GPU health at its default cadence: %.3f + %.3f ms per tick = %.2fx the agent without health reads "
              "(goal: under 1.25x)" % (without, added, (without + added) / without))


if __name__ == "__main__":
    main()
