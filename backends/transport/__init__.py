"""How gpuctl runs anything on a pod: one `Transport` protocol, three implementations.

* `SshTransport` (`ssh_exec.py`): exec channels of an asyncssh connection.
* `PtyTransport` (`pty.py`): one interactive PTY shell (RunPod's shell-only proxy).
* `LocalTransport` (`local.py`): `sh -c` on this machine (`host: local`).

Connections are opened and owned by `sessions.link.pod_link`; a transport only borrows one.
"""

from backends.transport.base import CommandResult, Fetcher, Transport, TransportUnsupported
from backends.transport.local import LocalTransport
from backends.transport.pty import PtyTransport
from backends.transport.ssh_exec import SshTransport

__all__ = ["CommandResult", "Fetcher", "LocalTransport", "PtyTransport", "SshTransport", "Transport",
           "TransportUnsupported"]
