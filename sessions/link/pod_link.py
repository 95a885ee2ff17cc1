"""One pod's way in: its target resolved once, its connection and reconnects, lent to everyone.

Before this, the monitor, every action, the teardown guard and `gpuctl logs` each
resolved the pod's SSH target and opened a connection of their own (a TUI download
resolved it three times and paid two or three handshakes beside the monitor's live
connection), and the monitor kept the reconnect schedule to itself. A `PodLink`
owns all of it:

* `target` is resolved when the link is made (pod entry, then ~/.ssh/config, then
  defaults), so every use reaches exactly the machine `status` shows.
* One live connection per link. `connect()` returns it, or opens it when it is down;
  only one handshake is ever in flight, and whoever asks meanwhile waits for that one.
  The monitor keeps it busy with the agent; `release()` says it dropped. A connection
  still lent to an action is closed only when the action returns, so an agent restart
  never cuts a download short.
* Reconnects with backoff: each failed handshake or drop earns a wait (exponential,
  jittered, reset once a connection stayed up 30 s) that `wait_to_retry()` sits out;
  the monitor and `gpuctl logs -f` call it before asking again. It ends early when an
  action brought the connection up meanwhile.
* `borrow()` lends a `backends.transport.Transport` for one action: new channels on
  the live connection (no handshake). When it is down, the action brings it up now (a
  person asked: no backoff), or joins the handshake in flight, for at most
  `connect_timeout` plus a little; past that it fails with a sentence saying the link
  is reconnecting. The transport fits the pod: exec channels, a PTY shell behind
  RunPod's shell-only proxy, or `sh -c` for `host: local`; callers never ask which.
* A headless command's link has no monitor (`sessions.fleet.facade.Fleet.for_command`):
  the first borrow opens the connection, every later step of the command reuses it,
  and `aclose()` ends it, so a command costs exactly one handshake per pod.
* `start_agent()` starts the telemetry agent on a connection and returns it with the
  transport the monitor runs its own commands on (adopting hand-started sessions).

This is the one module that opens SSH connections (`backends.ssh.connect`). The
OpenSSH client that a large download or `attach` runs is a separate process by design
(`backends.transfer`, `sessions.tmux.commands.attach_argv`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncssh

from backends.agent import AgentChannel
from backends.ssh import Backoff, FailureKind, SshFailure, SshTarget, connect
from backends.transport import LocalTransport, PtyTransport, SshTransport, Transport
from sessions.link import pods
from sessions.link import proxied_ssh
from sessions.config.model import Defaults, PodConfig

STABLE_AFTER_S = 30.0
"""A connection that stayed up this long resets the backoff: its drop is news, not
part of a flapping streak."""
JOIN_GRACE_S = 2.0
"""An action waits for a handshake in flight up to the target's connect timeout plus this."""


