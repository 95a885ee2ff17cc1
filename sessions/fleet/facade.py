"""The Fleet: every pod's monitor, and one subscription API for all front ends.

The TUI and the headless commands are two views over this object; neither holds
logic the other lacks. Both act on pods through its methods (here and in
`sessions.fleet.operations`): the TUI and `gpuctl watch` on a Fleet that follows its
pods, a headless command on `Fleet.for_command(config, pods)`, which follows nothing
and opens one connection per pod for the whole command.

Subscribers get the *latest* fleet snapshot when something changed, never a backlog:
a slow renderer skips intermediate states instead of falling behind (the same idea as
Textual's `can_replace` messages).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from typing import AsyncIterator

from sessions.config.loader import Config
from sessions.errors import SshFailure
from sessions.events import EventStream, WatchEvent
from sessions.fleet.connection_news import ConnectionNews
from sessions.fleet.monitor import PodMonitor
from sessions.fleet.operations import Operations
from sessions.link.pod_link import PodLink
from sessions.providers import lifecycle
from sessions.providers.poller import ProviderPoller
from sessions.slurm.poller import SlurmPoller
from sessions.snapshot import FleetSnapshot, PodSnapshot, PodState, with_state
from sessions.providers.spend import SpendBook, default_path


class Subscription:
    """An async iterator of fleet snapshots, each yielded after at least one change."""

    def __init__(self, fleet: "Fleet"):
        self._fleet = fleet
        self._changed = asyncio.Event()
        self._changed.set()  # the first iteration yields the current state at once

    def _notify(self) -> None:
        self._changed.set()

    def __aiter__(self) -> AsyncIterator[FleetSnapshot]:
        return self

    async def __anext__(self) -> FleetSnapshot:
        await self._changed.wait()
        self._changed.clear()
        return self._fleet.snapshot()

    def close(self) -> None:
        """Stop receiving updates."""
        self._fleet._subscriptions.discard(self)


class Fleet(Operations):
    """Follows every pod of a config concurrently.

    Use as `async with Fleet(config) as fleet:`; the monitors stop and the links close
    on exit. `follow=False` (`for_command`): no monitors, no provider polling, links only.
    `slurm_jobs`: also look at the jobs of `kind: slurm` pods every 30 s (`self.slurm`), for
    the TUI; `status --json` reads them once itself, and `watch` has no use for them.
    """

    def __init__(self, config: Config, pod_names: list[str] | None = None, *, follow: bool = True,
                 slurm_jobs: bool = False):
        self.config = config
        self.follows = follow
        selected = [p for p in config.pods if pod_names is None or p.name in pod_names]
        # Price, spend and preemption from the providers: a task of its own, so a slow
        # API never delays telemetry (sessions/providers/poller.py).
        self.providers = ProviderPoller(selected, self._on_provider_change)
        # One link per pod: the monitor's connection, lent to every action on the pod
        # (sessions/link/pod_link.py), so a `d` in the TUI needs no new handshake.
        self.links = {p.name: PodLink(p, config.defaults) for p in selected}
        self._monitors = {p.name: PodMonitor(p, config.defaults, self._on_update, self.links[p.name], config)
                          for p in selected} if follow else {}
        # The jobs of `kind: slurm` pods, looked at every 30 s over their links (sessions/slurm/poller.py).
        self.slurm = SlurmPoller(selected if slurm_jobs else [], self.borrow, self._on_provider_change,
                                 timeout=config.defaults.command_timeout)
        # Spend is accumulated and kept per pod (sessions/providers/spend.py), so it never goes
        # down when a pod stops or gpuctl restarts; pods dropped from the config are forgotten.
        self.spend = SpendBook(default_path(config.path), [p.name for p in config.pods])
        # gpuctl's own stops and teardowns, shown at once (sessions/providers/lifecycle.py)
        self._own: dict[str, lifecycle.OwnAction] = {}
        # the stop or teardown gpuctl has in flight per pod: its link dropping is that, not an outage
        self._acting: dict[str, str] = {}
        self._pods: dict[str, PodSnapshot] = {name: self._settled(m.snapshot) for name, m in self._monitors.items()}
        self._cached: FleetSnapshot | None = None
        self._subscriptions: set[Subscription] = set()
        self._tasks: list[asyncio.Task] = []
        # The one stream of domain events (sessions/events.py): the Watcher and this Fleet's
        # operations publish; watch's output, notify targets, toasts and the checkpoint pane listen.
        self.events = EventStream()
        # Each pod state change told on it once, by the Fleet, for every front end
        # (sessions/fleet/connection_news.py).
        self.news = ConnectionNews()

    @classmethod
    def for_command(cls, config: Config, pod_names: list[str]) -> "Fleet":
        """A Fleet for one headless command on `pod_names`: no monitor, no polling. Each
        pod's link opens its connection at the first step that needs it, every later
        step reuses it, and leaving `async with` closes it: one handshake per pod."""
        return cls(config, pod_names, follow=False)

    async def __aenter__(self) -> "Fleet":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Start one monitor task per pod (nothing for a command's Fleet)."""
        if not self.follows:
            return
        for name, monitor in self._monitors.items():
            self._tasks.append(asyncio.create_task(monitor.run(), name=f"gpuctl-pod-{name}"))
        self._tasks.append(asyncio.create_task(self.providers.run(), name="gpuctl-providers"))
        if self.slurm.pods:
            self._tasks.append(asyncio.create_task(self.slurm.run(), name="gpuctl-slurm"))

    async def stop(self, patience: float = 0.5) -> None:
        """Cancel every monitor and wait until they have really ended.

        On Python 3.11 `asyncio.wait_for` can swallow a cancellation that races with
        the awaited read completing (CPython gh-86296), leaving a monitor running, so
        the cancellation is repeated every `patience` seconds until each task is done.
        """
        pending = {task for task in self._tasks if not task.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=patience)
        for task in self._tasks:
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not warn about it
        self._tasks.clear()
        for link in self.links.values():
            await link.aclose()
        if self.follows:
            self.spend.flush()

    def _with_spend(self, snapshot: PodSnapshot) -> PodSnapshot:
        """The snapshot's spend from the pod's ledger, not from this sample alone."""
        from sessions.providers.ops import ended_by_gpuctl_at

        since, source = self.providers.running_since(snapshot)
        pod = self._monitors[snapshot.name].pod if snapshot.name in self._monitors else None
        ledger = self.spend.record(snapshot.name, snapshot.price_per_hour, since, source,
                                   until=ended_by_gpuctl_at(pod.provider if pod is not None else None))
        if ledger is None:
            return with_state(snapshot, spend_usd=None)
        return with_state(snapshot, spend_usd=ledger.total, spend_since=ledger.since, spend_from=ledger.source)

    def _settled(self, snapshot: PodSnapshot) -> PodSnapshot:
        """The monitor's snapshot as every view shows it: the state decided once
        (`lifecycle.settle`), then price and projection, then spend from the ledger."""
        view, own = self.providers.views.get(snapshot.name), self._own.get(snapshot.name)
        if lifecycle.wants_poll(snapshot.state, view, own):
            self.providers.poll_now()  # SSH answers a pod gpuctl stopped: started again? ask now
        return self._with_spend(self.providers.apply(lifecycle.settle(
            snapshot, view, own, self._monitors[snapshot.name].pod)))

    def _on_update(self, snapshot: PodSnapshot) -> None:
        snapshot = self._settled(snapshot)
        before = self._pods.get(snapshot.name)
        self._pods[snapshot.name] = snapshot
        self._cached = None
        news = self.news.change(before, snapshot, self._acting.get(snapshot.name))
        if news is not None:  # told before subscribers see the snapshot, as the Watcher told it
            self._tell(news)
        for sub in self._subscriptions:
            sub._notify()

    def _tell(self, event: WatchEvent) -> None:
        """Publish what this Fleet did or saw: a consumer's failure is its own (every
        other consumer was told; `gpuctl watch` ends itself on a closed stdout) and must
        not reach a monitor, which would take it for a lost link, nor turn an operation
        that was done into one reported failed."""
        try:
            self.events.publish(event)
        except Exception:  # noqa: BLE001 - see the docstring
            pass

    def snapshot(self) -> FleetSnapshot:
        """The newest snapshot of every pod, in config order."""
        if self._cached is None:
            self._cached = FleetSnapshot(pods=tuple(self._pods.values()))
        return self._cached

    def subscribe(self) -> Subscription:
        """Updates as an async iterator; call `close()` on it when done."""
        sub = Subscription(self)
        self._subscriptions.add(sub)
        return sub

    async def wait_settled(self, timeout: float | None = None) -> FleetSnapshot:
        """Wait until every pod has answered or failed its first attempt.

        Each pod's first attempt is bounded by its own connect timeout, so a dead pod
        never delays the others beyond that; `timeout` is an overall safety net.
        """
        waits: list[asyncio.Task[object]] = [asyncio.create_task(m.settled.wait()) for m in self._monitors.values()]
        waits.append(asyncio.create_task(self.providers.settled()))
        if waits:
            done, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()
        return self.snapshot()

    # -- actions: the same calls the headless commands make, for the TUI --------------

    def pod_config(self, pod_name: str):
        """The config entry of a followed pod (KeyError with a hint if unknown)."""
        return self.config.pod(pod_name)

    def link(self, pod_name: str) -> PodLink:
        """The pod's link; a configured pod this Fleet was not made for gets one too,
        kept (and closed with the Fleet) so its later steps reuse its connection."""
        if pod_name not in self.links:
            self.links[pod_name] = PodLink(self.pod_config(pod_name), self.config.defaults)
        return self.links[pod_name]

    @asynccontextmanager
    async def borrow(self, pod_name: str):
        """`async with fleet.borrow(pod) as transport:` a `backends.transport.Transport`
        for one action: channels of the pod's live connection, brought up first when it
        is down (`PodLink.borrow`). A pod that cannot be reached because it is stopped,
        terminated or preempted raises `lifecycle.PodNotRunning`, saying so
        (`unreachable_because`), not the SSH error that followed from it."""
        async with AsyncExitStack() as stack:
            try:
                transport = await stack.enter_async_context(self.link(pod_name).borrow())
            except SshFailure as exc:
                raise await self.unreachable_because(pod_name, exc) from exc
            yield transport

    async def unreachable_because(self, pod_name: str, failure: SshFailure, *, ask_within: float = 15.0
                                  ) -> SshFailure:
        """`failure` in the pod's lifecycle words where it is not running
        (`lifecycle.not_running`): a followed Fleet knows the state from its settled
        snapshot; a command's Fleet asks the provider once (at most `ask_within`
        seconds), where the pod has one. Otherwise `failure` itself."""
        known = self._pods.get(pod_name)
        if known is not None:
            return lifecycle.not_running(pod_name, failure, known.state, known.error)
        pod = self.config.pod(pod_name)
        if pod.provider is None or failure.kind in ("auth", "command", "host-key-unknown", "host-key-changed",
                                                    "host-key-revoked", "host-key-algorithm"):
            return failure  # the pod answered: its state is not why
        if pod_name not in self.providers.views:
            try:
                await asyncio.wait_for(self.providers.poll_once(), ask_within)
            except Exception:  # noqa: BLE001 - the provider could not say: the SSH failure stands
                return failure
        state, why = lifecycle.decide(PodState.OFFLINE, self.providers.views.get(pod_name),
                                      self._own.get(pod_name), pod.provider.type)
        return lifecycle.not_running(pod_name, failure, state, why)

    async def launch(self, pod_name: str, session_name: str):
        """Launch a configured session in tmux (see `session_control.launch`), told on
        the event stream as `session_launched` (`sessions.fleet.news`)."""
        from sessions.fleet.news import launched_event
        from sessions.tmux import control as session_control

        pod = self.pod_config(pod_name)
        async with self.borrow(pod_name) as transport:
            result = await session_control.launch(transport, pod, session_name)
        self.refresh(pod_name)
        self._tell(launched_event(pod_name, result, pod.session(session_name).command))
        return result

    async def kill(self, pod_name: str, session_name: str):
        """Kill a tmux session; callers confirm first (this does not ask). Told on the
        event stream as `session_killed`."""
        from sessions.fleet.news import killed_event
        from sessions.tmux import control as session_control

        async with self.borrow(pod_name) as transport:
            result = await session_control.kill(transport, session_name, pod_name=pod_name)
        self.refresh(pod_name)
        self._tell(killed_event(pod_name, result))
        return result

    def attach_argv(self, pod_name: str, session_name: str, *, inside_tmux: bool = False) -> list[str]:
        """The command that attaches a terminal to the session, with exactly the
        connection settings monitoring uses."""
        from sessions.tmux.commands import attach_argv

        return attach_argv(self.link(pod_name).target, session_name, inside_tmux=inside_tmux)

    def refresh(self, pod_name: str | None = None) -> None:
        """Ask agents for a fresh sample now (after an action changed something)."""
        for name, monitor in self._monitors.items():
            if pod_name in (None, name):
                monitor.request_sample()

    def recent_log(self, pod_name: str, session_name: str) -> str:
        """The recent text of a session's followed log (up to 256 KiB)."""
        return self._monitors[pod_name].book.recent_text(session_name)

    def add_log_listener(self, pod_name: str, session_name: str, listener) -> None:
        """Call `listener(message)` for each log delta of the session (agent `log` messages)."""
        self._monitors[pod_name].book.add_listener(session_name, listener)

    def remove_log_listener(self, pod_name: str, session_name: str, listener) -> None:
        self._monitors[pod_name].book.remove_listener(session_name, listener)

    # -- provider actions (sessions/providers/ops.py; `gpuctl stop|teardown` make the same calls)

    def _on_provider_change(self, pod_name: str) -> None:
        if pod_name in self._monitors:  # a command's Fleet asks the provider without following the pod
            self._on_update(self._monitors[pod_name].snapshot)

    async def stop_instance(self, pod_name: str, *, force: bool = False, guard=None, progress=None, **options):
        """Stop the pod's instance through its provider; callers confirm first.
        Returns a `provider_ops.ActionResult` (raises as `provider_ops.stop` does,
        `ActionRefused` where the stop wipes a disk and `guard`, by default
        `self.guard_for()` (the teardown guard over this Fleet's links), says no, unless
        `force`). `options`: `provider_ops.stop`'s (timeout, api_timeout...)."""
        from sessions.providers import ops as provider_ops

        self._acting[pod_name] = "stop"
        try:
            return self._own_action(pod_name, await provider_ops.stop(
                self.config, self.pod_config(pod_name), force=force, guard=guard or self.guard_for(),
                progress=progress, **options))
        finally:
            self._acting.pop(pod_name, None)
            self.providers.poll_now()

    async def teardown_instance(self, pod_name: str, *, force: bool = False, guard=None, progress=None, **options):
        """Terminate the pod's instance through its provider; callers confirm first.
        `guard` defaults to `self.guard_for()`; a `type: ssh` pod's power-off borrows
        the pod's link too. `options`: `provider_ops.teardown`'s."""
        from sessions.providers import ops as provider_ops

        self._acting[pod_name] = "teardown"
        try:
            return self._own_action(pod_name, await provider_ops.teardown(
                self.config, self.pod_config(pod_name), force=force, guard=guard or self.guard_for(),
                progress=progress, borrow=self.borrow, **options))
        finally:
            self._acting.pop(pod_name, None)
            self.providers.poll_now()

    def _own_action(self, pod_name: str, result):
        """Show a stop or teardown the provider confirmed at once, not a poll later
        (`lifecycle.OwnAction`), and tell it on the event stream (`provider_action`,
        the budget's stops too); returns `result`."""
        from sessions.fleet.news import provider_event

        own = lifecycle.own_action(result)
        if own is not None and pod_name in self._monitors:
            self._own[pod_name] = own
            self._on_update(self._monitors[pod_name].snapshot)
        self._tell(provider_event(result))
        return result

    def set_interval(self, seconds: float, pod_name: str | None = None) -> None:
        """Change the telemetry interval of one pod, or all."""
        for name, monitor in self._monitors.items():
            if pod_name in (None, name):
                monitor.set_interval(seconds)
