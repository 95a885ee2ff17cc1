"""A real OpenSSH ``sshd`` on loopback, owned by one test or one benchmark.

gpuctl's transport is tested against the real thing, not a mock: this module starts
the system's OpenSSH server as a foreground daemon (``sshd -D -e``) in a private temp
dir with its own config, host key, client key and ``authorized_keys``, on a free port
of 127.0.0.1. The only stand-in is ``nvidia-smi``: a wrapper on the session ``PATH``
runs ``backends/sim_nvidia_smi.py``, which prints real-format CSV from a JSON state
file that :meth:`SshdServer.set_gpus` rewrites atomically.

No pytest import here: ``tests/conftest.py`` and ``bench/`` scripts both use it.
It runs past 400 lines because it is one class whose setup, lifecycle and accessors
belong together, and because its docstrings record what was measured (below).

Why the session environment looks the way it does (measured on Debian 12, OpenSSH 9.2,
bash 5.2, as root):

* sshd runs every exec request as ``<login shell> -c <command>`` (``/bin/bash`` for
  root here), with ``cwd`` = the user's home. Debian builds bash with
  ``SSH_SOURCE_BASHRC``: a non-interactive ``bash -c`` started by sshd *does* read
  ``~/.bashrc`` when ``SHLVL`` is unset. Root's ``~/.bashrc`` on this machine has no
  "interactive only" guard; it runs ``pyenv init``/``pyenv virtualenv-init`` and
  sources ``~/.cargo/env``: it puts pyenv shims (so a ``python3``) and cargo in front
  of ``PATH``, and an exec of ``true`` over an open asyncssh connection takes 128 ms
  instead of 2.8 ms (median of 20; PERF-NOTES' "bashrc tax"). That would break
  ``python=False`` and make timings depend on whoever's home directory runs the tests.
* Fix: ``SetEnv SHLVL=1``. bash only reads ``~/.bashrc`` for sshd when it is a
  top-level shell (``shell_level < 2``); inheriting ``SHLVL=1`` makes it level 2.
  This covers exec channels, subsystems (sftp-server runs via the shell too) and
  ``tmux new-session -d CMD`` (tmux runs ``$SHELL -c CMD`` and inherits ``SHLVL``).
  Pass ``isolate_rc=False`` to get the user's real startup files back.
* ``python=False`` is a PATH-level simulation: ``/usr/bin/python3`` still exists on
  the machine, so only code that finds python3 through ``PATH`` sees a bare pod.
* Not covered, by design: a *login* shell (a shell channel with no command, or an
  interactive tmux pane) reads ``/etc/profile``, which resets ``PATH`` to the system
  dirs, and ``~/.profile`` -> ``~/.bashrc``. gpuctl uses exec channels; tests should too.
* ``SetEnv`` only honours the *first* ``SetEnv`` line in a config, so all session
  variables go on one line; pass extra ones with ``env=``, not in ``extra_config``.
* ``TMUX_TMPDIR`` points into the temp dir, so tmux servers started over this sshd
  never touch the real user's tmux (``tmux_env()`` reaches them locally), and
  :meth:`SshdServer.close` kills them.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .net import LOOPBACK, SilentServer, free_port, refused_port
from .procs import alive, descendants, signal_all
from .tools import INSTALL_HINT, SYSTEM_PATH, ToolMissingError, find_tool, missing_tools

__all__ = [
    "DEFAULT_GPUS",
    "FALLBACK_TOOLS",
    "INSTALL_HINT",
    "SilentServer",
    "SshdError",
    "SshdServer",
    "ToolMissingError",
    "find_tool",
    "free_port",
    "missing_tools",
    "refused_port",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_NVIDIA_SMI = REPO_ROOT / "backends" / "sim_nvidia_smi.py"

SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/lib/ssh/sftp-server",  # Arch
    "/usr/libexec/sftp-server",
)
PRIVSEP_DIR = Path("/run/sshd")

#: What a pod without python3 gets on its PATH (``python=False``): the tools the shell
#: fallback may use, and nothing else. Add more per server with ``extra_tools=``.
FALLBACK_TOOLS: tuple[str, ...] = (
    "sh", "bash", "cat", "df", "tmux", "env", "head", "tail", "tr", "sed", "awk",
    "sleep", "date", "uname", "stat", "ls", "mkdir", "rm", "sha256sum", "printf",
    "echo", "true", "false", "grep", "kill", "nohup",
)  # fmt: skip


class SshdError(RuntimeError):
    """sshd could not be set up, validated or started; the message has its output."""


#: Two busy A100s, as a training pod shows them mid-run.
DEFAULT_GPUS: tuple[dict[str, Any], ...] = (
    {
        "index": 0,
        "uuid": "GPU-5b3c2d1e-7f8a-4b9c-a0d1-e2f3a4b5c6d7",
        "name": "NVIDIA A100-SXM4-80GB",
        "temperature.gpu": 45,
        "utilization.gpu": 97,
        "memory.used": 61234,
        "memory.total": 81920,
        "power.draw": 312.5,
        "power.limit": 400.0,
    },
    {
        "index": 1,
        "uuid": "GPU-9e8d7c6b-5a4f-4e3d-b2c1-a0f9e8d7c6b5",
        "name": "NVIDIA A100-SXM4-80GB",
        "temperature.gpu": 52,
        "utilization.gpu": 94,
        "memory.used": 60118,
        "memory.total": 81920,
        "power.draw": 298.7,
        "power.limit": 400.0,
    },
)


def _setenv_token(name: str, value: str) -> str:
    item = f"{name}={value}"
    if '"' in item or "\n" in item:
        raise SshdError(f"SetEnv cannot carry {item!r}")
    return f'"{item}"' if any(ch.isspace() for ch in item) else item


def _die_with_parent() -> None:
    """In the forked child: have Linux send SIGTERM when the test process dies.

    atexit does not run when a test run is killed (a CI timeout, `timeout`, SIGKILL),
    and a listening sshd would outlive it; PR_SET_PDEATHSIG stops that leak.
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: atexit and close() still clean up in the normal case


