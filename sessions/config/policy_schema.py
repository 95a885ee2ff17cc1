"""Check a `policies:` block (top level, pod entry or session entry) and build a `Policies`.

Same style as `config_fields`: validators take a `Checker`, the YAML node and the field
path, record every problem with its line and column, and never raise. A block with
problems still yields the keys that were valid (as `walk` does for a section), so a
whole file is checked in one pass; the problems make `build_config` fail anyway.

What a block may say (the data it becomes is `sessions.config.policy_model`):

    auto_download: newest | all | off
    keep_local: 3 | off                 # off (or false): keep every local copy
    auto_resume: on | off | {max_restarts: 5, backoff_s: 60, enabled: true, on_hang_minutes: 30}
    alerts: off | on | {gpu_temp_c: 85, disk_used_pct: 90, stall_minutes: 15,
                        loss_spike: 3.0, nan_loss: true, gpu_idle_minutes: 10}
    budget: off | {max_usd: 120, action: stop | teardown | alert, grace_minutes: 15}
    notify: [desktop, {webhook: URL}, {command: "notify-send gpuctl {message}"}]
    download_dir: "checkpoints/{pod}/{session}"
    checkpoint_interval_s: 60

YAML 1.1 reads `off`, `no` and `false` as the boolean false (and `on`, `yes`, `true` as
true); wherever `off` is allowed, all of them are, quoted or not. Each alert threshold
may be `off` on its own. `alerts: on` writes gpuctl's default thresholds into the layer,
which re-enables alerts an outer layer turned off.

`budget` needs a `max_usd` somewhere: a budget mapping without one is fine when an
outer layer (the top level for a pod, the pod or top level for a session) sets it,
since the nested blocks merge key by key. That needs every layer, so `build_config`
calls `check_layers` once the whole file is read.
"""

from __future__ import annotations

import os
import string
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sessions.config import shell_template
from sessions.config import yaml_lines as yl
from sessions.config.fields import (
    INVALID,
    Checker,
    Validator,
    boolean,
    got,
    join,
    nonempty,
    number,
    seconds,
    suggest,
)
from sessions.events import ALL_KINDS
from sessions.config.policy_model import (
    AUTO_DOWNLOAD_MODES,
    BUDGET_ACTIONS,
    NOTIFY_KINDS,
    AlertLayer,
    Alerts,
    BudgetLayer,
    NotifyTarget,
    Policies,
    ResumeLayer,
    effective,
)

__all__ = ["ALERT_KEYS", "POLICY_KEYS", "check_layers", "policies"]

DOWNLOAD_DIR_FIELDS: tuple[str, ...] = ("pod", "session")
"""Placeholders `download_dir` may contain."""

_OFF_WORDS = ("off", "false", "no")
_ON_WORDS = ("on", "true", "yes")


def _or_list(words: tuple[str, ...]) -> str:
    """`stop, teardown or alert`."""
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]


def _bool_word(node: Node, words: tuple[str, ...], value: bool) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    if node.tag == yl.BOOL_TAG:
        try:
            return yl.scalar_value(node) is value
        except (yl.ScalarError, LookupError):  # `!!bool maybe`: left to the validator to word
            return False
    return node.tag == yl.STR_TAG and node.value.strip().lower() in words


def is_off(node: Node) -> bool:
    """`off`, `false`, `no` (YAML's boolean false), quoted or not."""
    return _bool_word(node, _OFF_WORDS, False)


def is_on(node: Node) -> bool:
    """`on`, `true`, `yes` (YAML's boolean true), quoted or not."""
    return _bool_word(node, _ON_WORDS, True)


def _unknown(ck: Checker, entry: yl.Entry, field: str, valid: tuple[str, ...],
             aliases: Mapping[str, str]) -> None:
    message = f"unknown key {entry.key!r}"
    close = suggest(entry.key, valid, aliases)
    if close:
        message += f"; did you mean {close!r}?"
    else:
        message += f"; valid keys here: {', '.join(valid)}"
    ck.problem(entry.key_node, join(field, entry.key), message)


def _block(ck: Checker, node: MappingNode, field: str, spec: Mapping[str, Validator],
           aliases: Mapping[str, str] = {}) -> tuple[dict[str, Any], set[str]]:
    """Validate a nested mapping against `spec`.

    Returns:
        ({key: valid value}, {keys present with a value, valid or not}). Empty values
        mean "not set" and are left out, as in the rest of the config.
    """
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    values: dict[str, Any] = {}
    present: set[str] = set()
    for e in entries:
        if e.key not in spec:
            _unknown(ck, e, field, tuple(spec), aliases)
        elif not yl.is_null(e.value):
            present.add(e.key)
            value = spec[e.key](ck, e.value, join(field, e.key))
            if value is not INVALID:
                values[e.key] = value
    return values, present


