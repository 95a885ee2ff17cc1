"""How fast does `gpuctl download` fetch a checkpoint, against scp and rsync?

Usage: .venv/bin/python bench/download.py [--size-mib 1024 | --size 256M] [--rounds 3]
       [--methods a,b] [--rtt-ms 50]

A random file of --size-mib (default 1 GiB) sits in a session's workdir on a real
OpenSSH sshd on loopback. Each round runs every method once, in turn, into a fresh
local path (alternating, so a slow patch of the shared machine hits all of them):

  gpuctl          sessions.checkpoints.download.download_checkpoint, exactly what `gpuctl download`
                  runs: connect, list, transfer (auto: parallel byte ranges,
                  `backends.parallel_transfer`; on a far link for 64 MiB and more as
                  sessions of one OpenSSH master, `backends.openssh_mux`), the
                  pod's SHA-256 beside the transfer, the local SHA-256 as data lands,
                  fsync, re-stat on the pod, rename, index. Verification included.
  gpuctl-ssh      the same, with the OpenSSH client streaming the file forced (one channel
                  of a second connection; the method auto took before parallel ranges).
  gpuctl-stream   the same, with asyncssh's exec stream forced (no OpenSSH client).
  gpuctl-sftp     the same, with the SFTP path forced (parallel requests).
  transfer-only   backends.transfer alone (auto method, no hashing, no fsync): what
                  the link and the cipher allow gpuctl, without the proof.
  scp             OpenSSH scp, default settings (the baseline for ratios).
  rsync           rsync -e ssh.
  gpuctl-up       the other way: sessions.checkpoints.upload.upload, exactly what `gpuctl
                  upload` runs (parallel ranges into a `.part` on the pod, the same OpenSSH
                  master on a far link, SHA-256 on both ends, rename on the pod); its
                  ratio is to scp-up.
  scp-up          scp of the same file up to the pod (the upload baseline).
  rsync-up        rsync -e ssh up.

--rtt-ms N puts a relay (`tests/support/delay_relay.py`, a process of its own) between
every client and the pod's sshd, delaying every chunk by N/2 ms in each direction: every
method goes through it, and its CPU is printed apart ("relay"). 0 (default): plain
loopback, no relay.

Then a resume: half of the file is left as `.part` (from a completed copy, not timed)
and `gpuctl download` is timed finishing it; it reports the bytes moved.

Printed: MB/s per run, the median per method, and each method's ratio to scp (median
of the per-round ratios, so both sides of a ratio come from the same minute), and CPU
seconds per GiB on each side: "here" (this process and its threads, then the
`ssh`/`scp`/`rsync` processes it started) and "pod" (the sshd serving the run and
everything it started: `cat`, the pod's hash, sftp-server), read from the kernel's
per-process accounting, so other work on a shared machine does not count. Also how
long verification still took after the last byte landed. The machine's load is
printed before and after; the figures are only comparable inside one run. On
loopback the "pod" shares the client's cores: the pod's hash, sshd and the local
hash all compete for the same CPUs, which a real pod does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.delay_relay import DelayRelay  # noqa: E402
from tests.support.sshd import SshdServer  # noqa: E402

METHODS = ("gpuctl", "gpuctl-ssh", "gpuctl-stream", "gpuctl-sftp", "transfer-only", "scp", "rsync",
           "gpuctl-up", "scp-up", "rsync-up")
UP_METHODS = ("gpuctl-up", "scp-up", "rsync-up")


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def here_seconds() -> tuple[float, float]:
    """CPU seconds of (this process, all threads; its waited-for children: ssh, scp)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def cpu_since(here0: tuple[float, float], pod0: float, pid: int) -> tuple[float, float, float]:
    """(this process, its children, the pod) CPU seconds since `here0`/`pod0`."""
    own, kids = here_seconds()
    return own - here0[0], kids - here0[1], settled_tree_seconds(pid) - pod0


