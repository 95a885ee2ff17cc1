"""Stop and tear down pods through their provider: the policy around the backends.

What lives here and not in `backends.providers`:
* where the key comes from: the environment variable the provider entry names
  (`api_key_env`), else the provider's usual one (`RUNPOD_API_KEY`, ...); the server
  root from `api_url`, else the provider's own variable (`RUNPOD_API_BASE_URL`,
  `VAST_URL`), else the official one;
* refusing what must not happen: `stop` where the provider has none (Lambda, Thunder:
  never turned into a terminate), teardown while the guard (newest checkpoint not
  verified locally) says no, unless forced, and a stop that wipes a disk
  (`Capabilities.stop_loses_data`: RunPod's container disk, ...) on the same terms;
* polling until the provider reports the new state, bounded by a timeout, with a
  progress callback; teardown is idempotent (already gone is success, said so);
* remembering which stops gpuctl made, because a user's stop of a RunPod spot pod
  looks exactly like a preemption from outside;
* the result in plain words: what was kept and what is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from backends.providers import registry
from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    Provider,
    ProviderError,
    ProviderSettings,
    Secret,
)
from backends.transport import Transport
from sessions.config.loader import Config, PodConfig, ProviderConfig

Guard = Callable[[PodConfig], Awaitable[tuple[bool, str]]]
"""`async guard(pod) -> (ok, description)`: may the pod be torn down, and what is
known about its newest checkpoint (said in the result either way). The default is
`sessions.checkpoints.teardown_guard.guard_for(config)`."""

Progress = Callable[[str], None]

Borrow = Callable[[str], AbstractAsyncContextManager[Transport]]
"""`borrow(pod_name)`: a transport on the pod's link (`Fleet.borrow`)."""

STOP_TIMEOUT_S = 600.0
TEARDOWN_TIMEOUT_S = 600.0
POLL_EVERY_S = 5.0


class ProviderSetupError(Exception):
    """The pod's config or environment does not let gpuctl reach its provider
    (no `provider:` entry, no id, the key variable unset). The message says what to set."""


class ActionRefused(Exception):
    """gpuctl will not do this (no stop at this provider, the teardown guard said no)."""


@dataclass(frozen=True)
class ActionResult:
    """How a stop or teardown ended, in plain words.

    Attributes:
        pod: the pod's name.
        action: "stop" or "teardown".
        outcome: "done" (the provider reports the new state), "already" (nothing
            to do: already stopped / already gone), or "timeout" (asked, but the
            provider did not report the new state in time).
        state: the last state the provider reported (`InstanceState`), or None.
        kept: what survives, in plain words ("" when nothing does).
        gone: what is lost (or still billing), in plain words.
        message: one line saying what happened.
    """

    pod: str
    action: str
    outcome: str
    state: str | None
    kept: str
    gone: str
    message: str


# --- building a provider --------------------------------------------------------------


def provider_entry(pod: PodConfig, verb: str) -> ProviderConfig:
    """The pod's provider entry, checked to be usable for `verb` (ProviderSetupError if not)."""
    if pod.provider is None:
        raise ProviderSetupError(
            f"pod {pod.name!r} has no provider: entry, so gpuctl cannot {verb} it; add one, e.g. "
            f"provider: {{type: runpod, id: <pod id>}}, or use your cloud console")
    if pod.provider.id is None and pod.provider.type != "ssh":
        raise ProviderSetupError(
            f"pod {pod.name!r}: its provider entry has no id; add the {pod.provider.type} instance id "
            f"(gpuctl pods import {pod.provider.type} finds it)")
    return pod.provider


def key_env_name(entry: ProviderConfig) -> str | None:
    """The variable that holds the key: the config's override, else the provider's own."""
    return entry.api_key_env or registry.spec(entry.type).key_env


