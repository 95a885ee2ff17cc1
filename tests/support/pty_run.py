"""Run a program on a pseudo-terminal and react to what it prints.

Used by the TUI start-up test and `bench/tui_startup.py`: a TUI only draws for a
terminal, so both need a real pty of a known size, a marker to wait for, and a key
to send once it appears.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time


def run_on_pty(argv: list[str], env: dict[str, str], until: bytes, then: bytes | None = None,
               timeout: float = 30.0, size: tuple[int, int] = (24, 80)):
    """Run `argv` on a `size` (rows, columns) pty; send `then` once `until` was printed.

    Returns (exit status or None if it had to be killed, everything printed, seconds
    from fork until `until` appeared or None).
    """
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    seen = b""
    found_at = None
    deadline = started + timeout
    try:
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                if found_at is None and until in seen:
                    found_at = time.perf_counter() - started
                    if then is not None:
                        os.write(fd, then)
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                return os.waitstatus_to_exitcode(status), seen, found_at
        while time.perf_counter() < deadline:  # the terminal closed: the process is ending
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                return os.waitstatus_to_exitcode(status), seen, found_at
            time.sleep(0.02)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None, seen, found_at
    finally:
        os.close(fd)
