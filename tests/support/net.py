"""Loopback sockets for network-failure tests: a silent server and a refused port."""

from __future__ import annotations

import atexit
import socket
import threading

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Sockets bound but never listening: a SYN to them gets a RST, and nobody else can
# bind the port while we hold it. Closed at interpreter exit.
_REFUSING: list[socket.socket] = []
atexit.register(lambda: [s.close() for s in _REFUSING])


def refused_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` where a connect fails at once with ConnectionRefusedError.

    The port stays reserved (bound, not listening) until the process exits, so it
    cannot turn into someone's listening port halfway through a test.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _REFUSING.append(sock)
    return sock.getsockname()[1]


class SilentServer:
    """A TCP listener that accepts connections and never sends a byte.

    For connect-timeout tests: an SSH client connects, waits for a banner that never
    comes, and must give up on its own timeout. Use it as a context manager or call
    :meth:`close`; accepted connections stay open until then.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.05)  # the accept loop's polling period: close() is quick
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"SilentServer:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def accepted(self) -> int:
        """How many connections it has accepted so far."""
        return len(self._conns)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    def close(self) -> None:
        """Stop accepting; close the listener and every accepted connection."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
