"""The demo pods' SSH servers: asyncssh on 127.0.0.1, one per pod, so the demo exercises
the very SSH, agent, SFTP and tmux code paths a real pod does.

What each server does, and why:

* **Loopback only, one client key.** It listens on 127.0.0.1 (never another address),
  offers only public-key authentication, and accepts only the demo's own generated
  client key for the local user's name. Its host key is generated per run and pinned
  in the demo's known_hosts, so gpuctl connects with ``host_key: strict``.
* **Commands run as on a pod.** An exec request runs ``<login shell> -c COMMAND`` as a
  subprocess of this process (so as the local user) with cwd = the pod's home and the
  pod's environment (`Sandbox.environment`: HOME, PATH with the simulated nvidia-smi,
  a private TMUX_TMPDIR). stdin, stdout and stderr are wired to the channel, the exit
  status (or the signal) goes back, and when the channel closes before the command
  ends its process group is hung up and then killed, so no agent outlives its
  connection. A tmux server started by a command detaches into its own session and
  keeps running, as on a real machine.
* **PTYs.** A client that asks for a terminal (``ssh -t POD tmux attach``) gets a real
  pseudo-terminal as the command's controlling terminal, resized on window changes.
* **SFTP** is served on the real paths (so a path the agent reports is the path a
  download asks for), relative paths from the pod's home, and any path that resolves
  outside the pod's sandbox is refused, symlinks included.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import posixpath
import signal
import struct
import sys
import termios
from pathlib import Path
from typing import Any

import asyncssh

from backends.demo.sandbox import Sandbox, login_shell

LOOPBACK = "127.0.0.1"

# Run in the child between setsid() and the shell: make the pty its controlling terminal,
# which job control and SIGWINCH delivery need (tmux attach relies on both).
_PTY_HELPER = "import fcntl,os,sys,termios;fcntl.ioctl(0,termios.TIOCSCTTY,0);os.execvp(sys.argv[1],sys.argv[1:])"
_DRAIN_AFTER_EXIT_S = 1.0
_KILL_GRACE_S = 1.0


def _set_winsize(fd: int, width: int, height: int, pixwidth: int = 0, pixheight: int = 0) -> None:
    if width and height:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class SandboxSFTPServer(asyncssh.SFTPServer):
    """SFTP on the pod's real paths, refusing anything outside its sandbox.

    Not asyncssh's chroot: that would rename every path (``/`` would be the sandbox),
    and the paths the agent and the shell report would not be the paths SFTP serves.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel, *, root: Path, home: Path):
        super().__init__(chan)
        self._root = os.fsencode(os.path.realpath(root))
        self._home = os.fsencode(home)

    def _inside(self, local: bytes) -> bool:
        real = os.path.realpath(local)
        return real == self._root or real.startswith(self._root + b"/")

    def map_path(self, path: bytes) -> bytes:
        local = posixpath.normpath(posixpath.join(self._home, path))
        if not self._inside(local):
            raise asyncssh.SFTPPermissionDenied("outside this demo pod's files")
        return local

    def reverse_map_path(self, path: bytes) -> bytes:
        return path

    def symlink(self, oldpath: bytes, newpath: bytes) -> Any:
        target = posixpath.join(posixpath.dirname(self.map_path(newpath)), oldpath)
        if not self._inside(posixpath.normpath(target)):
            raise asyncssh.SFTPPermissionDenied("a link may not point outside this demo pod's files")
        return super().symlink(oldpath, newpath)


class _Gate(asyncssh.SSHServer):
    """Public-key authentication for one user and one key; tracks open connections."""

    def __init__(self, owner: "PodSshServer"):
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._owner.user and key.public_data == self._owner.client_key.public_data


