"""Price, spend, projected cost and preemption from the providers, beside telemetry.

One low-frequency task for the whole fleet (every 60 s, and on demand): it asks each
provider about its pods (one `list` per account and server when several pods share
one, else `get`) and keeps what it learned as a `ProviderView` per pod. It never
touches the SSH side: a slow or failing API only delays this task, and a provider
error is shown as a note (`provider_error`), never as the pod being offline. Each call
is bounded by one deadline (`REQUEST_TIMEOUT_S`, retries included); a provider that
did not answer a round's `list` is not asked again per pod in the same round (that
would wait once more per pod); and a one-shot command that stops waiting for the first
round (`settled`) still shows, per pod, that the provider has not answered.

`apply` merges a view into a monitor's snapshot, and is cheap enough to run on every
telemetry sample:
* price: the config's `price_per_hour` wins when set (the user knows their
  discounts, storage and reserved rates); else the provider's price.
* spend: not here; accumulated in `sessions.providers.spend` (never decreases), the one
  truth; `running_since` says when the current run started: the provider's start time
  or uptime when it gives one, else the agent's uptime (the machine's), else when
  gpuctl first saw it.
* projected: price x the longest ETA among running sessions.
* state: not here either; `sessions.providers.lifecycle` decides preempted, stopped and
  terminated from the same view (a stop gpuctl made itself is not a preemption, see
  `provider_ops.is_preempted`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.providers.base import (
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    ProviderError,
    ProviderUnavailable,
)
from sessions.providers import ops as provider_ops
from sessions.config.loader import PodConfig, ProviderConfig
from sessions.snapshot import NOT_RUNNING, PodSnapshot, PodState, SessionState, with_state

POLL_INTERVAL_S = 60.0
REQUEST_TIMEOUT_S = 10.0
FIRST_ROUND_WAIT_S = 12.0
"""How long one-shot commands (`gpuctl status`) wait for the providers' first answer:
a blackholed API must not hold up a status that SSH already has."""


@dataclass(frozen=True)
class ProviderView:
    """What the provider last said about one pod.

    Attributes:
        instance: the instance, or None (not found, or the provider could not be asked).
        preempted: taken back by the provider, and not by a gpuctl stop.
        gone: the provider does not know the instance (terminated and forgotten).
        error: why the provider could not be asked, or None.
        polled_at: unix time of the answer.
    """

    instance: InstanceInfo | None = None
    preempted: bool = False
    gone: bool = False
    error: str | None = None
    polled_at: float = 0.0


def _group_key(entry: ProviderConfig) -> tuple[Any, ...]:
    options = tuple(sorted((k, str(v)) for k, v in entry.options.items() if k != "ssh_proxy"))
    return entry.type, entry.api_url, entry.api_key_env, options


def _pollable(pod: PodConfig) -> bool:
    entry = pod.provider
    return bool(entry and entry.id and provider_ops.capabilities(entry).can_query)


def merge(snapshot: PodSnapshot, pod: PodConfig | None, view: ProviderView | None,
          now: float | None = None) -> PodSnapshot:
    """`snapshot` with price, projected cost and the provider's state as detail.

    Spend is not worked out here: the ledger (`sessions.providers.spend`, fed with
    `running_since`) is its one truth. Nor is the pod's state: `sessions.providers.
    lifecycle.settle` decides it (preempted, stopped, terminated) from the same view."""
    info = view.instance if view else None
    price, source = None, None
    if pod is not None and pod.price_per_hour is not None:
        price, source = pod.price_per_hour, "config"
    elif info is not None and info.price_per_hour is not None:
        price, source = info.price_per_hour, "provider"
    projected = None
    if price is not None:
        etas = [s.progress.eta_s for s in snapshot.sessions
                if s.state == SessionState.RUNNING and s.progress is not None and s.progress.eta_s is not None]
        projected = round(price * max(etas) / 3600.0, 4) if etas else None
    return with_state(snapshot, price_per_hour=price, price_source=source, projected_usd=projected,
                      provider_state=(InstanceState.TERMINATED if view and view.gone else info.state if info else None),
                      provider_error=view.error if view else None)


def running_since(snapshot: PodSnapshot, view: ProviderView | None,
                  now: float | None = None) -> tuple[float | None, str | None]:
    """When the pod's current run started and who says so, for `sessions.providers.spend`:
    `(start, "provider")` from the provider's start time or uptime (uptime is read at
    poll time, so it is anchored there, not at `now`), `(None, "first_seen")` when
    running but no provider says since when, and `(None, None)` when not running (the
    provider says it is not, or SSH cannot reach a pod the provider says nothing about:
    a torn-down instance is both).

    Not the machine's own uptime: in a container (RunPod, Vast, the demo) that is the
    host's boot, hours or days before the pod was rented, so it made spend and "up"
    disagree in both directions."""
    now = time.time() if now is None else now
    if snapshot.state in NOT_RUNNING:  # stopped, torn down or preempted (decided by `lifecycle`)
        return None, None
    info = view.instance if view else None
    if info is not None and info.state == InstanceState.RUNNING:
        if info.uptime_s is not None:
            return (view.polled_at or now) - info.uptime_s, "provider"  # type: ignore[union-attr]
        if info.started_at is not None:
            return info.started_at, "provider"
    elif info is not None and info.state != InstanceState.RUNNING:
        return None, None
    if snapshot.state != PodState.ONLINE:
        return None, None
    return None, "first_seen"


class ProviderPoller:
    """Polls the providers of a fleet's pods; see the module docstring.

    Args:
        pods: the fleet's pods (those without a provider id, or with no API, are
            never polled but still get price and spend from config).
        on_change: called with a pod's name when its view changed.
        interval: seconds between rounds.
        environ: where API keys are read from.
        deps: injected into the provider backends (tests: `sleep`, `transport`, `run`).
    """

    def __init__(self, pods: list[PodConfig], on_change: Callable[[str], None], *,
                 interval: float = POLL_INTERVAL_S, environ: Mapping[str, str] = os.environ, **deps: Any) -> None:
        self._pods = {p.name: p for p in pods}
        self._on_change = on_change
        self.interval = interval
        self._environ = environ
        self._deps = deps
        self.views: dict[str, ProviderView] = {}
        self.first_round = asyncio.Event()
        self._poke = asyncio.Event()
        self._polled = [p for p in pods if _pollable(p)]
        if not self._polled:
            self.first_round.set()

    # -- merging ------------------------------------------------------------------

    def apply(self, snapshot: PodSnapshot, now: float | None = None) -> PodSnapshot:
        """The snapshot with what the provider said merged in (see `merge`)."""
        return merge(snapshot, self._pods.get(snapshot.name), self.views.get(snapshot.name), now)

    def running_since(self, snapshot: PodSnapshot, now: float | None = None) -> tuple[float | None, str | None]:
        """See the module-level `running_since`."""
        return running_since(snapshot, self.views.get(snapshot.name), now)

    # -- polling ------------------------------------------------------------------

    async def settled(self, limit: float | None = None) -> None:
        """Wait for the first round, at most `limit` seconds (default
        `FIRST_ROUND_WAIT_S`; never raises on timeout). A pod whose provider has not
        answered by then gets that as its `provider_error`, so `status --json` says
        why there is no provider state instead of showing nothing."""
        limit = FIRST_ROUND_WAIT_S if limit is None else limit
        try:
            await asyncio.wait_for(self.first_round.wait(), limit)
        except (asyncio.TimeoutError, TimeoutError):
            from backends.providers import registry

            for pod in self._polled:
                if pod.name not in self.views:
                    kind = pod.provider.type  # type: ignore[union-attr]
                    self._set(pod.name, ProviderView(  # worded as a ProviderError of that call would be
                        error=f"{kind}: {registry.spec(kind).label} did not answer within {limit:g} s",
                        polled_at=time.time()))

    def poll_now(self) -> None:
        """Start the next round now (after a stop or teardown, or a key press)."""
        self._poke.set()

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled. Never raises."""
        if not self._polled:
            return
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - a bug here must not end cost tracking for good
                for pod in self._polled:
                    self._set(pod.name, ProviderView(error=f"provider poll failed: {exc}", polled_at=time.time()))
            self.first_round.set()
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), self.interval)
            except (asyncio.TimeoutError, TimeoutError):
                pass

    async def poll_once(self) -> None:
        """One round: every account/server group concurrently, pods within a group in turn."""
        groups: dict[tuple[Any, ...], list[PodConfig]] = {}
        for pod in self._polled:
            groups.setdefault(_group_key(pod.provider), []).append(pod)  # type: ignore[arg-type]
        await asyncio.gather(*(self._poll_group(pods) for pods in groups.values()))

    async def _poll_group(self, pods: list[PodConfig]) -> None:
        entry = pods[0].provider
        assert entry is not None
        try:
            settings = provider_ops.settings_for(entry, self._environ, pod_name=pods[0].name,
                                                 timeout=REQUEST_TIMEOUT_S)
        except provider_ops.ProviderSetupError as exc:
            for pod in pods:
                self._set(pod.name, ProviderView(error=str(exc), polled_at=time.time()))
            return
        from backends.providers import registry

        provider = registry.build(entry.type, settings, **self._deps)
        try:
            listed: dict[str, InstanceInfo] = {}
            if len(pods) > 1:
                try:
                    listed = {i.id: i for i in await provider.list()}
                except ProviderUnavailable as exc:  # timed out or unreachable: asking per pod waits again
                    for pod in pods:
                        self._set(pod.name, ProviderView(error=str(exc), polled_at=time.time()))
                    return
                except ProviderError:
                    listed = {}  # fall back to one get per pod, which says what is wrong
            for pod in pods:
                ident = str(pod.provider.id)  # type: ignore[union-attr]
                try:
                    info = listed.get(ident) or await provider.get(ident)
                except InstanceNotFound:
                    self._set(pod.name, ProviderView(gone=True, polled_at=time.time()))
                    continue
                except ProviderError as exc:
                    self._set(pod.name, ProviderView(error=str(exc), polled_at=time.time()))
                    continue
                preempted = provider_ops.is_preempted(pod.provider, info)  # type: ignore[arg-type]
                self._set(pod.name, ProviderView(instance=info, preempted=preempted, polled_at=time.time()))
        finally:
            await provider.aclose()

    def _set(self, name: str, view: ProviderView) -> None:
        old = self.views.get(name)
        self.views[name] = view
        if old is None or (old.instance, old.preempted, old.gone, old.error) != (
                view.instance, view.preempted, view.gone, view.error):
            self._on_change(name)