class SshdServer:
    """A real OpenSSH server on 127.0.0.1 that this process owns.

    Typical use::

        with SshdServer() as pod:            # start() ... close()
            conn = await asyncssh.connect(**pod.connect_kwargs())
            pod.set_gpus([...], fail=None)   # what nvidia-smi prints next
            pod.stop(); pod.start()          # same port, same host key

    Args:
        python: when False the session ``PATH`` is only :attr:`bin_dir`, holding
            symlinks to :data:`FALLBACK_TOOLS` (+ ``extra_tools``) and ``nvidia-smi``:
            ``command -v python3`` fails, like a bare CUDA image.
        nvidia_smi: when False there is no ``nvidia-smi`` on ``PATH`` at all (if the
            machine has a real one, ``PATH`` becomes the symlink dir, with python3).
        extra_config: more sshd_config lines. Non-``Match`` lines go first, because
            sshd keeps the first value it reads; ``Match`` blocks go last.
        env: more session environment variables (joined into the one ``SetEnv``).
        gpus: the initial GPU list (default :data:`DEFAULT_GPUS`).
        extra_tools: more programs to symlink into :attr:`bin_dir` when ``PATH`` is it.
        isolate_rc: set ``SHLVL=1`` so bash skips ``~/.bashrc`` (see module doc).
        python_executable: the interpreter the ``nvidia-smi`` wrapper runs
            (default ``sys.executable``), always by absolute path.
        log_level: sshd ``LogLevel``.
        tmp_root: where the temp dir goes (default: the system temp dir).

    Raises:
        ToolMissingError: sshd or ssh-keygen is not installed.
        SshdError: key generation failed.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        python: bool = True,
        nvidia_smi: bool = True,
        extra_config: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        gpus: Sequence[Mapping[str, Any]] | None = None,
        extra_tools: Sequence[str] = (),
        isolate_rc: bool = True,
        python_executable: str | None = None,
        log_level: str = "INFO",
        tmp_root: str | os.PathLike[str] | None = None,
    ) -> None:
        missing = missing_tools("sshd", "ssh-keygen")
        if missing:
            raise ToolMissingError(missing)
        self._sshd = find_tool("sshd") or "sshd"
        self._keygen = find_tool("ssh-keygen") or "ssh-keygen"
        self.python = python
        self.nvidia_smi = nvidia_smi
        self.isolate_rc = isolate_rc
        self.user: str = pwd.getpwuid(os.getuid()).pw_name
        self.port: int = free_port()
        self._extra_config = list(extra_config)
        self._extra_env = dict(env or {})
        self._extra_tools = tuple(extra_tools)
        self._python_exe = os.path.abspath(python_executable or sys.executable)
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._validated = False
        self._started_once = False
        self._closed = False

        self.dir = Path(tempfile.mkdtemp(prefix="gpuctl-sshd-", dir=tmp_root))
        self.bin_dir = self.dir / "bin"
        self.gpu_state_path = self.dir / "gpu_state.json"
        self.tmux_tmpdir = self.dir / "tmux"
        self.config_path = self.dir / "sshd_config"
        self.log_path = self.dir / "sshd.log"
        self.pid_path = self.dir / "sshd.pid"
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.authorized_keys_path = self.dir / "authorized_keys"
        self.known_hosts_path = self.dir / "known_hosts"
        try:
            self._prepare(gpus)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        atexit.register(self.close)

    # ----------------------------------------------------------------- set-up

    def _prepare(self, gpus: Sequence[Mapping[str, Any]] | None) -> None:
        self.bin_dir.mkdir()
        self.tmux_tmpdir.mkdir(mode=0o700)
        self._run_keygen(self.host_key_path, "gpuctl-test-host")
        self._run_keygen(self.client_key, "gpuctl-test-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized_keys_path)
        # The host key as "ssh-ed25519 AAAA..." (type and key, no comment).
        self.host_public_key: str = " ".join(
            self.host_key_path.with_suffix(".pub").read_text().split()[:2]
        )
        self.set_gpus(DEFAULT_GPUS if gpus is None else gpus)

        # A real nvidia-smi elsewhere on the machine must not leak in when we ask
        # for none: then PATH becomes the symlink dir, as for python=False.
        real_smi = find_tool("nvidia-smi", system_only=True)
        self._farm = (not self.python) or (not self.nvidia_smi and real_smi is not None)
        if self.nvidia_smi:
            self._write_nvidia_smi_wrapper()
        if self._farm:
            tools = FALLBACK_TOOLS + self._extra_tools
            for name in tools:
                target = find_tool(name, system_only=True)
                if target is not None:
                    (self.bin_dir / name).symlink_to(target)
            if self.python:
                system_python = find_tool("python3", system_only=True)
                (self.bin_dir / "python3").symlink_to(system_python or self._python_exe)
            self.session_path = str(self.bin_dir)
        else:
            self.session_path = os.pathsep.join((str(self.bin_dir), *SYSTEM_PATH))
        self._write_config()
        self.write_known_hosts(self.known_hosts_path)

    def _run_keygen(self, path: Path, comment: str) -> None:
        cmd = [self._keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SshdError(f"{shlex.join(cmd)} failed ({done.returncode}): {done.stderr}")

    def _write_nvidia_smi_wrapper(self) -> None:
        wrapper = self.bin_dir / "nvidia-smi"
        # The default state path is baked in too, so the wrapper also works when run
        # locally (bench scripts) or from an environment that lost the variable.
        wrapper.write_text(
            "#!/bin/sh\n"
            "# gpuctl test pod: the simulated nvidia-smi, by absolute python path so it\n"
            "# works on a PATH without python3.\n"
            f': "${{GPUCTL_SIM_GPU_STATE:={shlex.quote(str(self.gpu_state_path))}}}"\n'
            "export GPUCTL_SIM_GPU_STATE\n"
            f'exec {shlex.quote(self._python_exe)} {shlex.quote(str(SIM_NVIDIA_SMI))} "$@"\n'
        )
        wrapper.chmod(0o755)

    @property
    def session_env(self) -> dict[str, str]:
        """The variables every SSH session gets through ``SetEnv``."""
        env = {
            "PATH": self.session_path,
            "GPUCTL_SIM_GPU_STATE": str(self.gpu_state_path),
            "TMUX_TMPDIR": str(self.tmux_tmpdir),
        }
        if self.isolate_rc:
            env["SHLVL"] = "1"
        env.update(self._extra_env)
        return env

    def _write_config(self) -> None:
        head = list(self._extra_config)
        tail: list[str] = []
        for i, line in enumerate(head):
            if line.strip().lower().startswith("match "):
                head, tail = head[:i], head[i:]
                break
        # A second "Subsystem sftp" is an error, so the caller's one replaces ours.
        has_sftp = any(line.lower().split()[:2] == ["subsystem", "sftp"] for line in head)
        sftp = next((p for p in SFTP_SERVER_CANDIDATES if os.access(p, os.X_OK)), "internal-sftp")
        setenv = " ".join(_setenv_token(k, v) for k, v in self.session_env.items())
        lines = [
            "# Written by tests/support/sshd.py for one test run; checked with sshd -t.",
            *head,
            f"ListenAddress {self.host}:{self.port}",
            "AddressFamily inet",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"AllowUsers {self.user}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PermitUserEnvironment no",
            # Benchmarks open 200+ connections at once; the defaults (10:30:100, 10)
            # would drop them.
            "MaxStartups 4096",
            "MaxSessions 1024",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            f"LogLevel {self._log_level}",
            *([] if has_sftp else [f"Subsystem sftp {sftp}"]),
            # Only the first SetEnv line counts, so every variable is on this one.
            f"SetEnv {setenv}",
            *tail,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self._validated = False

    def _validate(self) -> None:
        if self._validated:
            return
        done = subprocess.run(
            [self._sshd, "-t", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise SshdError(
                f"sshd -t rejected {self.config_path}:\n{done.stderr.strip()}\n"
                f"--- config ---\n{self.config_path.read_text()}"
            )
        self._validated = True

    # ---------------------------------------------------------------- running

    @property
    def running(self) -> bool:
        """Whether the listening sshd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the listening sshd, or None when stopped."""
        return self._proc.pid if self.running and self._proc else None

    def start(self, timeout: float = 10.0) -> SshdServer:
        """Start sshd (again, on the same port) and wait until it sends its banner.

        Raises:
            SshdError: the config is invalid, or sshd exited or stayed silent; the
                message carries its log.
        """
        if self._closed:
            raise SshdError("start() after close()")
        if self.running:
            return self
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            # sshd as root refuses to start without its privilege-separation dir,
            # which systemd normally creates (RuntimeDirectory=sshd).
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._validate()
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(timeout)
                break
            except SshdError:
                # Only the very first start may move: someone took the free port
                # between free_port() and bind(). Later starts must keep the port.
                if attempt + 1 == attempts or "Address already in use" not in self.log_text(20):
                    raise
                self.port = free_port()
                self._write_config()
                self._validate()
                self.write_known_hosts(self.known_hosts_path)
        self._started_once = True
        return self

    def _spawn_and_wait(self, timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            log.write(
                f"=== gpuctl test: starting sshd on port {self.port}; its first"
                " connection is the readiness probe, reset on purpose ===\n".encode()
            )
            log.flush()
            self._proc = subprocess.Popen(
                [self._sshd, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal is the test's, not sshd's
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise SshdError(f"sshd exited with status {code}:\n{self.log_text(30)}")
            try:
                # A banner, not just an open port: proves it is our sshd answering.
                with socket.create_connection((self.host, self.port), timeout=1) as probe:
                    probe.settimeout(max(0.1, deadline - time.monotonic()))
                    if probe.recv(8).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SshdError(f"sshd did not answer within {timeout}s:\n{self.log_text(30)}")
            time.sleep(0.01)

    def stop(self, *, drop_connections: bool = True, timeout: float = 5.0) -> None:
        """Stop sshd; ``start()`` brings it back on the same port with the same keys.

        Args:
            drop_connections: also end every open SSH connection and the commands
                running in them, as a pod reboot or network cut does. With False,
                connections survive, as with ``systemctl restart ssh``. Daemons that
                detached (tmux servers) survive either way.
            timeout: seconds to wait for a graceful exit before SIGKILL.
        """
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            victims: list[int] = []
            if drop_connections:
                # Freeze the listener so it cannot fork a new connection while we
                # list its children (each connection is a child sshd in its own
                # session, so a process-group kill would miss them).
                os.kill(proc.pid, signal.SIGSTOP)
                victims = descendants(proc.pid)
            proc.terminate()
            if drop_connections:
                os.kill(proc.pid, signal.SIGCONT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if victims:
                signal_all(victims, signal.SIGTERM)
                deadline = time.monotonic() + min(timeout, 1.0)
                while time.monotonic() < deadline and any(alive(p) for p in victims):
                    time.sleep(0.01)
                signal_all((p for p in victims if alive(p)), signal.SIGKILL)
        try:
            self.pid_path.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Stop sshd, kill tmux servers started through it, delete the temp dir."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
            self._kill_tmux_servers()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            atexit.unregister(self.close)

    def _kill_tmux_servers(self) -> None:
        tmux = find_tool("tmux")
        if tmux is None or not self.tmux_tmpdir.is_dir():
            return
        for sock in self.tmux_tmpdir.glob("tmux-*/*"):
            subprocess.run(
                [tmux, "-S", str(sock), "kill-server"],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )

    def __enter__(self) -> SshdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SshdServer {self.user}@{self.host}:{self.port} {state} dir={self.dir}>"

    # ------------------------------------------------------------- accessors

    def log_text(self, tail: int | None = None) -> str:
        """sshd's stderr log (all of it, or the last ``tail`` lines), for messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:PORT ssh-ed25519 AAAA...`` for a known_hosts file."""
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    def write_known_hosts(self, path: str | os.PathLike[str]) -> Path:
        """Write a known_hosts file holding only this server's key; returns its path."""
        path = Path(path)
        path.write_text(self.known_hosts_line() + "\n")
        return path

    def set_gpus(self, gpus: Sequence[Mapping[str, Any]], fail: str | None = None) -> None:
        """Replace what the simulated nvidia-smi reports, atomically.

        Args:
            gpus: dicts in sim_nvidia_smi's format (values may be strings like "[N/A]").
            fail: None, or a failure mode such as "driver" or "no-devices".
        """
        state = {"gpus": [dict(g) for g in gpus], "fail": fail}
        tmp = self.gpu_state_path.with_name(f".{self.gpu_state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, self.gpu_state_path)

    def gpu_state(self) -> dict[str, Any]:
        """The current GPU state file, parsed."""
        return json.loads(self.gpu_state_path.read_text())

    def pod_entry(self, name: str, **overrides: Any) -> dict[str, Any]:
        """A gpuctl pod config dict that reaches this server with the pinned host key."""
        entry: dict[str, Any] = {
            "name": name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity": str(self.client_key),
            "host_key": "strict",
        }
        entry.update(overrides)
        return entry

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect`` (key auth, pinned host key)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts_path),
        }
        kwargs.update(overrides)
        return kwargs

    @property
    def destination(self) -> str:
        """``user@127.0.0.1`` for OpenSSH clients (the port goes in :meth:`ssh_options`)."""
        return f"{self.user}@{self.host}"

    def ssh_options(self) -> list[str]:
        """OpenSSH client options that reach this server and ignore ~/.ssh/config.

        Good for ``ssh``, ``scp``, ``sftp`` and ``rsync -e``: the port is passed as
        ``-o Port=`` because ``ssh`` spells the flag ``-p`` and ``scp`` ``-P``.
        """
        return [
            "-F", "/dev/null",
            "-i", str(self.client_key),
            "-o", f"Port={self.port}",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def ssh_argv(self, *command: str) -> list[str]:
        """``ssh ... user@127.0.0.1 COMMAND`` as an argv list."""
        return [find_tool("ssh") or "ssh", *self.ssh_options(), self.destination, *command]

    def tmux_env(self) -> dict[str, str]:
        """Environment that lets a local ``tmux`` reach the tmux servers of this pod."""
        # $TMUX (set when the tests run inside tmux) would win over TMUX_TMPDIR and
        # point tmux at the user's own server.
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        return {**env, "TMUX_TMPDIR": str(self.tmux_tmpdir)}

    def kill_tmux_sessions(self, *names: str) -> None:
        """End these tmux sessions on the pod, where they exist (a test's cleanup).

        Through a local ``tmux`` on the pod's socket (`tmux_env`), not over ssh: the
        result is the same and it costs milliseconds instead of an ssh login (~0.3 s
        a call here, paid in the teardown of many tests). Starting a session still
        goes over ssh, where it gets the pod's environment.
        """
        tmux = find_tool("tmux") or "tmux"
        for name in names:
            subprocess.run([tmux, "kill-session", "-t", f"={name}"], env=self.tmux_env(),
                           capture_output=True, timeout=30, check=False)