def settings_for(entry: ProviderConfig, environ: Mapping[str, str] = os.environ, *,
                 pod_name: str = "", timeout: float = 20.0) -> ProviderSettings:
    """Plain settings for the backend: server root, key (as a `Secret`), options.

    Raises:
        ProviderSetupError: the key's variable is unset or empty (the message names the
            variable, never a value).
    """
    spec = registry.spec(entry.type)
    key = None
    name = key_env_name(entry)
    who = f"pod {pod_name!r}: " if pod_name else ""
    if name:
        value = environ.get(name, "").strip()
        if not value:
            hint = ("" if entry.api_key_env else
                    "; or name another variable with api_key_env: in the pod's provider entry")
            raise ProviderSetupError(f"{who}set {name} to your {spec.label} API key{hint}")
        key = Secret(value)
    options: dict[str, Any] = dict(entry.options)
    if entry.type == "ssh":
        options["shutdown_stops_billing"] = entry.shutdown_stops_billing
    if entry.type == "crusoe":
        id_var = options.pop("access_key_env", None) or registry.CRUSOE_ACCESS_KEY_ENV
        key_id = environ.get(id_var, "").strip()
        if not key_id:
            raise ProviderSetupError(f"{who}set {id_var} to your Crusoe access key id")
        options["access_key_id"] = key_id
    api_url = entry.api_url or (environ.get(spec.url_env, "").strip() if spec.url_env else "") or None
    return ProviderSettings(api_url=api_url, key=key, options=options, timeout=timeout)


def capabilities(entry: ProviderConfig) -> Capabilities:
    """What the entry's provider can do, known without a key or a network call."""
    cls = registry.provider_class(entry.type)
    caps = getattr(cls, "capabilities", None)
    if isinstance(caps, Capabilities):
        return caps
    options = {"shutdown_stops_billing": entry.shutdown_stops_billing}
    return registry.build(entry.type, ProviderSettings(options=options)).capabilities


API_TIMEOUT_S = 20.0
"""Seconds one provider call may take, retries included (`--api-timeout`)."""


def build_provider(entry: ProviderConfig, environ: Mapping[str, str] = os.environ, *,
                   pod_name: str = "", api_timeout: float = API_TIMEOUT_S, **deps: Any) -> Provider:
    """The backend for a provider entry (deps: `transport`, `sleep`, `run`, `run_command`)."""
    return registry.build(entry.type, settings_for(entry, environ, pod_name=pod_name, timeout=api_timeout), **deps)


def refusal(pod: PodConfig, verb: str, note: str, caps: Capabilities | None = None) -> str:
    """Why gpuctl will not `verb` ("stop" / "teardown") the pod while the guard says
    no, and the ways through: one wording for `gpuctl`, the TUI and the watcher."""
    doing = "stopping" if verb == "stop" else "tearing down"
    why = f"; a stop loses data there ({caps.stop_loses})" if verb == "stop" and caps else ""
    return (f"not {doing} pod {pod.name!r}: {note}{why}; download and verify it first "
            f"(gpuctl download {pod.name} SESSION), or pass --force")


async def _ask_guard(config: Config, pod: PodConfig, guard: Guard | None) -> tuple[bool, str]:
    if guard is None:
        from sessions.checkpoints.teardown_guard import guard_for

        guard = guard_for(config)
    return await guard(pod)


