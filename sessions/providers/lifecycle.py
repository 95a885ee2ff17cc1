"""A pod's lifecycle state, decided in one place; and what is stale because of it.

Three witnesses say something about a pod, and they used to be shown side by side
without being reconciled ("offline" next to `"provider_state": "terminated"`, a stopped
pod's last GPU figures in live colours, its session `running` in green):

* the monitor: can SSH reach it (`connecting`, `online`, `reconnecting`, `offline`);
* the provider's last answer (`sessions.providers.poller.ProviderView`): running,
  stopped, terminated or gone, and whether that was a preemption;
* gpuctl's own stop or teardown (`OwnAction`), known the moment the provider confirmed
  it to `sessions.providers.ops`, before the next provider poll.

`decide` turns them into one `PodState`, and `settle` applies it to a snapshot, the one
place the Fleet does so; every view (TUI, `status`, `watch`, webhooks) reads the result.
The rules, newest evidence first:

1. gpuctl's own stop/teardown holds until a provider answer *newer* than it says the
   instance runs again (someone started it from the console): `stopped`/`terminated`
   at once, even while the SSH connection is still draining.
2. The provider's word: `preempted` (a spot/bid instance taken back, not by gpuctl)
   while SSH cannot reach it; `stopped`/`terminated` (or unknown to the provider) while
   SSH cannot reach it. A pod SSH still reaches stays `online`: a wrong id must not
   hide a live machine (`provider_state` keeps the provider's word as detail).
3. Otherwise the connection state.

A pod that is not online keeps its last GPUs, disk, load and sessions, marked stale
(`PodSnapshot.stale`, with `sampled_at`/`received_at`): its sessions' `state` becomes
`unknown` with `last_state` the state last seen, so no view calls a session on a
stopped or unreachable pod `running`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from backends.providers.base import InstanceState
from sessions.errors import PodNotRunning, SshFailure
from sessions.config.loader import PodConfig
from sessions.providers.poller import ProviderView
from sessions.snapshot import NOT_RUNNING, PodSnapshot, PodState, SessionSnapshot, SessionState, with_state


@dataclass(frozen=True)
class OwnAction:
    """A stop or teardown gpuctl made, as the provider confirmed it.

    Attributes:
        state: `PodState.STOPPED` or `PodState.TERMINATED`.
        at: unix time the provider confirmed it (this machine's clock).
    """

    state: str
    at: float


_ENDED = {InstanceState.STOPPED: PodState.STOPPED, InstanceState.STOPPING: PodState.STOPPED,
          InstanceState.TERMINATED: PodState.TERMINATED, InstanceState.TERMINATING: PodState.TERMINATED}


RECHECK_AFTER_S = 10.0
"""How stale the provider's word may be before a pod gpuctl stopped, which SSH reaches
again, gets a fresh poll (`wants_poll`): soon enough that a restart from the console
shows, rarely enough not to hammer the API while the link drains."""


def wants_poll(connection: str, view: ProviderView | None, action: OwnAction | None,
               now: float | None = None) -> bool:
    """Whether to ask the provider now: SSH reaches a pod whose last word is gpuctl's own
    stop or teardown (rule 1 holds it `stopped` until a newer answer says it runs), and
    the provider's answer is over `RECHECK_AFTER_S` old."""
    if action is None or connection != PodState.ONLINE:
        return False
    now = time.time() if now is None else now
    return view is None or view.polled_at < max(action.at, now - RECHECK_AFTER_S)


def own_action(result: Any, now: float | None = None) -> OwnAction | None:
    """The `OwnAction` a `provider_ops.ActionResult` stands for: a stop or teardown the
    provider confirmed (`done`, or `already` stopped/gone; a `type: ssh` teardown is its
    power-off sent); None for a timeout, where the provider's poll will tell."""
    if result.outcome not in ("done", "already"):
        return None
    if result.action == "teardown" or result.state == InstanceState.TERMINATED:
        state = PodState.TERMINATED
    elif result.state == InstanceState.STOPPED:
        state = PodState.STOPPED
    else:
        return None
    return OwnAction(state, time.time() if now is None else now)


def provider_verdict(view: ProviderView | None, provider: str = "the provider") -> tuple[str | None, str | None]:
    """`(state, why)` the provider's last answer implies: `preempted`, `stopped` or
    `terminated` with a sentence, or `(None, None)` when it says the instance runs,
    says nothing, or could not be asked."""
    if view is None:
        return None, None
    if view.gone:
        return PodState.TERMINATED, f"terminated: {provider} no longer knows the instance"
    info = view.instance
    if info is None:
        return None, None
    said = f" ({info.raw_status})" if info.raw_status else ""
    if view.preempted:
        return PodState.PREEMPTED, f"preempted: {provider} took the instance back{said}"
    state = _ENDED.get(info.state)
    if state is None:
        return None, None
    return state, f"{state}: {provider} says the instance is {info.state}{said}"


def decide(connection: str, view: ProviderView | None, action: OwnAction | None,
           provider: str = "the provider") -> tuple[str, str | None]:
    """The pod's state from the monitor's `connection` state, the provider's last
    answer and gpuctl's own last action (see the module docstring), with why it is
    not the connection's own state (None: it is)."""
    verdict, why = provider_verdict(view, provider)
    if action is not None:
        # A poll that failed (an error, no instance) says nothing against the action.
        newer = view is not None and view.polled_at > action.at and (view.instance is not None or view.gone)
        if newer and verdict == PodState.TERMINATED and action.state != verdict:
            return verdict, why  # stopped by gpuctl, then torn down elsewhere
        if not newer or verdict == action.state:
            word = "stopped" if action.state == PodState.STOPPED else "torn down"
            return action.state, f"{action.state}: {word} by gpuctl"
        # else the provider, asked since, says the instance runs again: the action is over
    if verdict is not None and connection != PodState.ONLINE:
        return verdict, why
    return connection, None


def not_running(pod_name: str, failure: SshFailure, state: str | None, why: str | None) -> SshFailure:
    """`failure` reworded as the pod's lifecycle `state` (with `why`, `decide`'s reason,
    such as "stopped: runpod says the instance is stopped"), or `failure` unchanged when
    the state is not one of `NOT_RUNNING`. The one place an action's SSH failure on a
    pod that is not running becomes words, for the commands and the TUI alike."""
    if state not in NOT_RUNNING or isinstance(failure, PodNotRunning):
        return failure
    who = (why or "").partition(": ")[2] or why or ""  # "runpod says the instance is stopped", "torn down by gpuctl"
    if state == PodState.STOPPED:
        hint = "start it, then try again"
    elif state == PodState.PREEMPTED:
        hint = "the provider took it back: start it again (or wait for it), then try again"
    else:
        hint = "it is gone, with whatever was only on it"
    return PodNotRunning(failure.kind, f"{pod_name} is {state}{f' ({who})' if who else ''}; {hint}", state, who)


def settle(snapshot: PodSnapshot, view: ProviderView | None, action: OwnAction | None,
           pod: PodConfig | None = None) -> PodSnapshot:
    """The monitor's `snapshot` with its state decided (`decide`) and, when it is not
    online, its sessions marked as last known (`stale_sessions`). `pod` names the
    provider in the reason."""
    provider = pod.provider.type if pod is not None and pod.provider is not None else "the provider"
    state, why = decide(snapshot.state, view, action, provider)
    changes: dict = {}
    if state != snapshot.state:
        changes.update(state=state, error=why, error_kind=state)
    if state != PodState.ONLINE and snapshot.sessions:
        changes["sessions"] = stale_sessions(snapshot.sessions)
    return with_state(snapshot, **changes) if changes else snapshot


def stale_sessions(sessions: tuple[SessionSnapshot, ...]) -> tuple[SessionSnapshot, ...]:
    """Sessions as last seen: `unknown`, with `last_state`; not stalled (nobody can
    tell while the pod is out of reach)."""
    return tuple(s if s.state == SessionState.UNKNOWN else
                 replace(s, state=SessionState.UNKNOWN, last_state=s.state, stalled=False, stuck_since=None)
                 for s in sessions)
