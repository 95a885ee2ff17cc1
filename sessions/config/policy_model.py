"""Automation policies as frozen data: one layer as written, and the merged result.

A `policies:` block may stand at the top level of the config (defaults for every pod),
inside a pod entry, or inside a session entry. Each is read into a `Policies` layer in
which `None` means "not set here"; `effective` merges the layers, innermost value of
each key winning, and fills gpuctl's defaults. The nested blocks (`alerts`,
`auto_resume`, `budget`) merge key by key, so a session that only writes
`alerts: {stall_minutes: 60}` keeps the pod's temperature threshold; `notify` is a
list and is replaced whole.

A threshold or block written as `off` (or `false`) is *disabled*, which is different
from "not set": it stops an outer layer's value from applying. In a layer that is
`False`; in the merged result a disabled threshold is `None`.

Kept apart from the YAML validation (`policy_schema`) so the watch engine, the alert
rules and the TUI import plain dataclasses only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

AUTO_DOWNLOAD_MODES: tuple[str, ...] = ("newest", "all", "off")
BUDGET_ACTIONS: tuple[str, ...] = ("stop", "teardown", "alert")
NOTIFY_KINDS: tuple[str, ...] = ("desktop", "webhook", "command")


@dataclass(frozen=True)
class AlertLayer:
    """`alerts:` as written in one layer; None = not set, False = `off`."""

    gpu_temp_c: float | bool | None = None
    disk_used_pct: float | bool | None = None
    stall_minutes: float | bool | None = None
    loss_spike: float | bool | None = None
    nan_loss: bool | None = None
    gpu_idle_minutes: float | bool | None = None
    gpu_health: bool | None = None


@dataclass(frozen=True)
class ResumeLayer:
    """`auto_resume:` as written; `enabled` is False for `auto_resume: off`, True for
    `auto_resume: on` or a mapping, None when the layer does not say."""

    enabled: bool | None = None
    max_restarts: int | None = None
    backoff_s: float | None = None
    on_hang_minutes: float | bool | None = None


@dataclass(frozen=True)
class BudgetLayer:
    """`budget:` as written; `enabled` False for `budget: off`.

    `grace_minutes`: how long the budget action waits for the newest checkpoint to be
    downloaded and verified before acting anyway.
    """

    enabled: bool | None = None
    max_usd: float | None = None
    action: str | None = None
    grace_minutes: float | None = None


@dataclass(frozen=True)
class NotifyTarget:
    """One entry of `notify:`.

    Attributes:
        kind: one of NOTIFY_KINDS.
        target: the webhook URL or the command template (None for desktop).
        kinds: event kinds to send; empty means the kind's default set
            (`sessions.watch.notify` documents it).
        line: 1-based config line of the entry.
    """

    kind: str
    target: str | None = None
    kinds: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Policies:
    """One `policies:` block as written; every field None means "not set here".

    Attributes:
        auto_download: one of AUTO_DOWNLOAD_MODES.
        keep_local: keep the newest N verified local copies (False: keep all).
        auto_resume, alerts, budget: nested blocks (see their classes).
        notify: where events go besides stdout.
        download_dir: where auto-downloads go; may contain `{pod}` and `{session}`;
            relative paths are taken from the directory `watch` started in.
        checkpoint_interval_s: seconds between checkpoint listings per session.
        line: 1-based line of the `policies:` block.
    """

    auto_download: str | None = None
    keep_local: int | bool | None = None
    auto_resume: ResumeLayer | None = None
    alerts: AlertLayer | None = None
    budget: BudgetLayer | None = None
    notify: tuple[NotifyTarget, ...] | None = None
    download_dir: str | None = None
    checkpoint_interval_s: float | None = None
    line: int | None = None


# --- the merged result -----------------------------------------------------------------


@dataclass(frozen=True)
class Alerts:
    """Alert thresholds in force; None = this alert is off."""

    gpu_temp_c: float | None = 85.0
    disk_used_pct: float | None = 90.0
    stall_minutes: float | None = 15.0
    loss_spike: float | None = 3.0
    nan_loss: bool = True
    gpu_idle_minutes: float | None = 10.0
    gpu_health: bool = True


@dataclass(frozen=True)
class AutoResume:
    """Auto-resume in force: off unless a layer turns it on."""

    enabled: bool = False
    max_restarts: int = 5
    backoff_s: float = 60.0
    on_hang_minutes: float | None = None
    """Restart a session diagnosed `hung` (`sessions.health.stall`) after its step has
    been frozen this long; None (the default): never restart a running session."""


@dataclass(frozen=True)
class Budget:
    """Budget in force: none unless a layer sets `max_usd`."""

    max_usd: float | None = None
    action: str = "alert"
    grace_minutes: float = 15.0


@dataclass(frozen=True)
class EffectivePolicies:
    """What applies to one pod or session after merging every layer.

    Defaults: nothing acts on its own (no auto-download, no auto-resume, no budget);
    alerts are on with the thresholds of `Alerts`.
    """

    auto_download: str = "off"
    keep_local: int | None = None
    auto_resume: AutoResume = AutoResume()
    alerts: Alerts = Alerts()
    budget: Budget = Budget()
    notify: tuple[NotifyTarget, ...] = ()
    download_dir: str = "checkpoints/{pod}/{session}"
    checkpoint_interval_s: float = 60.0


def _merge_block(result: Any, layers: list[Any]) -> Any:
    """Apply each layer's set keys over `result` (a merged dataclass), in order."""
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    for layer in layers:
        if layer is None:
            continue
        for f in fields(layer):
            value = getattr(layer, f.name)
            if value is None or f.name == "enabled":
                continue
            values[f.name] = None if value is False and f.name not in ("nan_loss", "gpu_health") else value
    return type(result)(**values)


