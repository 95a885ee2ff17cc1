"""One asyncio task per pod: ask the link for a connection, stream telemetry, publish snapshots.

A monitor never raises out of `run()`: every failure becomes a state (`offline` with a
reason, `reconnecting`) on the snapshot it publishes, and it keeps asking its pod's
link again, so one broken pod never disturbs the others. The link, not the monitor,
owns the connection and the reconnect backoff (`sessions.link.pod_link`), so an action
borrowing the link during a reconnect sees the same connection the monitor gets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import asyncssh

from backends.agent import AgentChannel, AgentUnavailable
from backends.shell_probe import parse_probe_output, probe_command
from backends.ssh import FailureKind, SshFailure
from backends.transport import LocalTransport, Transport
from sessions.link import pods
from sessions.config.loader import Defaults, PodConfig
from sessions.link.pod_link import PodLink
from sessions.fleet.session_book import SessionBook
from sessions.snapshot import PodSnapshot, PodState, apply_sample, with_state

# Lines of each log read at first connect, so progress (step, rate, loss) shows at once.
_INITIAL_TAIL_LINES = 400
# One-shot commands wait this long after the first sample for logs to answer.
_LOG_GRACE_S = 3.0
# How often a local pod's followed logs are checked (the agent's follow_interval).
_LOCAL_FOLLOW_S = 0.25


class PodMonitor:
    """Follows one pod and publishes a new `PodSnapshot` whenever something changes.

    Attributes:
        settled: set once the first attempt has an outcome (a first sample, or a
            failure), so one-shot commands like `gpuctl status` know when to print.
    """

    def __init__(self, pod: PodConfig, defaults: Defaults, publish: Callable[[PodSnapshot], None],
                 link: PodLink | None = None, config: Any = None):
        self.pod = pod
        # The pod's connection lives in its link, which lends it to actions too.
        self.link = link or PodLink(pod, defaults)
        self._defaults = defaults
        self._publish_cb = publish
        self._interval = pods.interval(pod, defaults)
        self._agent: AgentChannel | None = None
        # The whole config, for its top-level policies: the stall threshold lives there.
        self.book = SessionBook(pod, config)
        self._runner: Transport | None = None
        self._adoptions: set[asyncio.Task] = set()
        self._ever_online = False
        self.settled = asyncio.Event()
        host = pod.host
        self._target = self.link.target
        if self._target is not None:
            host = self._target.display
        self.snapshot = PodSnapshot(name=pod.name, host=host, price_per_hour=pod.price_per_hour)

    # -- publishing ---------------------------------------------------------------

    def _publish(self, snapshot: PodSnapshot) -> None:
        self.snapshot = snapshot
        self._publish_cb(snapshot)

    def _set_state(self, state: str, **changes: Any) -> None:
        self._publish(with_state(self.snapshot, state=state, **changes))

    def _on_sample(self, sample: dict[str, Any], transport: str) -> None:
        fresh = self.book.on_tmux(sample.get("tmux") or [])
        self._adopt(fresh, sample.get("tmux") or [])
        self._request_follows()
        snap = apply_sample(self.snapshot, sample)
        self._ever_online = True
        self._publish(with_state(
            snap, state=PodState.ONLINE, error=None, error_kind=None, transport=transport,
            sessions=self.book.view(time.time()),
        ))
        if not self.settled.is_set():
            if self.book.waiting_for_first_log():
                asyncio.get_running_loop().call_later(_LOG_GRACE_S, self.settled.set)
            else:
                self.settled.set()

    def _on_log(self, message: dict[str, Any]) -> None:
        if self.book.on_log(message, time.time()) is None:
            return
        self._publish(with_state(self.snapshot, sessions=self.book.view(time.time())))
        if self._ever_online and not self.book.waiting_for_first_log():
            self.settled.set()

    def _on_trackers(self, message: dict[str, Any]) -> None:
        if self.book.on_trackers(message) is None:
            return
        self._publish(with_state(self.snapshot, sessions=self.book.view(time.time())))
        if self._ever_online and not self.book.waiting_for_first_log():
            self.settled.set()

    def _on_checkpoints(self, message: dict[str, Any]) -> None:
        if self.book.on_checkpoints(message) is not None:
            self._publish(with_state(self.snapshot, sessions=self.book.view(time.time())))

    def _adopt(self, fresh: list[str], tmux: list[dict[str, Any]]) -> None:
        """Capture the panes of running sessions gpuctl did not start, so their
        log and progress show too (`tmux new -s train` by hand is the common case)."""
        from sessions.tmux.control import adopt

        if self._runner is None:
            return
        running = {t.get("name") for t in tmux if t.get("state", "running") == "running"}
        for name in fresh:
            if name in running and self.book.uses_default_log(name):
                task = asyncio.create_task(self._adopt_one(adopt, name))
                self._adoptions.add(task)
                task.add_done_callback(self._adoptions.discard)

    async def _adopt_one(self, adopt: Any, name: str) -> None:
        try:
            await adopt(self._runner, name, pod_name=self.pod.name)
        except Exception:  # noqa: BLE001 - adoption is a convenience; the session still shows
            pass

    def _request_follows(self) -> None:
        if self._agent is None:
            return
        for command in self.book.follow_requests(_INITIAL_TAIL_LINES):
            self._agent.send(command)

    def _on_failure(self, failure: SshFailure) -> None:
        self._set_state(PodState.OFFLINE, error=failure.message, error_kind=failure.kind)
        self.settled.set()

    # -- control ------------------------------------------------------------------

    def request_sample(self) -> None:
        """Ask the agent for a sample now (it also re-lists tmux sessions)."""
        if self._agent is not None:
            try:
                self._agent.send({"cmd": "sample"})
            except (OSError, asyncssh.Error):
                pass

    def set_interval(self, seconds: float) -> None:
        """Change the telemetry interval; takes effect on the agent immediately."""
        self._interval = seconds
        if self._agent is not None:
            try:
                self._agent.send({"cmd": "interval", "seconds": seconds})
            except (OSError, asyncssh.Error):
                pass  # the reader notices the dead channel and reconnects

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Follow the pod until cancelled."""
        if self._target is None:
            await self._run_local()
            return
        while True:
            # The backoff the link's last failed handshake or drop earned (none at
            # first); it ends early when an action brought the connection up meanwhile.
            await self.link.wait_to_retry()
            attempts = self.snapshot.attempts + 1
            state = PodState.RECONNECTING if self._ever_online else PodState.CONNECTING
            if self.snapshot.state == PodState.OFFLINE:
                state = PodState.OFFLINE  # keep showing why while we retry
            self._set_state(state, attempts=attempts)
            try:
                conn = await self.link.connect()
            except SshFailure as refused:
                self._on_failure(refused)
                continue
            try:
                await self._stream(conn)
                failure = SshFailure(FailureKind.LOST, "the agent stopped (channel closed)")
            except SshFailure as exc:
                failure = exc
            except (asyncssh.Error, OSError) as exc:
                failure = SshFailure(FailureKind.LOST, f"connection lost: {exc}")
            finally:
                self._agent = None
                self._runner = None
                self.link.release(conn)  # the link closes it (after any borrower) and schedules the retry
            if self._ever_online:
                self._set_state(PodState.RECONNECTING, error=failure.message, error_kind=failure.kind)
            else:
                self._on_failure(failure)

    async def _stream(self, conn: asyncssh.SSHClientConnection) -> None:
        options = {"interval": self._interval, "disk_path": pods.disk_path(self.pod)}
        try:
            self._runner, agent = await self.link.start_agent(conn, options)
        except AgentUnavailable:
            self._runner = self.link.transport_on(conn)
            await self._poll_with_probe(self._runner)
            return
        self._agent = agent
        self.book.agent_restarted()
        self._request_follows()
        try:
            while True:
                # A healthy agent speaks every interval; silence for several intervals
                # means a hung pod or a half-open TCP connection.
                silence_limit = max(10.0, 5 * self._interval)
                try:
                    message = await _read_within(agent, silence_limit)
                except (asyncio.TimeoutError, TimeoutError):
                    raise SshFailure(FailureKind.TIMEOUT, f"no telemetry for {silence_limit:g}s") from None
                if message is None:
                    return
                kind = message.get("kind")
                if kind == "sample":
                    self._on_sample(message, "agent")
                elif kind == "log":
                    self._on_log(message)
                elif kind == "trackers":
                    self._on_trackers(message)
                elif kind == "checkpoints":
                    self._on_checkpoints(message)
        finally:
            agent.close()

    async def _poll_with_probe(self, transport: Transport) -> None:
        """No python3 on the pod: one run of the shell probe per tick."""
        command = probe_command(pods.disk_path(self.pod))
        seq = 0
        while True:
            tick = time.monotonic()
            result = await transport.run(command, timeout=self.link.timeout)
            sample = parse_probe_output(result.stdout, seq=seq, t=time.time())
            seq += 1
            self._on_sample(sample, "exec")
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - tick)))

    async def _run_local(self) -> None:
        """`host: local`: read NVML / nvidia-smi and tmux on this machine, no SSH.

        Logs are followed in-process with the agent's own follower, checked as often
        as the agent checks them; telemetry is sampled every interval.
        """
        from backends.local import LocalFollows, LocalSampler

        sampler = LocalSampler(disk_path=pods.disk_path(self.pod))
        follows = LocalFollows()
        self._runner = LocalTransport(self._defaults.command_timeout)
        next_sample = time.monotonic()
        try:
            while True:
                # Logs and tracker files first: on the first pass they answer before the
                # first sample settles the monitor, so one-shot commands show them.
                commands = self.book.follow_requests(_INITIAL_TAIL_LINES)
                messages = await asyncio.to_thread(_local_follow_step, follows, commands)
                for message in messages:
                    if message.get("kind") == "log":
                        self._on_log(message)
                    elif message.get("kind") == "trackers":
                        self._on_trackers(message)
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + self._interval
                    try:
                        sample = await asyncio.to_thread(sampler.sample)
                    except Exception as exc:  # noqa: BLE001 - a sampling bug must not kill the monitor
                        self._on_failure(SshFailure(FailureKind.OTHER, f"local sampling failed: {exc}"))
                    else:
                        self._on_sample(sample, "local")
                await asyncio.sleep(min(_LOCAL_FOLLOW_S, max(0.0, next_sample - time.monotonic())))
        finally:
            follows.close()
            sampler.close()


async def _read_within(agent: AgentChannel, seconds: float) -> dict[str, Any] | None:
    """`agent.read()` bounded in time, without `wait_for`'s lost-cancellation race on
    3.11 (gh-86296) where `asyncio.timeout` exists."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await agent.read()
    return await asyncio.wait_for(agent.read(), seconds)  # Python 3.10


def _local_follow_step(follows: Any, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start requested follows, then check all of them once (runs in a thread)."""
    messages = []
    for command in commands:
        messages.extend(follows.start(command))
    messages.extend(follows.check())
    return messages