# --- auto_download, keep_local -------------------------------------------------------


def auto_download(ck: Checker, node: Node, field: str) -> Any:
    what = _or_list(AUTO_DOWNLOAD_MODES)
    if is_off(node):
        return "off"
    if isinstance(node, ScalarNode) and node.tag == yl.STR_TAG and node.value.strip().lower() in AUTO_DOWNLOAD_MODES:
        return node.value.strip().lower()
    message = f"expected {what}, got {got(node)}"
    if is_on(node):
        message += "; say which checkpoints to fetch: newest (only the latest) or all"
    elif isinstance(node, ScalarNode) and node.tag == yl.STR_TAG:
        close = suggest(node.value, AUTO_DOWNLOAD_MODES, {"latest": "newest", "last": "newest",
                                                          "every": "all", "none": "off"})
        if close:
            message += f"; did you mean {close!r}?"
    return ck.problem(node, field, message)


def keep_local(ck: Checker, node: Node, field: str) -> Any:
    if is_off(node):
        return False
    return number(ck, node, field, what="a whole number of copies greater than 0 (or off to keep all)",
                  integer=True, low=0, above=True)


# --- auto_resume ---------------------------------------------------------------------


def _restarts(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a whole number of restarts, 0 or more", integer=True, low=0, above=False)


def _backoff(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a number of seconds, 0 or more", integer=False, low=0, above=False)


def _hang_minutes(ck: Checker, node: Node, field: str) -> Any:
    if is_off(node):
        return False
    return number(ck, node, field, what="a number of minutes greater than 0, or off", integer=False, low=0,
                  above=True)


RESUME_FIELDS: dict[str, Validator] = {"max_restarts": _restarts, "backoff_s": _backoff, "enabled": boolean,
                                       "on_hang_minutes": _hang_minutes}
_RESUME_ALIASES = {"restarts": "max_restarts", "retries": "max_restarts", "max_retries": "max_restarts",
                   "backoff": "backoff_s", "delay": "backoff_s", "wait": "backoff_s", "on": "enabled"}


def auto_resume(ck: Checker, node: Node, field: str) -> Any:
    if is_on(node):
        return ResumeLayer(enabled=True)
    if is_off(node):
        return ResumeLayer(enabled=False)
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected on, off or a mapping such as {{max_restarts: 5, "
                                       f"backoff_s: 60}}, got {got(node)}")
    values, _ = _block(ck, node, field, RESUME_FIELDS, _RESUME_ALIASES)
    return ResumeLayer(enabled=values.pop("enabled", True), **values)


# --- alerts --------------------------------------------------------------------------


def _threshold(what: str, low: float, above: bool, high: float | None = None) -> Validator:
    """A number in range, or `off` (False: this alert disabled)."""
    what = f"{what}, or off"

    def check(ck: Checker, node: Node, field: str) -> Any:
        if is_off(node):
            return False
        value = number(ck, node, field, what=what, integer=False, low=low, above=above)
        if value is not INVALID and high is not None and value > high:
            return ck.problem(node, field, f"expected {what}, got {node.value}")
        return value

    return check


ALERT_FIELDS: dict[str, Validator] = {
    "gpu_temp_c": _threshold("a GPU temperature in °C, above 0 and at most 150", 0, True, 150),
    "disk_used_pct": _threshold("a disk use percentage, above 0 and at most 100", 0, True, 100),
    "stall_minutes": _threshold("a number of minutes greater than 0", 0, True),
    "loss_spike": _threshold("a factor greater than 1.0 (the loss jumping to that many times its recent level)",
                             1.0, True),
    "nan_loss": boolean,
    "gpu_idle_minutes": _threshold("a number of minutes greater than 0", 0, True),
    "gpu_health": boolean,
}
ALERT_KEYS: tuple[str, ...] = tuple(ALERT_FIELDS)
_ALERT_ALIASES = {
    "temp": "gpu_temp_c", "temperature": "gpu_temp_c", "gpu_temp": "gpu_temp_c", "temp_c": "gpu_temp_c",
    "max_temp": "gpu_temp_c", "disk": "disk_used_pct", "disk_pct": "disk_used_pct",
    "disk_used": "disk_used_pct", "disk_full": "disk_used_pct", "stall": "stall_minutes",
    "stalled": "stall_minutes", "spike": "loss_spike", "nan": "nan_loss", "idle": "gpu_idle_minutes",
    "gpu_idle": "gpu_idle_minutes", "idle_minutes": "gpu_idle_minutes",
}


def alerts(ck: Checker, node: Node, field: str) -> Any:
    if is_off(node):
        return AlertLayer(**{key: False for key in ALERT_KEYS})
    if is_on(node):
        defaults = Alerts()
        return AlertLayer(**{key: getattr(defaults, key) for key in ALERT_KEYS})
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected off, on or a mapping of thresholds such as "
                                       f"{{gpu_temp_c: 85, stall_minutes: 15}}, got {got(node)}")
    values, _ = _block(ck, node, field, ALERT_FIELDS, _ALERT_ALIASES)
    return AlertLayer(**values)


# --- budget --------------------------------------------------------------------------


def _max_usd(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="an amount in US dollars greater than 0", integer=False, low=0, above=True)


_ACTION_ALIASES = {"shutdown": "stop", "halt": "stop", "pause": "stop", "terminate": "teardown",
                   "destroy": "teardown", "delete": "teardown", "warn": "alert", "notify": "alert"}


def _action(ck: Checker, node: Node, field: str) -> Any:
    what = _or_list(BUDGET_ACTIONS)
    if isinstance(node, ScalarNode) and node.tag == yl.STR_TAG and node.value.strip().lower() in BUDGET_ACTIONS:
        return node.value.strip().lower()
    message = f"expected {what}, got {got(node)}"
    if isinstance(node, ScalarNode) and node.tag == yl.STR_TAG:
        close = suggest(node.value, BUDGET_ACTIONS, _ACTION_ALIASES)
        if close:
            message += f"; did you mean {close!r}?"
    return ck.problem(node, field, message)


def _grace(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a number of minutes, 0 or more", integer=False, low=0, above=False)


BUDGET_FIELDS: dict[str, Validator] = {"max_usd": _max_usd, "action": _action, "grace_minutes": _grace}
_BUDGET_ALIASES = {"usd": "max_usd", "max": "max_usd", "limit": "max_usd", "max_cost": "max_usd",
                   "max_spend": "max_usd", "dollars": "max_usd", "on_exceed": "action", "then": "action",
                   "grace": "grace_minutes"}

# Budget mappings without max_usd, per Checker: (the layer, its node, its field), settled
# by `check_layers` once every layer is known.
_PENDING: weakref.WeakKeyDictionary[Checker, list[tuple[BudgetLayer, Node, str]]] = weakref.WeakKeyDictionary()


def budget(ck: Checker, node: Node, field: str) -> Any:
    if is_off(node):
        return BudgetLayer(enabled=False)
    if not isinstance(node, MappingNode):
        message = f"expected off or a mapping such as {{max_usd: 120, action: stop}}, got {got(node)}"
        if isinstance(node, ScalarNode) and node.tag in (yl.INT_TAG, yl.FLOAT_TAG):
            message += f"; write budget: {{max_usd: {node.value}}}"
        return ck.problem(node, field, message)
    values, present = _block(ck, node, field, BUDGET_FIELDS, _BUDGET_ALIASES)
    layer = BudgetLayer(enabled=True, **values)
    if "max_usd" not in present:
        _PENDING.setdefault(ck, []).append((layer, node, field))
    return layer


# --- notify --------------------------------------------------------------------------

_NOTIFY_ITEM_KEYS: tuple[str, ...] = (*NOTIFY_KINDS, "kinds")
_NOTIFY_ALIASES = {"url": "webhook", "hook": "webhook", "slack": "webhook", "discord": "webhook",
                   "http": "webhook", "cmd": "command", "run": "command", "exec": "command",
                   "shell": "command", "events": "kinds", "only": "kinds", "kind": "kinds"}
_NOTIFY_WHAT = "desktop, {webhook: URL} or {command: \"...\"}"


def _webhook(ck: Checker, node: Node, field: str) -> Any:
    what = "an http:// or https:// URL"
    value = nonempty(ck, node, field, what)
    if value is INVALID:
        return value
    value = value.strip()
    parts = urlsplit(value)
    if any(c.isspace() for c in value):
        return ck.problem(node, field, f"expected {what}, got {value!r} (it contains a space)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = "; add https:// in front" if "://" not in value else ""
        return ck.problem(node, field, f"expected {what}, got {value!r}{hint}")
    return value


def _event_kinds(ck: Checker, node: Node, field: str) -> Any:
    """`kinds: [alert, budget_action]` (or one kind alone)."""
    items = node.value if isinstance(node, SequenceNode) else [node]
    if isinstance(node, SequenceNode) and not items:
        return ck.problem(node, field, "an empty list would send nothing; leave kinds out for the default set")
    out: list[str] = []
    ok = True
    for i, item in enumerate(items):
        sub = f"{field}[{i}]" if isinstance(node, SequenceNode) else field
        kind = nonempty(ck, item, sub, f"an event kind ({', '.join(ALL_KINDS)})")
        if kind is not INVALID and kind not in ALL_KINDS:
            close = suggest(kind, ALL_KINDS)
            hint = f"did you mean {close!r}?" if close else f"event kinds: {', '.join(ALL_KINDS)}"
            kind = ck.problem(item, sub, f"unknown event kind {kind!r}; {hint}")
        if kind is INVALID:
            ok = False
        elif kind not in out:
            out.append(kind)
    return tuple(out) if ok else INVALID


_NOTIFY_TARGETS: dict[str, Validator] = {
    "desktop": boolean,
    "webhook": _webhook,
    "command": shell_template.field(shell_template.NOTIFY_PLACEHOLDERS, "a shell command"),
}


def _notify_item(ck: Checker, node: Node, field: str) -> Any:
    """One target: NotifyTarget, None (`{desktop: false}`: dropped) or INVALID."""
    line = yl.line_of(node)
    if isinstance(node, ScalarNode) and node.tag == yl.STR_TAG:
        word = node.value.strip()
        if word.lower() == "desktop":
            return NotifyTarget("desktop", line=line)
        if word.lower() in ("webhook", "command"):
            example = "https://..." if word.lower() == "webhook" else '"notify-send gpuctl {message}"'
            return ck.problem(node, field, f"{word} needs its target: write {{{word.lower()}: {example}}}")
        if word.lower().startswith(("http://", "https://")):
            return ck.problem(node, field, f"expected {_NOTIFY_WHAT}, got {word!r}; write {{webhook: {word}}}")
        close = suggest(word, ("desktop",), {"notification": "desktop", "popup": "desktop", "toast": "desktop"})
        hint = f"; did you mean {close!r}?" if close else ""
        return ck.problem(node, field, f"expected {_NOTIFY_WHAT}, got {got(node)}{hint}")
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected {_NOTIFY_WHAT}, got {got(node)}")
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    ok = not issues
    for e in entries:
        if e.key not in _NOTIFY_ITEM_KEYS:
            _unknown(ck, e, field, _NOTIFY_ITEM_KEYS, _NOTIFY_ALIASES)
            ok = False
    targets = [e for e in entries if e.key in NOTIFY_KINDS]
    if len(targets) > 1:
        names = _or_list(tuple(e.key for e in targets)).replace(" or ", " and ")
        return ck.problem(node, field, f"a notify item is one of desktop, webhook or command, and this one has "
                                       f"{names}; make each its own list item")
    if not targets:
        if ok:
            ck.problem(node, field, "a notify item needs one of desktop, webhook or command "
                                    "(e.g. {webhook: https://..., kinds: [alert]})")
        return INVALID
    target = targets[0]
    sub = join(field, target.key)
    value = _NOTIFY_TARGETS[target.key](ck, target.value, sub)
    kinds_entry = next((e for e in entries if e.key == "kinds"), None)
    kinds: Any = ()
    if kinds_entry is not None and not yl.is_null(kinds_entry.value):
        kinds = _event_kinds(ck, kinds_entry.value, join(field, "kinds"))
    if not ok or value is INVALID or kinds is INVALID:
        return INVALID
    if target.key == "desktop":
        return NotifyTarget("desktop", kinds=kinds, line=line) if value else None
    return NotifyTarget(target.key, value, kinds, line)


def notify(ck: Checker, node: Node, field: str) -> Any:
    """A list of targets; one target alone counts as a one-item list, `off` as none."""
    if is_off(node):
        return ()
    if not isinstance(node, SequenceNode):
        item = _notify_item(ck, node, field)
        return INVALID if item is INVALID else tuple(t for t in (item,) if t is not None)
    items = [_notify_item(ck, item, f"{field}[{i}]") for i, item in enumerate(node.value)]
    if INVALID in items:
        return INVALID
    return tuple(t for t in items if t is not None)


# --- download_dir, the block ---------------------------------------------------------


def download_dir(ck: Checker, node: Node, field: str) -> Any:
    """A local directory template; only `{pod}` and `{session}` are filled in."""
    value = nonempty(ck, node, field, "a directory (it may contain {pod} and {session})")
    if value is INVALID:
        return value
    allowed = " and ".join("{" + name + "}" for name in DOWNLOAD_DIR_FIELDS)
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        return ck.problem(node, field, f"has an unmatched brace ({exc}); placeholders are {allowed}, "
                                       f"and a literal brace is written twice ({{{{ or }}}})")
    bad: list[str] = []
    hints: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None or (name in DOWNLOAD_DIR_FIELDS and not spec and not conversion):
            continue
        bad.append("{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
        close = suggest(name, DOWNLOAD_DIR_FIELDS, {"pod_name": "pod", "session_name": "session",
                                                    "host": "pod", "run": "session"})
        if close and close != name:
            hints.append(f"{{{close}}} for {bad[-1]}")
    if bad:
        plural = "s" if len(bad) > 1 else ""
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        return ck.problem(node, field, f"unknown placeholder{plural} {', '.join(bad)}; only {allowed} "
                                       f"are filled in{hint}")
    return os.path.expanduser(value)


POLICY_FIELDS: dict[str, Validator] = {
    "auto_download": auto_download, "keep_local": keep_local, "auto_resume": auto_resume,
    "alerts": alerts, "budget": budget, "notify": notify, "download_dir": download_dir,
    "checkpoint_interval_s": seconds,
}
POLICY_KEYS: tuple[str, ...] = tuple(POLICY_FIELDS)
_POLICY_ALIASES = {
    "download": "auto_download", "autodownload": "auto_download", "downloads": "auto_download",
    "keep": "keep_local", "keep_last": "keep_local", "keep_newest": "keep_local", "retain": "keep_local",
    "resume": "auto_resume", "autoresume": "auto_resume", "restart": "auto_resume",
    "alert": "alerts", "alarms": "alerts", "cost": "budget", "spend": "budget",
    "notifications": "notify", "notifiers": "notify", "notification": "notify",
    "dir": "download_dir", "download_to": "download_dir", "checkpoint_dir": "download_dir",
    "interval": "checkpoint_interval_s", "checkpoint_interval": "checkpoint_interval_s",
    "poll_interval": "checkpoint_interval_s",
}


# A nested block's key written one level too high: say where it goes.
_NESTED_HOME: dict[str, str] = {
    **{key: "alerts" for key in ALERT_FIELDS}, **{key: "budget" for key in BUDGET_FIELDS},
    "max_restarts": "auto_resume", "backoff_s": "auto_resume", "on_hang_minutes": "auto_resume",
}


def policies(ck: Checker, node: Node, field: str) -> Any:
    """A `policies:` block as a `Policies` layer (INVALID only when it is not a mapping)."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping of policies ({', '.join(POLICY_KEYS)}), got {got(node)}")
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    values: dict[str, Any] = {}
    for e in entries:
        if e.key in POLICY_FIELDS:
            if not yl.is_null(e.value):
                value = POLICY_FIELDS[e.key](ck, e.value, join(field, e.key))
                if value is not INVALID:
                    values[e.key] = value
        elif e.key in _NESTED_HOME:
            ck.problem(e.key_node, join(field, e.key),
                       f"unknown key {e.key!r}; it belongs under '{_NESTED_HOME[e.key]}:' in this block")
        else:
            _unknown(ck, e, field, POLICY_KEYS, _POLICY_ALIASES)
    return Policies(**values, line=yl.line_of(node))


def check_layers(ck: Checker, top: Policies | None, pods: Any) -> None:
    """Settle the budget mappings that left out max_usd, now that every layer is known.

    Such a mapping only tunes `action` or `grace_minutes` of a budget set further out;
    with no outer `max_usd` in force it would never act, so it is a problem.
    """
    pending = _PENDING.pop(ck, [])
    if not pending:
        return
    chains: list[tuple[Policies | None, ...]] = [(top,)]
    for pod in pods or ():
        chains.append((top, pod.policies))
        chains += [(top, pod.policies, session.policies) for session in pod.sessions]
    for *outer, layer in chains:
        if layer is None or layer.budget is None:
            continue
        for budget_layer, node, field in pending:
            if budget_layer is layer.budget and effective(*outer).budget.max_usd is None:
                where = "" if not outer else " and no outer policies block sets one"
                ck.problem(node, field, f"budget needs max_usd (the spending limit in US dollars, e.g. "
                                        f"{{max_usd: 120, action: stop}}){where}")