class PodSshServer:
    """One demo pod's SSH server (see the module docstring).

    Args:
        sandbox: the pod's folders and environment.
        host_key: the server's private host key.
        client_key: the one public key allowed in.
        user: the one user name allowed in (the local user, whom commands run as).
    """

    def __init__(self, sandbox: Sandbox, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey, user: str):
        self.sandbox = sandbox
        self.host_key = host_key
        self.client_key = client_key
        self.user = user
        self.port: int | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._groups: set[int] = set()
        self._env = sandbox.environment(user)
        self._shell = login_shell()

    @property
    def running(self) -> bool:
        """Whether it accepts connections."""
        return self._acceptor is not None

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def addresses(self) -> list[tuple]:
        """The (host, port, ...) tuples it listens on; empty when stopped."""
        return self._acceptor.get_addresses() if self._acceptor is not None else []

    async def start(self, port: int | None = None) -> int:
        """Listen on 127.0.0.1 (`port`, else the previous one, else a free one); returns the port."""
        if self._acceptor is not None:
            return self.port  # type: ignore[return-value]
        want = port if port is not None else (self.port or 0)
        sandbox = self.sandbox
        self._acceptor = await asyncssh.create_server(
            lambda: _Gate(self), LOOPBACK, want,
            server_host_keys=[self.host_key],
            process_factory=self._serve,
            sftp_factory=lambda chan: SandboxSFTPServer(chan, root=sandbox.root, home=sandbox.home),
            encoding=None,
            line_editor=False,  # bytes go to the pty untouched; the pty does the editing
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            gss_host=None,
            reuse_address=True,
        )
        self.port = self._acceptor.get_port()
        return self.port

    async def stop(self) -> None:
        """Stop listening, drop every connection and end every command it started."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        if acceptor is not None:
            # From Python 3.12 on this also waits for the open connections, hence after abort().
            try:
                await asyncio.wait_for(acceptor.wait_closed(), 5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        await self._end_groups(list(self._groups))

    async def _end_groups(self, groups: list[int]) -> None:
        for pgid in groups:
            _signal_group(pgid, signal.SIGHUP)
            _signal_group(pgid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + _KILL_GRACE_S
        while groups and asyncio.get_running_loop().time() < deadline:
            groups = [g for g in groups if _group_alive(g)]
            if groups:
                await asyncio.sleep(0.05)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)

    # -- one channel ----------------------------------------------------------------

    async def _serve(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        argv = [self._shell, "-c", command] if command is not None else [self._shell, "-i"]
        try:
            if process.get_terminal_type():
                code = await self._run_pty(process, argv)
            else:
                code = await self._run_pipes(process, argv)
        except OSError as exc:
            process.stderr.write(f"gpuctl demo pod: cannot run the command: {exc}\n".encode())
            code = 127
        _finish(process, code)

    async def _spawn(self, argv: list[str], env: dict[str, str], **streams: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(self.sandbox.home), env=env, start_new_session=True, **streams
        )
        self._groups.add(proc.pid)
        return proc

    async def _run_pipes(self, process: asyncssh.SSHServerProcess, argv: list[str]) -> int | None:
        PIPE = asyncio.subprocess.PIPE
        proc = await self._spawn(argv, self._env, stdin=PIPE, stdout=PIPE, stderr=PIPE)

        async def feed() -> None:
            assert proc.stdin is not None
            try:
                while True:
                    try:
                        data = await process.stdin.read(65536)
                    except asyncssh.SignalReceived as exc:
                        _signal_group(proc.pid, getattr(signal, f"SIG{exc.signal}", signal.SIGTERM))
                        continue
                    except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                        continue
                    if not data:
                        break
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except (OSError, asyncssh.Error):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        async def pump(source: asyncio.StreamReader | None, sink: asyncssh.SSHWriter) -> None:
            assert source is not None
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncssh.Error):
                pass

        feeder = asyncio.create_task(feed())
        pumps = [asyncio.create_task(pump(proc.stdout, process.stdout)),
                 asyncio.create_task(pump(proc.stderr, process.stderr))]
        return await self._supervise(process, proc, pumps, [feeder])

    async def _run_pty(self, process: asyncssh.SSHServerProcess, argv: list[str]) -> int | None:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        width, height, pixwidth, pixheight = process.get_terminal_size()
        _set_winsize(slave, width, height, pixwidth, pixheight)
        env = {**self._env, "TERM": process.get_terminal_type() or "xterm"}
        try:
            proc = await self._spawn([sys.executable, "-S", "-c", _PTY_HELPER, *argv], env,
                                     stdin=slave, stdout=slave, stderr=slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        output: asyncio.Queue[bytes | None] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: every holder of the pty's other end has closed it
                data = b""
            if not data:
                loop.remove_reader(master)
            output.put_nowait(data or None)

        loop.add_reader(master, readable)

        async def feed() -> None:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as exc:
                    _set_winsize(master, exc.width, exc.height, exc.pixwidth, exc.pixheight)
                    continue
                except asyncssh.BreakReceived:
                    data = b"\x03"
                except asyncssh.SignalReceived as exc:
                    _signal_group(proc.pid, getattr(signal, f"SIG{exc.signal}", signal.SIGTERM))
                    continue
                except (OSError, asyncssh.Error):
                    return
                if not data:
                    return
                while data:
                    try:
                        data = data[os.write(master, data):]
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
                    except OSError:
                        return

        async def pump() -> None:
            try:
                while (data := await output.get()) is not None:
                    process.stdout.write(data)
                    await process.stdout.drain()
            except (OSError, asyncssh.Error):
                pass

        try:
            return await self._supervise(process, proc, [asyncio.create_task(pump())],
                                         [asyncio.create_task(feed())])
        finally:
            loop.remove_reader(master)
            os.close(master)

    async def _supervise(self, process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process,
                         pumps: list[asyncio.Task], others: list[asyncio.Task]) -> int | None:
        """Wait for the command or the channel, whichever ends first.

        The command ended: forward what is left of its output, then its status. The
        channel closed first (client gone, connection dropped): hang the command up.
        """
        exited = asyncio.create_task(proc.wait())
        closed = asyncio.create_task(process.channel.wait_closed())
        try:
            await asyncio.wait({exited, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._end_groups([proc.pid])
                await exited
            else:
                # Output still in the pipes comes first; a daemon that kept them open
                # (`cmd &`) must not hold the status back for long.
                await asyncio.wait(pumps, timeout=_DRAIN_AFTER_EXIT_S)
            return proc.returncode
        finally:
            self._groups.discard(proc.pid)
            for task in (*pumps, *others, closed):
                task.cancel()
            await asyncio.gather(*pumps, *others, closed, return_exceptions=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finish(process: asyncssh.SSHServerProcess, code: int | None) -> None:
    """Send the exit status, or the signal that ended the command, as sshd does."""
    try:
        if code is not None and code < 0:
            name = signal.Signals(-code).name[3:]
            process.exit_with_signal(name)
        else:
            process.exit(code if code is not None else 255)
    except (OSError, asyncssh.Error, ValueError):
        pass
