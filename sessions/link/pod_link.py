"""One pod's way in: its target resolved once, its connection, lent to everyone.

Before this, the monitor, every action, the teardown guard and `gpuctl logs` each
resolved the pod's SSH target and opened a connection of their own (a TUI download
resolved it three times and paid two or three handshakes beside the monitor's live
connection). A `PodLink` does both once:

* `target` is resolved when the link is made (pod entry, then ~/.ssh/config, then
  defaults), so every use reaches exactly the machine `status` shows.
* `connect()` opens the connection the monitor keeps (and reopens after a drop);
  `release()` gives it up. A connection still lent to an action is closed only when
  the action returns, so an agent restart never cuts a download short.
* `borrow()` lends a `backends.transport.Transport` for one action: new channels on
  the live connection when there is one (no handshake), otherwise a connection for
  this action alone, closed after. A headless command's link has no monitor, so the
  command opens exactly one connection. The transport fits the pod: exec channels,
  a PTY shell behind RunPod's shell-only proxy, or `sh -c` for `host: local`; callers
  never ask which.
* `start_agent()` starts the telemetry agent on a connection and returns it with the
  transport the monitor runs its own commands on (adopting hand-started sessions).

This is the one module that opens SSH connections (`backends.ssh.connect`). The
OpenSSH client that a large download or `attach` runs is a separate process by design
(`backends.transfer`, `sessions.tmux.commands.attach_argv`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncssh

from backends.agent import AgentChannel
from backends.ssh import SshTarget, connect
from backends.transport import LocalTransport, PtyTransport, SshTransport, Transport
from sessions.link import pods
from sessions.link import proxied_ssh
from sessions.config.model import Defaults, PodConfig


class PodLink:
    """The connection and transports of one pod (see the module docstring)."""

    def __init__(self, pod: PodConfig, defaults: Defaults):
        self.pod = pod
        self.defaults = defaults
        self.local = pods.is_local(pod)
        self.proxied = not self.local and proxied_ssh.is_proxied(pod)
        self.target: SshTarget | None = None if self.local else pods.ssh_target(pod, defaults)
        self._live: asyncssh.SSHClientConnection | None = None
        self._lent: dict[asyncssh.SSHClientConnection, int] = {}
        self._closing: set[asyncssh.SSHClientConnection] = set()

    @property
    def timeout(self) -> float:
        return self.target.command_timeout if self.target is not None else self.defaults.command_timeout

    @property
    def connected(self) -> bool:
        """True while the monitor's connection is up (actions then open no new one)."""
        return self._live is not None and not self._live.is_closed()

    async def connect(self) -> asyncssh.SSHClientConnection:
        """Open the pod's live connection, replacing one that dropped; raises `SshFailure`."""
        assert self.target is not None, "a local pod has no connection"
        if self._live is not None:
            self.release(self._live)
        conn = await connect(self.target)
        self._live = conn
        return conn

    def release(self, conn: asyncssh.SSHClientConnection) -> None:
        """The monitor is done with `conn`: close it now, or when its last borrower returns."""
        if conn is self._live:
            self._live = None
        if self._lent.get(conn):
            self._closing.add(conn)
        else:
            conn.close()

    def transport_on(self, conn: asyncssh.SSHClientConnection) -> Transport:
        """Exec channels of `conn` (an SSH pod that is not behind a shell-only proxy)."""
        assert self.target is not None
        return SshTransport(conn, self.timeout, ssh_argv=self.target.ssh_argv(tty=False))

    async def _open_transport(self, conn: asyncssh.SSHClientConnection) -> Transport:
        if self.proxied:  # RunPod's proxy: a shell, no exec channel
            return await PtyTransport.open(conn, timeout=self.timeout)
        return self.transport_on(conn)

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[Transport]:
        """A transport for one action (see the module docstring); raises `SshFailure`
        when the pod cannot be reached."""
        if self.local:
            yield LocalTransport(self.defaults.command_timeout)
            return
        conn = self._live if self.connected else None
        own = conn is None
        if conn is None:
            assert self.target is not None
            conn = await connect(self.target)
        self._lent[conn] = self._lent.get(conn, 0) + 1
        try:
            transport = await self._open_transport(conn)
            try:
                yield transport
            finally:
                transport.close()
        finally:
            self._lent[conn] -= 1
            if not self._lent[conn]:
                del self._lent[conn]
                if own or conn in self._closing:
                    self._closing.discard(conn)
                    conn.close()
                    await conn.wait_closed()

    async def start_agent(self, conn: asyncssh.SSHClientConnection, options: dict[str, Any]
                          ) -> tuple[Transport | None, AgentChannel]:
        """(a transport for the monitor's own commands, the running agent) on `conn`.

        Behind a shell-only proxy the agent takes the first shell and commands get a
        second (None when the proxy refuses one: telemetry still flows). Raises
        `AgentUnavailable` (no python3: the caller falls back to the shell probe) or
        `SshFailure`.
        """
        if self.proxied:
            return await proxied_ssh.start(conn, options, timeout=self.timeout)
        transport = self.transport_on(conn)
        return transport, await transport.start_agent(options, timeout=self.timeout)


@asynccontextmanager
async def open_transport(pod: PodConfig, defaults: Defaults) -> AsyncIterator[Transport]:
    """A transport for one action on a pod no `Fleet` follows (headless commands):
    one connection, closed after. Raises `backends.ssh.SshFailure` if unreachable."""
    async with PodLink(pod, defaults).borrow() as transport:
        yield transport