def _ssh_runner(config: Config, pod: PodConfig, borrow: Borrow | None = None) -> Callable[[str], Awaitable[None]]:
    """Runs a power-off command on the pod, on the caller's link (`borrow`: the Fleet's,
    so the connection the guard just used) or a connection of its own; the link
    dropping afterwards is success."""

    async def run_command(command: str) -> None:
        from backends.ssh import SshFailure
        from sessions.link.pod_link import open_transport

        connected = False
        result = None
        try:
            opened = borrow(pod.name) if borrow is not None else open_transport(pod, config.defaults)
            async with opened as runner:
                connected = True
                result = await runner.run(command, timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure is judged by how far it got
            if not connected:
                message = exc.message if isinstance(exc, SshFailure) else str(exc)
                raise ProviderError("ssh", None, None, f"cannot reach pod {pod.name!r}: {message}") from None
            if result is None:
                return  # the machine going down takes the connection with it: success
            # else closing the link failed after the command answered: judge the answer
        if result is not None and not result.ok:
            raise ProviderError("ssh", None, None, f"shutdown failed on pod {pod.name!r}: {result.last_error_line()}")

    return run_command


# --- remembering gpuctl's own stops -------------------------------------------------


def stops_path() -> Path:
    """Where gpuctl records the stops it made (state dir: not config, not data)."""
    return platformdirs.user_state_path("gpuctl") / "provider_stops.json"


def _stop_key(entry: ProviderConfig) -> str:
    return f"{entry.type}:{entry.id}"


def _read_stops() -> dict[str, float]:
    try:
        data = json.loads(stops_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _write_stops(stops: dict[str, float]) -> None:
    path = stops_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stops, sort_keys=True))
    os.replace(tmp, path)


def record_stop(entry: ProviderConfig, when: float | None = None) -> None:
    """Remember that gpuctl stopped this instance (so it is not shown as preempted)."""
    stops = _read_stops()
    stops[_stop_key(entry)] = when if when is not None else time.time()
    _write_stops(stops)


def forget_stop(entry: ProviderConfig) -> None:
    stops = _read_stops()
    if stops.pop(_stop_key(entry), None) is not None:
        _write_stops(stops)


_TEARDOWN = "#teardown"
"""A teardown's record: the stop key with this suffix (not a stop, for `stopped_by_gpuctl`)."""


def record_teardown(entry: ProviderConfig, when: float | None = None) -> None:
    """Remember when gpuctl asked for the instance's teardown: its spend ends there,
    or at gpuctl's stop before it (kept: a stopped instance did not run until then)."""
    stops = _read_stops()
    stops[_stop_key(entry) + _TEARDOWN] = when if when is not None else time.time()
    _write_stops(stops)


_ended_cache: tuple[tuple[Path, int], dict[str, float]] | None = None


def ended_by_gpuctl_at(entry: ProviderConfig | None) -> float | None:
    """When gpuctl asked to stop or tear down this instance (its last such request),
    or None: where the spend ledger ends a running interval, whichever gpuctl process
    counts it (`gpuctl watch` beside the TUI saw the pod only "reconnecting"). Read
    again only when the file changed (it is asked on every sample)."""
    global _ended_cache
    if entry is None or not entry.id:
        return None
    path = stops_path()
    try:
        seen = (path, path.stat().st_mtime_ns)
    except OSError:
        return None
    if _ended_cache is None or _ended_cache[0] != seen:
        _ended_cache = (seen, _read_stops())
    stops = _ended_cache[1]
    # a stop still recorded was not followed by a run (seen running, it is forgotten):
    # the instance stopped costing then, even if torn down later
    return stops.get(_stop_key(entry), stops.get(_stop_key(entry) + _TEARDOWN))


def stopped_by_gpuctl(entry: ProviderConfig) -> bool:
    """True when gpuctl's last action on the instance was a stop."""
    return _stop_key(entry) in _read_stops()


def is_preempted(entry: ProviderConfig, info: InstanceInfo) -> bool:
    """The provider's preemption signal, unless the stop was gpuctl's own.

    A stop record is dropped once the instance is seen running again, so a later
    preemption of the same spot pod shows.
    """
    if info.state in (InstanceState.RUNNING, InstanceState.STARTING):
        if stopped_by_gpuctl(entry):
            forget_stop(entry)
        return False
    return info.preempted and not stopped_by_gpuctl(entry)


# --- polling --------------------------------------------------------------------------