class PodLink:
    """The connection, reconnects and transports of one pod (see the module docstring).

    Attributes:
        handshakes: connections this link opened (what the pod's sshd accepted from it).
        last_failure: why the last handshake failed, None after a success.
    """

    def __init__(self, pod: PodConfig, defaults: Defaults):
        self.pod = pod
        self.defaults = defaults
        self.local = pods.is_local(pod)
        self.proxied = not self.local and proxied_ssh.is_proxied(pod)
        self.target: SshTarget | None = None if self.local else pods.ssh_target(pod, defaults)
        self.handshakes = 0
        self.last_failure: SshFailure | None = None
        self._live: asyncssh.SSHClientConnection | None = None
        self._live_since = 0.0
        self._lent: dict[asyncssh.SSHClientConnection, int] = {}
        self._closing: set[asyncssh.SSHClientConnection] = set()
        self._attempt: asyncio.Task[asyncssh.SSHClientConnection] | None = None
        self._backoff = Backoff(base=1.0, cap=60.0)
        self._retry_at = 0.0  # time.monotonic(): the next reconnect is due then
        self._up: asyncio.Event | None = None  # made on first use, inside the running loop

    @property
    def timeout(self) -> float:
        return self.target.command_timeout if self.target is not None else self.defaults.command_timeout

    @property
    def connected(self) -> bool:
        """True while the live connection is up (actions then open no new one)."""
        return self._live is not None and not self._live.is_closed()

    def _up_event(self) -> asyncio.Event:
        if self._up is None:
            self._up = asyncio.Event()
        return self._up

    # -- the live connection and its reconnects ----------------------------------------

    async def connect(self) -> asyncssh.SSHClientConnection:
        """The live connection: the one up, else a new one now (joining a handshake in
        flight rather than starting a second). Raises `SshFailure`; the failure earns
        the next `wait_to_retry()` a longer wait."""
        assert self.target is not None, "a local pod has no connection"
        self._notice_drop()
        if self.connected:
            assert self._live is not None
            return self._live
        if self._attempt is None:
            self._attempt = asyncio.create_task(self._handshake(), name=f"gpuctl-link-{self.pod.name}")
            self._attempt.add_done_callback(_retrieve)
        return await asyncio.shield(self._attempt)

    async def _handshake(self) -> asyncssh.SSHClientConnection:
        assert self.target is not None
        try:
            conn = await connect(self.target)
        except BaseException as exc:
            self._attempt = None
            if isinstance(exc, SshFailure):
                self.last_failure = exc
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            raise
        self._attempt = None
        self.handshakes += 1
        self.last_failure = None
        self._live, self._live_since = conn, time.monotonic()
        self._up_event().set()
        return conn

    async def wait_to_retry(self) -> None:
        """Sit out the backoff the last failed handshake or drop earned (nothing at
        first, nothing while the connection is up); ends early when someone brings the
        connection up meanwhile."""
        self._notice_drop()
        delay = self._retry_at - time.monotonic()
        if delay <= 0 or self.connected:
            return
        up = self._up_event()
        try:
            await asyncio.wait_for(up.wait(), delay)
        except (asyncio.TimeoutError, TimeoutError):
            pass

    def release(self, conn: asyncssh.SSHClientConnection) -> None:
        """`conn` dropped or stopped answering (the monitor says so): close it now, or
        when its last borrower returns, and schedule the reconnect's backoff."""
        if conn is self._live:
            self._forget_live()
        if self._lent.get(conn):
            self._closing.add(conn)
        else:
            conn.close()

    def _forget_live(self) -> None:
        now = time.monotonic()
        if now - self._live_since > STABLE_AFTER_S:
            self._backoff.reset()
        self._retry_at = now + self._backoff.next_delay()
        self._live = None
        self._up_event().clear()

    def _notice_drop(self) -> None:
        """A live connection that closed under us (seen by a borrower, not the
        monitor) is a drop like any other."""
        if self._live is not None and self._live.is_closed():
            self.release(self._live)

    async def aclose(self) -> None:
        """End the link: the handshake in flight and the live connection (a headless
        command's, when it is done)."""
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None
        conn = self._live
        if conn is not None:
            self.release(conn)
            if conn not in self._closing:
                await conn.wait_closed()

    # -- lending -------------------------------------------------------------------

    def transport_on(self, conn: asyncssh.SSHClientConnection) -> Transport:
        """Exec channels of `conn` (an SSH pod that is not behind a shell-only proxy)."""
        assert self.target is not None
        return SshTransport(conn, self.timeout, ssh_argv=self.target.ssh_argv(tty=False))

    async def _open_transport(self, conn: asyncssh.SSHClientConnection) -> Transport:
        if self.proxied:  # RunPod's proxy: a shell, no exec channel
            return await PtyTransport.open(conn, timeout=self.timeout)
        return self.transport_on(conn)

    async def _joined(self) -> asyncssh.SSHClientConnection:
        """The live connection for an action: up now, or brought up within a bound."""
        assert self.target is not None
        if self.connected:
            assert self._live is not None
            return self._live
        limit = self.target.connect_timeout + JOIN_GRACE_S
        try:
            return await asyncio.wait_for(self.connect(), limit)
        except (asyncio.TimeoutError, TimeoutError):
            raise SshFailure(FailureKind.TIMEOUT, f"the link to pod {self.pod.name!r} is reconnecting and "
                             f"was not up within {limit:g}s; try again when the pod shows online") from None

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[Transport]:
        """A transport for one action (see the module docstring); raises `SshFailure`
        when the pod cannot be reached."""
        if self.local:
            yield LocalTransport(self.defaults.command_timeout)
            return
        conn = await self._joined()
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
                if conn in self._closing:
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


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A handshake whose every waiter gave up still had its outcome looked at (no
    'exception was never retrieved' noise)."""
    if not task.cancelled():
        task.exception()


@asynccontextmanager
async def open_transport(pod: PodConfig, defaults: Defaults) -> AsyncIterator[Transport]:
    """A transport on a pod no `Fleet` follows, for one step: a link of its own, one
    connection, closed after (tests and library callers; commands use
    `Fleet.for_command`). Raises `backends.ssh.SshFailure` if unreachable."""
    link = PodLink(pod, defaults)
    try:
        async with link.borrow() as transport:
            yield transport
    finally:
        await link.aclose()
