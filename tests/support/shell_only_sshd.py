"""An SSH server that, like RunPod's proxy, offers an interactive shell and nothing else.

Exec requests and subsystems (SFTP) are refused; a shell request gets a real PTY
running a real interactive `bash -i` (readline, prompt, echo: the hard case), in the
given HOME. Any user name is accepted without authentication (RunPod's proxy user
is a routing token). `exec_attempts` counts refused requests, so a test can assert
gpuctl never tried one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import termios
from pathlib import Path

import asyncssh


class ShellOnlyServer:
    """Use as `async with ShellOnlyServer(home) as server:`; `server.port` on 127.0.0.1."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.exec_attempts: list[str] = []
        self._server: asyncssh.SSHAcceptor | None = None
        self._children: list[subprocess.Popen] = []

    async def __aenter__(self) -> "ShellOnlyServer":
        key = asyncssh.generate_private_key("ssh-ed25519")

        class _NoAuth(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return False

        self._server = await asyncssh.create_server(
            _NoAuth, "127.0.0.1", 0, server_host_keys=[key], process_factory=self._handle,
            encoding=None, sftp_factory=None, allow_scp=False, line_editor=False)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        for child in self._children:
            if child.poll() is None:
                child.kill()
                child.wait()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        if process.command is not None or process.subsystem is not None:
            self.exec_attempts.append(process.command or process.subsystem or "")
            process.stderr.write(b"only an interactive shell is available here\n")
            process.exit(1)
            return
        if process.get_terminal_type() is None:
            process.stderr.write(b"a PTY is required\n")
            process.exit(1)
            return
        master, slave = pty.openpty()
        cols, rows = process.get_terminal_size()[:2]
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows or 24, cols or 80, 0, 0))
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "TERM": process.get_terminal_type() or "dumb", "PS1": "root@pod:~# "}
        shell = shutil.which("bash") or "/bin/sh"
        child = subprocess.Popen(
            [shell, "--norc", "-i"] if shell.endswith("bash") else [shell, "-i"],
            stdin=slave, stdout=slave, stderr=slave, cwd=self.home, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        self._children.append(child)
        os.close(slave)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def pty_readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                try:
                    process.stdout.write(data)
                    return
                except (BrokenPipeError, asyncssh.Error):
                    pass  # the client went away
            loop.remove_reader(master)
            done.set()

        loop.add_reader(master, pty_readable)
        try:
            while not done.is_set():
                read = asyncio.ensure_future(process.stdin.read(65536))
                finished = asyncio.ensure_future(done.wait())
                await asyncio.wait({read, finished}, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    data = read.result()
                    if not data:
                        finished.cancel()
                        break
                    os.write(master, data)
                else:
                    read.cancel()
        except (asyncssh.Error, OSError):
            pass
        finally:
            loop.remove_reader(master)
            if child.poll() is None:
                child.kill()
            os.close(master)
            process.exit(0)