def _from_last_off(blocks: list[Any]) -> list[Any]:
    """The blocks from the innermost `off` one on: an `off` block stops every outer value
    of that block from applying, so a block turned on again further in starts afresh."""
    start = 0
    for i, block in enumerate(blocks):
        if block is not None and block.enabled is False:
            start = i
    return blocks[start:]


def effective(*layers: Policies | None) -> EffectivePolicies:
    """Merge layers given outermost first (top level, pod, session); inner keys win."""
    present = [layer for layer in layers if layer is not None]
    merged = EffectivePolicies()
    values: dict[str, Any] = {}
    for layer in present:
        if layer.auto_download is not None:
            values["auto_download"] = layer.auto_download
        if layer.keep_local is not None:
            values["keep_local"] = None if layer.keep_local is False else layer.keep_local
        if layer.notify is not None:
            values["notify"] = layer.notify
        if layer.download_dir is not None:
            values["download_dir"] = layer.download_dir
        if layer.checkpoint_interval_s is not None:
            values["checkpoint_interval_s"] = layer.checkpoint_interval_s

    alerts = [layer.alerts for layer in present]
    resume_layers = _from_last_off([layer.auto_resume for layer in present])
    budget_layers = _from_last_off([layer.budget for layer in present])

    enabled = False
    for r in resume_layers:
        if r is not None and r.enabled is not None:
            enabled = r.enabled
    resume = _merge_block(AutoResume(), resume_layers)
    values["auto_resume"] = AutoResume(enabled, resume.max_restarts, resume.backoff_s, resume.on_hang_minutes)

    budget = _merge_block(Budget(), budget_layers)
    for b in budget_layers:
        if b is not None and b.enabled is False:
            budget = Budget(None, budget.action, budget.grace_minutes)
        elif b is not None and b.max_usd is not None:
            budget = Budget(b.max_usd, budget.action, budget.grace_minutes)
    values["budget"] = budget
    values["alerts"] = _merge_block(Alerts(), alerts)
    return EffectivePolicies(**{**{f.name: getattr(merged, f.name) for f in fields(merged)}, **values})


def policies_for(config: Any, pod: Any, session: Any = None) -> EffectivePolicies:
    """The policies in force for a pod (`session` None) or one of its sessions.

    Takes the `Config`, `PodConfig` and `SessionConfig` (or a session name) whose
    `policies` attributes hold the layers.
    """
    if isinstance(session, str):
        session = pod.session(session)
    return effective(getattr(config, "policies", None), getattr(pod, "policies", None),
                     _session_layer(session) if session is not None else None)


def _session_layer(session: Any) -> Policies | None:
    """The session's `policies:` layer, with the deprecated `sessions[].stall_minutes`
    folded in as its `alerts.stall_minutes` (unless that is written too, which wins):
    one stall threshold, so the `stalled` flag and the stall alert cannot disagree, and
    old configs keep their meaning. `config check` warns about the old key."""
    layer = getattr(session, "policies", None)
    old = getattr(session, "stall_minutes", None)
    if old is None:
        return layer
    layer = layer or Policies()
    alerts = layer.alerts or AlertLayer()
    if alerts.stall_minutes is not None:
        return layer
    return replace(layer, alerts=replace(alerts, stall_minutes=old))
