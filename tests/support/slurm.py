"""A real single-host Slurm cluster on loopback, owned by one test run or benchmark.

gpuctl's Slurm support is tested against Debian's `slurm-wlm` and `munge`, not a mock:
this module starts `munged` with a generated key, then `slurmctld` and `slurmd` in the
foreground with a generated `slurm.conf` (one node, `proctrack/linuxproc`, no cgroups,
no accounting database), every file under one temp dir and every port a free one, so
several runs on one machine never meet. The login node is an `SshdServer` whose
sessions get `SLURM_CONF` (see `login_env`), as a cluster's login node has its config.

No pytest import here: `tests/conftest.py` and `bench/` scripts both use it.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .net import free_port
from .tools import find_tool

SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")
SLURM_INSTALL_HINT = "install them with: sudo apt-get install -y slurm-wlm munge"
NODE = "gpuctl-node"


class SlurmError(RuntimeError):
    """The cluster did not come up; the message carries the daemons' logs."""


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tool(name: str) -> str:
    found = find_tool(name, system_only=True) or find_tool(name)
    if found is None:
        raise SlurmError(f"{name} is not installed; {SLURM_INSTALL_HINT}")
    return found


class SlurmCluster:
    """munged + slurmctld + slurmd for one node named `NODE`, partition `debug`.

    Typical use::

        with SlurmCluster() as cluster:
            env = cluster.env()            # SLURM_CONF for sbatch/squeue here
            server = SshdServer(env=cluster.login_env(home))
    """

    def __init__(self, *, cpus: int | None = None, tmp_root: str | os.PathLike[str] | None = None) -> None:
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.cpus = cpus or os.cpu_count() or 1  # more than slurmd finds drains the node
        self.dir = Path(tempfile.mkdtemp(prefix="gpuctl-slurm-", dir=tmp_root))
        os.chmod(self.dir, 0o755)  # munged refuses a world-writable parent of its files
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closed = False
        atexit.register(self.close)

    # ------------------------------------------------------------------ set-up

    def _write_conf(self) -> None:
        ctl_port, d_port = free_port(), free_port()
        for sub in ("state", "spool", "log", "munge"):
            (self.dir / sub).mkdir(mode=0o755, exist_ok=True)
        lines = [
            "# Written by tests/support/slurm.py for one test run.",
            "ClusterName=gpuctltest",
            f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
            f"SlurmctldPort={ctl_port}",
            f"SlurmdPort={d_port}",
            f"SlurmUser={self.user}",
            f"SlurmdUser={self.user}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.dir / 'state'}",
            f"SlurmdSpoolDir={self.dir / 'spool'}",
            f"SlurmctldPidFile={self.dir / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.dir / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.dir / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.dir / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "MinJobAge=600",
            "KillWait=2",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={NODE} CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        """This process's environment with `SLURM_CONF` set (for sbatch, squeue... here)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def login_env(self) -> dict[str, str]:
        """What a login node's SSH sessions need to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / "log" / log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env(),
                                start_new_session=True, preexec_fn=_die_with_parent)
        out.close()
        self._procs.append(proc)
        return proc

    def start(self, timeout: float = 30.0) -> SlurmCluster:
        """Start the three daemons and wait until the node is idle."""
        self._write_conf()
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn([_tool("munged"), "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                     f"--pid-file={self.dir / 'munge' / 'munged.pid'}", f"--log-file={self.dir / 'log' / 'munged.log'}",
                     f"--seed-file={self.dir / 'munge' / 'munge.seed'}"], "munged.out")
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
        self._spawn([_tool("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._spawn([_tool("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)], "slurmd.out")
        self._wait(self._node_idle, timeout, "the node did not become idle")
        return self

    def _node_idle(self) -> bool:
        done = subprocess.run([_tool("sinfo") if find_tool("sinfo") else "sinfo", "-h", "-N", "-o", "%T"],
                              capture_output=True, text=True, env=self.env(), timeout=10, check=False)
        return done.returncode == 0 and done.stdout.strip().rstrip("*").lower() in ("idle", "mixed", "allocated")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = self.logs()
                self.close()
                raise SlurmError(f"{what}:\n{logs}")
            time.sleep(0.1)

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon log, for failure messages."""
        parts = []
        for path in sorted((self.dir / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command here (sbatch, squeue...), against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env(), timeout=30, check=check)

    # --------------------------------------------------------------- tear-down

    def close(self) -> None:
        """Cancel every job, stop the daemons, delete the temp dir."""
        if self._closed:
            return
        self._closed = True
        try:
            if any(p.poll() is None for p in self._procs):
                subprocess.run(["scancel", "--user", self.user], env=self.env(), capture_output=True,
                               timeout=10, check=False)
            for proc in reversed(self._procs):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in reversed(self._procs):
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