async def _poll(provider: Provider, instance_id: str, done: Callable[[InstanceInfo | None], bool], *,
                timeout: float, every: float, sleep: Callable[[float], Awaitable[Any]],
                clock: Callable[[], float], progress: Progress | None, label: str) -> tuple[bool, InstanceInfo | None]:
    """Ask the provider until `done(info)` (info None: not found), or the timeout.

    Returns (reached, last info). A failed poll is reported and retried: the request
    already went through, and a blip should not turn into "failed".
    """
    deadline = clock() + timeout
    last: InstanceInfo | None = None
    while True:
        try:
            last = await provider.get(instance_id)
            now_done = done(last)
            if progress:
                progress(f"{label}: the provider says {last.raw_status or last.state}")
        except InstanceNotFound:
            last = None
            now_done = done(None)
        except ProviderError as exc:
            now_done = False
            if progress:
                progress(f"{label}: could not ask the provider ({exc}); trying again")
        if now_done:
            return True, last
        if clock() + every > deadline:
            return False, last
        await sleep(every)


# --- stop -----------------------------------------------------------------------------


async def stop(config: Config, pod: PodConfig, *, force: bool = False, guard: Guard | None = None,
               environ: Mapping[str, str] = os.environ,
               progress: Progress | None = None, timeout: float = STOP_TIMEOUT_S, poll_every: float = POLL_EVERY_S,
               sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
               api_timeout: float = API_TIMEOUT_S, **deps: Any) -> ActionResult:
    """Stop the pod's instance and wait until the provider reports it stopped.

    Where the provider's stop wipes a disk (`capabilities.stop_loses_data`), the
    teardown guard must allow it first, unless `force`: a RunPod stop deletes
    everything outside /workspace, checkpoints included.

    Raises:
        ProviderSetupError: no provider entry, id or key.
        ActionRefused: the provider has no stop (the message says why, and what to
            do), or the guard said no (and not forced).
        ProviderError: the provider refused or failed the request.
    """
    entry = provider_entry(pod, "stop")
    provider = build_provider(entry, environ, pod_name=pod.name, api_timeout=api_timeout, **deps)
    caps = provider.capabilities
    try:
        if not caps.can_stop:
            raise ActionRefused(f"not stopping pod {pod.name!r}: {caps.stop_refusal}")
        instance_id = entry.id or ""
        try:
            before = await provider.get(instance_id)
        except InstanceNotFound:
            return ActionResult(pod.name, "stop", "already", InstanceState.TERMINATED, "", "",
                                f"pod {pod.name!r} is already gone: {entry.type} does not know {instance_id}")
        if before.state in (InstanceState.STOPPED, InstanceState.TERMINATED):
            what = "already stopped" if before.state == InstanceState.STOPPED else "already gone"
            return ActionResult(pod.name, "stop", "already", before.state, caps.stop_keeps, caps.stop_loses,
                                f"pod {pod.name!r} is {what} ({before.raw_status})")
        if caps.stop_loses_data and not force:
            ok, note = await _ask_guard(config, pod, guard)
            if not ok:
                raise ActionRefused(refusal(pod, "stop", note, caps))
        if progress:
            progress(f"{pod.name}: asking {entry.type} to stop {instance_id}")
        await provider.stop(instance_id)
        record_stop(entry)
        reached, last = await _poll(
            provider, instance_id,
            lambda i: i is None or i.state in (InstanceState.STOPPED, InstanceState.TERMINATED),
            timeout=timeout, every=poll_every, sleep=sleep, clock=clock, progress=progress, label=pod.name)
    finally:
        await provider.aclose()
    state = last.state if last else InstanceState.TERMINATED
    if not reached:
        return ActionResult(pod.name, "stop", "timeout", state, caps.stop_keeps, caps.stop_loses,
                            f"asked {entry.type} to stop pod {pod.name!r}, but after {timeout:g}s it still says "
                            f"{last.raw_status if last else 'nothing'}; `gpuctl status` shows when it gets there")
    return ActionResult(pod.name, "stop", "done", state, caps.stop_keeps, caps.stop_loses,
                        f"pod {pod.name!r} is stopped")