def tree_seconds(pid: int) -> float:
    """CPU seconds of process `pid` and of the children it has waited for (the
    listening sshd: each connection's sshd, and what that ran, once they ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def settled_tree_seconds(pid: int, timeout: float = 2.0) -> float:
    """`tree_seconds` once the connections of the last run have ended and been reaped."""
    deadline = time.monotonic() + timeout
    last = tree_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = tree_seconds(pid)
        if now == last and not _sshd_children(pid):
            return now
        last = now
    return last


def _sshd_children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_load(sample_s: float = 2.0) -> str:
    """Load average, and how busy the cores are right now without us."""
    before = busy_seconds()
    time.sleep(sample_s)
    busy = (busy_seconds() - before) / sample_s
    one, five, fifteen = os.getloadavg()
    return (f"loadavg {one:.2f} {five:.2f} {fifteen:.2f}; cores busy without us: {busy:.2f} of "
            f"{os.cpu_count()} over {sample_s:g}s")


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 4 * 1024 * 1024
    with open(path, "wb") as fh:
        left = size
        while left:
            fh.write(os.urandom(min(block, left)))
            left -= min(block, left)
    old = time.time() - 3600
    os.utime(path, (old, old))


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def parse_size(text: str) -> int:
    """Bytes from `256M`, `1G`, `1024` (MiB when no unit)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("IB").rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text) << 20


class Bench:
    def __init__(self, server: SshdServer, work: Path, size: int, port: int | None = None):
        import yaml

        from sessions.config.loader import parse_config
        from sessions.config.paths import gpuctl_known_hosts_path

        self.server = server
        self.port = port or server.port
        self.size = size
        self.pod_dir = work / "pod"
        self.remote = self.pod_dir / "step_1000.pt"
        self.local_root = work / "local"
        known = gpuctl_known_hosts_path()
        known.parent.mkdir(parents=True, exist_ok=True)
        line = f"[{server.host}]:{self.port} {server.host_public_key}"
        known.write_text(line + "\n")
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text(line + "\n")
        entry = server.pod_entry("bench", port=self.port,
                                 sessions=[{"name": "train", "workdir": str(self.pod_dir)}])
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump({"pods": [entry]}))
        self.config = parse_config(config_path.read_text(), config_path)
        self.tails: dict[str, list[float]] = {}
        self.used: dict[str, set[str]] = {}

    def fresh_dest(self, method: str) -> Path:
        dest = self.local_root / method
        remove(dest)
        from sessions.checkpoints.index import index_path

        index_path().unlink(missing_ok=True)  # else gpuctl would (rightly) skip the copy
        dest.mkdir(parents=True)
        return dest

    async def gpuctl(self, dest: Path, method: str = "auto") -> int:
        from sessions.checkpoints.download import download_checkpoint

        last_byte: list[float] = []

        def progress(done: int, total: int) -> None:
            if done == total and not last_byte:
                last_byte.append(time.perf_counter())

        result = await download_checkpoint(self.config, "bench", "train", dest=dest, method=method,
                                           progress=progress)
        self.tails.setdefault(method, []).append(time.perf_counter() - last_byte[0])
        self.used.setdefault(f"gpuctl ({method})", set()).add(result.method)
        return result.transferred

    async def transfer_only(self, dest: Path) -> int:
        from backends.ssh import connect
        from backends.transfer import Fetcher
        from sessions.link import pods

        target = pods.ssh_target(self.config.pod("bench"), self.config.defaults)
        conn = await connect(target)
        try:
            async with Fetcher(conn, sync=False, ssh_argv=target.ssh_argv(tty=False)) as fetcher:
                stats = await fetcher.fetch(str(self.remote), dest / "step_1000.pt", self.size)
        finally:
            conn.close()
            await conn.wait_closed()
        self.used.setdefault("transfer-only", set()).add(stats.method)
        return stats.transferred

    def ssh_options(self) -> list[str]:
        """The server's OpenSSH options, through the relay's port when there is one."""
        options = self.server.ssh_options()
        for i, value in enumerate(options):
            if value.startswith("Port="):
                options[i] = f"Port={self.port}"
            elif value.startswith("UserKnownHostsFile="):
                options[i] = f"UserKnownHostsFile={self.known_hosts}"
        return options

    def scp(self, dest: Path) -> int:
        subprocess.run(["scp", "-q", *self.ssh_options(), f"{self.server.destination}:{self.remote}",
                        str(dest / "step_1000.pt")], check=True)
        return self.size

    def up_source(self) -> Path:
        """The file every upload method sends (made once, beside the local copies)."""
        source = self.local_root / "source" / "data.bin"
        if not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.remote, source)
        return source

    def up_dest(self, method: str) -> Path:
        dest = self.pod_dir / f"up-{method}"
        remove(dest)
        dest.mkdir(parents=True)
        return dest

    async def gpuctl_up(self, dest: Path) -> int:
        from sessions.checkpoints.upload import upload

        result = await upload(self.config, "bench", self.up_source(), str(dest))
        self.used.setdefault("gpuctl-up", set()).add(result.method)
        return result.transferred

    def scp_up(self, dest: Path) -> int:
        subprocess.run(["scp", "-q", *self.ssh_options(), str(self.up_source()),
                        f"{self.server.destination}:{dest}/data.bin"], check=True)
        return self.size

    def rsync_up(self, dest: Path) -> int:
        ssh = shlex.join(["ssh", *self.ssh_options()])
        subprocess.run(["rsync", "-q", "-e", ssh, str(self.up_source()), f"{self.server.destination}:{dest}/"],
                       check=True)
        return self.size

    def rsync(self, dest: Path) -> int:
        ssh = shlex.join(["ssh", *self.ssh_options()])
        subprocess.run(["rsync", "-q", "-e", ssh, f"{self.server.destination}:{self.remote}",
                        str(dest / "step_1000.pt")], check=True)
        return self.size

    async def run(self, method: str) -> tuple[float, tuple[float, float, float], int]:
        """(seconds, CPU seconds (this process, its children, the pod), bytes moved)."""
        if method in UP_METHODS:
            self.up_source()  # made before the clock starts
        dest = self.up_dest(method) if method in UP_METHODS else self.fresh_dest(method)
        assert self.server.pid is not None
        pod0 = settled_tree_seconds(self.server.pid)
        here0, t0 = here_seconds(), time.perf_counter()
        if method == "gpuctl":
            moved = await self.gpuctl(dest)
        elif method == "gpuctl-ssh":
            moved = await self.gpuctl(dest, "ssh")
        elif method == "gpuctl-stream":
            moved = await self.gpuctl(dest, "stream")
        elif method == "gpuctl-sftp":
            moved = await self.gpuctl(dest, "sftp")
        elif method == "transfer-only":
            moved = await self.transfer_only(dest)
        elif method == "scp":
            moved = self.scp(dest)
        elif method == "gpuctl-up":
            moved = await self.gpuctl_up(dest)
        elif method == "scp-up":
            moved = self.scp_up(dest)
        elif method == "rsync-up":
            moved = self.rsync_up(dest)
        else:
            moved = self.rsync(dest)
        elapsed = time.perf_counter() - t0
        cpu = cpu_since(here0, pod0, self.server.pid)
        copy = next(p for p in dest.rglob("data.bin" if method in UP_METHODS else "step_1000.pt"))
        if copy.stat().st_size != self.size:
            raise SystemExit(f"{method}: wrong size {copy.stat().st_size}")
        remove(dest)
        return elapsed, cpu, moved

    async def resume(self) -> tuple[float, int, int, tuple[float, float, float]]:
        """Finish a half-done gpuctl download: (seconds, bytes moved, bytes resumed from,
        CPU seconds (this process, its children, the pod))."""
        from sessions.checkpoints.download import download_checkpoint

        dest = self.fresh_dest("resume")
        half = self.size // 2
        part = dest / "step_1000.pt.part"
        with open(self.remote, "rb") as src, open(part, "wb") as dst:
            left = half
            while left:
                chunk = src.read(min(left, 4 * 1024 * 1024))
                dst.write(chunk)
                left -= len(chunk)
        os.sync()
        assert self.server.pid is not None
        pod0 = settled_tree_seconds(self.server.pid)
        here0, t0 = here_seconds(), time.perf_counter()
        result = await download_checkpoint(self.config, "bench", "train", dest=dest)
        elapsed = time.perf_counter() - t0
        cpu = cpu_since(here0, pod0, self.server.pid)
        remove(dest)
        return elapsed, result.transferred, result.resumed_from, cpu


