"""Pin a test pod's host key where gpuctl looks for it (pytest-free, for bench/ too)."""

from __future__ import annotations

from sessions.config.paths import gpuctl_known_hosts_path
from tests.support.sshd import SshdServer


def trust(server: SshdServer) -> None:
    """Add the server's host key to gpuctl's own known_hosts (under XDG_DATA_HOME),
    so pods with `host_key: strict` connect to it."""
    path = gpuctl_known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(server.known_hosts_line() + "\n")