# --- teardown -------------------------------------------------------------------------


async def teardown(config: Config, pod: PodConfig, *, force: bool = False, guard: Guard | None = None,
                   environ: Mapping[str, str] = os.environ, progress: Progress | None = None,
                   timeout: float = TEARDOWN_TIMEOUT_S, poll_every: float = POLL_EVERY_S,
                   sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                   clock: Callable[[], float] = time.monotonic, api_timeout: float = API_TIMEOUT_S,
                   borrow: Borrow | None = None, **deps: Any) -> ActionResult:
    """Terminate the pod's instance and wait until the provider reports it gone.

    Idempotent: an instance the provider no longer knows, or reports terminated, is
    success ("already gone"). Unless `force`, `guard(pod)` must allow it first.
    `borrow`: the caller's links (`Fleet.borrow`), for a `type: ssh` pod's power-off.

    Raises:
        ProviderSetupError: no provider entry, id or key.
        ActionRefused: the guard said no (and not forced), or an ssh pod whose
            power-off would not stop billing.
        ProviderError: the provider refused or failed the request.
    """
    entry = provider_entry(pod, "tear down")
    if entry.type == "ssh":
        deps.setdefault("run_command", _ssh_runner(config, pod, borrow))
    provider = build_provider(entry, environ, pod_name=pod.name, api_timeout=api_timeout, **deps)
    caps = provider.capabilities
    instance_id = entry.id or ""
    try:
        if caps.can_query:
            try:
                before = await provider.get(instance_id)
            except InstanceNotFound:
                before = None
            if before is None or before.state == InstanceState.TERMINATED:
                forget_stop(entry)
                return ActionResult(pod.name, "teardown", "already", InstanceState.TERMINATED, "", caps.teardown_destroys,
                                    f"pod {pod.name!r} is already gone ({entry.type} "
                                    f"{'does not know ' + instance_id if before is None else 'says ' + str(before.raw_status)})")
        elif entry.type == "ssh" and not entry.shutdown_stops_billing:
            raise ActionRefused(
                f"not tearing down pod {pod.name!r}: it has no provider API, and powering it off may not stop "
                "its billing; if it does, set shutdown_stops_billing: true in its provider entry")
        guard_note = ""
        if not force:
            ok, guard_note = await _ask_guard(config, pod, guard)
            if not ok:
                raise ActionRefused(refusal(pod, "teardown", guard_note))
        if progress:
            progress(f"{pod.name}: asking {entry.type} to terminate {instance_id or pod.host}")
        try:
            await provider.terminate(instance_id)
        except InstanceNotFound:
            forget_stop(entry)
            return ActionResult(pod.name, "teardown", "already", InstanceState.TERMINATED, guard_note,
                                caps.teardown_destroys, f"pod {pod.name!r} is already gone")
        record_teardown(entry)  # its spend ends now, or at gpuctl's stop before (`ended_by_gpuctl_at`)
        if not caps.can_query:
            return ActionResult(pod.name, "teardown", "done", None, guard_note, caps.teardown_destroys,
                                f"pod {pod.name!r}: power-off sent; the machine is going down")
        reached, last = await _poll(
            provider, instance_id, lambda i: i is None or i.state == InstanceState.TERMINATED,
            timeout=timeout, every=poll_every, sleep=sleep, clock=clock, progress=progress, label=pod.name)
    finally:
        await provider.aclose()
    if not reached:
        return ActionResult(pod.name, "teardown", "timeout", last.state if last else None, guard_note,
                            caps.teardown_destroys,
                            f"asked {entry.type} to terminate pod {pod.name!r}, but after {timeout:g}s it still says "
                            f"{last.raw_status if last else 'nothing'}; check your cloud console")
    return ActionResult(pod.name, "teardown", "done", InstanceState.TERMINATED, guard_note, caps.teardown_destroys,
                        f"pod {pod.name!r} is gone")