async def main_async(args: argparse.Namespace) -> None:
    size = parse_size(args.size) if args.size else args.size_mib * 1024 * 1024
    gib = size / (1 << 30)
    methods = [m for m in (args.methods.split(",") if args.methods else METHODS)
               if m not in ("rsync", "rsync-up") or shutil.which("rsync")]
    unknown = sorted(set(methods) - set(METHODS))
    downs = [m for m in methods if m not in UP_METHODS]
    ups = [m for m in methods if m in UP_METHODS]
    if unknown or (downs and "scp" not in methods) or (ups and "scp-up" not in methods):
        raise SystemExit(f"--methods: pick from {', '.join(METHODS)}, scp included (the baseline) for "
                         f"downloads and scp-up for uploads; unknown: {', '.join(unknown) or 'none'}")
    print(f"machine before: {machine_load()}")
    with tempfile.TemporaryDirectory(prefix="gpuctl-bench-dl-") as tmp:
        work = Path(tmp)
        for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            os.environ[var] = str(work / "xdg" / var.lower())  # never the user's gpuctl index
        pod_home = work / "pod-home"
        pod_home.mkdir()
        with SshdServer(env={"HOME": str(pod_home)}) as server, contextlib.ExitStack() as stack:
            relay = stack.enter_context(DelayRelay(server.port, args.rtt_ms)) if args.rtt_ms > 0 else None
            bench = Bench(server, work, size, relay.port if relay is not None else None)
            make_file(bench.remote, size)
            importlib.import_module("sessions.checkpoints.download")  # imports (~0.3 s) are not what is measured
            subprocess.run(["cat", str(bench.remote)], stdout=subprocess.DEVNULL, check=True)  # page cache
            print(f"file: {size / 2**20:.0f} MiB of random bytes; rounds: {args.rounds}; "
                  f"order per round: {', '.join(methods)}")
            if relay is not None:
                print(f"link: every method goes through a loopback relay delaying each chunk "
                      f"{args.rtt_ms / 2:g} ms each way (round trip {args.rtt_ms:g} ms); its CPU is shown as 'relay'")
            else:
                print("link: plain loopback (no relay, round trip ~0)")
            relay_cpu: dict[str, list[float]] = {m: [] for m in methods}
            runs: dict[str, list[tuple[float, tuple[float, float, float], int]]] = {m: [] for m in methods}
            for round_no in range(1, args.rounds + 1):
                for method in methods:
                    relay0 = tree_seconds(relay.pid) if relay is not None else 0.0
                    elapsed, cpu, moved = await bench.run(method)
                    runs[method].append((elapsed, cpu, moved))
                    spent = tree_seconds(relay.pid) - relay0 if relay is not None else 0.0
                    relay_cpu[method].append(spent)
                    print(f"  round {round_no} {method:13s} {size / elapsed / 1e6:7.0f} MB/s  {elapsed:6.2f} s  "
                          f"CPU s/GiB: here {cpu[0] / gib:4.2f} + {cpu[1] / gib:4.2f}, pod {cpu[2] / gib:4.2f}"
                          + (f", relay {spent / gib:4.2f}" if relay is not None else ""),
                          flush=True)
            full = statistics.median(e for e, _, _ in runs["gpuctl"]) if "gpuctl" in runs else None
            resumed = await bench.resume() if full is not None else None
    print()
    print("CPU s/GiB: python = this process (asyncssh, the local hash thread), kids = the processes it ran\n"
          "(ssh, scp, rsync), pod = the sshd serving the run and what it ran (cat, the pod's hash,\n"
          "sftp-server). Medians.")
    print("(uploads: ratio to scp-up)")
    print(f"{'method':13s} {'median MB/s':>11s} {'ratio to scp':>13s} {'python':>7s} {'kids':>5s} {'pod':>5s} "
          f"{'sum':>5s} {'relay':>5s}")
    for method in methods:
        secs = [e for e, _, _ in runs[method]]
        base = runs["scp-up" if method in UP_METHODS else "scp"]
        ratios = [scp_e / e for (e, _, _), (scp_e, _, _) in zip(runs[method], base)]
        own, kids, pod = (statistics.median(c[i] for _, c, _ in runs[method]) / gib for i in range(3))
        print(f"{method:13s} {size / statistics.median(secs) / 1e6:11.0f} {statistics.median(ratios):12.2f}x "
              f"{own:7.2f} {kids:5.2f} {pod:5.2f} {own + kids + pod:5.2f} "
              f"{statistics.median(relay_cpu[method]) / gib:5.2f}")
    print()
    for what, used in bench.used.items():
        print(f"{what} moved the bytes with: {', '.join(sorted(m or 'nothing' for m in used))}")
    for method, tails in bench.tails.items():
        print(f"gpuctl ({method}): last byte written -> copy verified, fsynced and renamed: "
              f"median {statistics.median(tails) * 1000:.0f} ms")
    if resumed is not None and full is not None:
        resumed_s, moved, resumed_from, (own, kids, pod) = resumed
        print(f"resume of a half-done download: {resumed_s:.2f} s, moved {moved / 2**20:.0f} MiB "
              f"(resumed from {resumed_from / 2**20:.0f} MiB), CPU {own:.2f} + {kids:.2f} s here, pod {pod:.2f} s "
              f"(both ends hash the whole file); a full gpuctl download took {full:.2f} s (median)")
    print(f"machine after: {machine_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--size", default="", help="file size with a unit (256M, 1G); overrides --size-mib")
    parser.add_argument("--rtt-ms", type=float, default=0.0,
                        help="round trip added by a delaying loopback relay every method goes through (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="",
                        help=f"comma-separated subset of {','.join(METHODS)} (scp is needed: the baseline)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
