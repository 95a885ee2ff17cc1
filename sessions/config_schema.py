"""Check a composed YAML tree against gpuctl's config schema and build the `Config`.

Every problem is collected (not just the first) with the line and column of the node
it is about and a field path such as `pods[1] (a100-west).port`, so one run of
`gpuctl config check` lists everything to fix. Messages say what was expected and
what was found; unknown keys get a "did you mean" or the list of valid keys.

This module is over 400 lines because it is one flat table of small validators, one
per field kind, plus the section walkers; splitting it would scatter the schema.

Two deliberate leniencies, because YAML 1.1 types plain words on its own:
* A text field takes any scalar as written: `name: 4090`, `CUDA_VISIBLE_DEVICES: 0`,
  `id: 123456` (Vast.ai ids are numbers) or `command: true` are meant as text.
* An empty value (`user:`, `~`, `null`) means "not set", like leaving the key out.
Numbers and booleans are strict: `port: "22"` or `price_per_hour: yes` are errors.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sessions import yaml_lines as yl
from sessions.config_model import (
    HOST_KEY_POLICIES,
    LOCAL_HOST,
    Config,
    ConfigError,
    ConfigProblem,
    Defaults,
    PodConfig,
    ProviderConfig,
    SessionConfig,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROGRESS_GROUPS: tuple[str, ...] = ("step", "total", "loss", "rate")

EXAMPLE = """\
A minimal config:
  pods:
    - name: my-pod
      host: 203.0.113.7      # an IP, a host name, an alias from ~/.ssh/config, or `local`
      user: root"""
"""Pasted into "file not found" and "no pods" messages."""


class _Invalid:
    """Marks a value that failed validation (its problem is already recorded)."""


INVALID: Any = _Invalid()

Validator = Callable[["Checker", Node, str], Any]


class Checker:
    """Collects problems for one file, so validators never raise.

    Attributes:
        path: the config file, printed in front of every problem.
        problems: problems found so far.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.problems: list[ConfigProblem] = []

    def problem(self, node: Node | None, field: str, message: str) -> Any:
        """Record a problem at `node` (None: the whole file); returns INVALID."""
        line = yl.line_of(node) if node is not None else None
        column = yl.column_of(node) if node is not None else None
        self.problems.append(ConfigProblem(self.path, line, column, field, message))
        return INVALID

    def issues(self, issues: list[yl.Issue], field: str) -> None:
        """Record issues reported by `yaml_lines` helpers under `field`."""
        for issue in issues:
            self.problem(issue.node, join(field, issue.key) if issue.key else field, issue.message)

    def sorted_problems(self) -> list[ConfigProblem]:
        """Problems in file order, each once (a merged anchor can repeat one)."""
        unique = list(dict.fromkeys(self.problems))
        return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


def join(prefix: str, key: str) -> str:
    """Field path of `key` inside `prefix` (`pods[0] (a).port`)."""
    return f"{prefix}.{key}" if prefix else key


# --- describing what was found -------------------------------------------------------


def got(node: Node) -> str:
    """How a value reads in "expected X, got Y", YAML's typing made visible."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == yl.NULL_TAG:
        return "nothing (an empty value)"
    if node.tag == yl.BOOL_TAG:
        meaning = "true" if yl.scalar_value(node) else "false"
        return f"{node.value} (YAML reads {node.value} as the boolean {meaning})"
    if node.tag == yl.STR_TAG:
        return repr(node.value)
    return str(node.value)


def _quoted_hint(node: Node, looks_right: Callable[[str], bool]) -> str:
    """"; remove the quotes" when a quoted string would be valid unquoted."""
    if isinstance(node, ScalarNode) and node.style in ("'", '"') and looks_right(node.value):
        return " (quoted, so YAML reads it as text; remove the quotes)"
    return ""


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def suggest(word: str, choices: tuple[str, ...], aliases: Mapping[str, str] = {}) -> str | None:
    """The choice `word` most likely meant, or None.

    Tries, in order: the same word up to case and `-`/`_`; a known synonym (OpenSSH
    spellings like `IdentityFile`, `hostname`); difflib's closest match; a unique
    choice that starts with `word` (`price` -> `price_per_hour`).
    """
    norm = word.lower().replace("-", "_")
    for choice in choices:
        if choice.lower().replace("-", "_") == norm:
            return choice
    alias = aliases.get(norm)
    if alias in choices:
        return alias
    close = difflib.get_close_matches(norm, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    starts = [c for c in choices if len(norm) >= 3 and c.startswith(norm)]
    return starts[0] if len(starts) == 1 else None


KEY_ALIASES: Mapping[str, str] = {
    "hostname": "host", "address": "host", "ip": "host", "addr": "host",
    "username": "user", "login": "user",
    "identityfile": "identity", "identity_file": "identity", "key": "identity",
    "ssh_key": "identity", "keyfile": "identity", "key_file": "identity",
    "private_key": "identity",
    "stricthostkeychecking": "host_key", "hostkey": "host_key", "host_key_policy": "host_key",
    "cost": "price_per_hour", "cost_per_hour": "price_per_hour",
    "hourly_price": "price_per_hour", "price_per_hr": "price_per_hour",
    "dir": "workdir", "cwd": "workdir", "working_dir": "workdir", "directory": "workdir",
    "cmd": "command", "run": "command", "logfile": "log", "log_file": "log",
    "steps": "total_steps", "max_steps": "total_steps", "checkpoint": "checkpoints",
    "environment": "env", "timeout": "connect_timeout", "connecttimeout": "connect_timeout",
    "hosts": "pods", "machines": "pods", "pod": "pods", "default": "defaults",
    "session": "sessions", "readonly": "read_only", "bindings": "keys",
    "keybindings": "keys", "key_bindings": "keys", "policy": "policies",
}


# --- scalar validators ---------------------------------------------------------------


def text(ck: Checker, node: Node, field: str, what: str = "text") -> Any:
    """Any scalar, as written (see module docstring for why numbers count as text)."""
    if not isinstance(node, ScalarNode) or node.tag == yl.NULL_TAG:
        return ck.problem(node, field, f"expected {what}, got {got(node)}")
    if node.tag.startswith("!"):
        return ck.problem(node, field, f"the YAML tag {node.tag} is not supported here")
    return node.value


def nonempty(ck: Checker, node: Node, field: str, what: str = "text") -> Any:
    value = text(ck, node, field, what)
    if value is INVALID:
        return value
    if not value.strip():
        return ck.problem(node, field, f"expected {what}, got an empty string")
    return value


def name(ck: Checker, node: Node, field: str) -> Any:
    """Pod and session names end up in tmux targets and file names: keep them plain."""
    what = "a name of letters, digits, '.', '_' and '-'"
    value = nonempty(ck, node, field, what)
    if value is INVALID or NAME_PATTERN.fullmatch(value):
        return value
    bad = sorted({c for c in value if not NAME_PATTERN.fullmatch(c)})
    shown = ", ".join(repr(c) for c in bad)
    return ck.problem(node, field, f"expected {what}, got {value!r} ({shown} not allowed)")


def host(ck: Checker, node: Node, field: str) -> Any:
    """Reject what would reach `ssh` as an option or hide a port/user in the host."""
    what = f"an IP address, a host name, an alias from ~/.ssh/config, or {LOCAL_HOST!r}"
    value = nonempty(ck, node, field, what)
    if value is INVALID:
        return value
    if any(c.isspace() for c in value):
        return ck.problem(node, field, f"expected {what}, got {value!r} (it contains a space)")
    if value.startswith("-"):
        return ck.problem(node, field, f"must not start with '-' (ssh would read {value!r} as an option)")
    if "://" in value:
        return ck.problem(node, field, f"expected {what}, got {value!r}; write the bare host, without a scheme")
    if "@" in value:
        user_part, _, host_part = value.rpartition("@")
        return ck.problem(
            node, field,
            f"expected {what}, got {value!r}; put the user in its own key: "
            f"host: {host_part} and user: {user_part}",
        )
    head, sep, tail = value.rpartition(":")
    if sep and head.count(":") == 0 and tail.isdigit():
        return ck.problem(
            node, field,
            f"expected {what}, got {value!r}; put the port in its own key: host: {head} and port: {tail}",
        )
    return value


def user(ck: Checker, node: Node, field: str) -> Any:
    what = "a login name"
    value = nonempty(ck, node, field, what)
    if value is INVALID:
        return value
    if any(c.isspace() for c in value) or value.startswith("-") or "@" in value:
        return ck.problem(node, field, f"expected {what} (no spaces, '@' or leading '-'), got {value!r}")
    return value


def identity(ck: Checker, node: Node, field: str) -> Any:
    """A local key path; `~` expanded here, since it is this machine's home."""
    value = nonempty(ck, node, field, "a path to a private key file")
    return value if value is INVALID else os.path.expanduser(value)


_HOST_KEY_ALIASES = {"yes": "strict", "true": "strict", "on": "strict", "accept": "accept-new",
                     "new": "accept-new", "tofu": "accept-new"}
_HOST_KEY_INSECURE = {"no", "false", "off", "ignore", "none", "insecure", "accept-any", "any"}


def host_key(ck: Checker, node: Node, field: str) -> Any:
    what = " or ".join(HOST_KEY_POLICIES)
    value = text(ck, node, field, what)
    if value is INVALID or value in HOST_KEY_POLICIES:
        return value
    message = f"expected {what}, got {got(node)}"
    if value.lower() in _HOST_KEY_INSECURE:
        message += (
            "; gpuctl never accepts unknown host keys blindly: use accept-new to record"
            " a new host's key on first connect"
        )
    else:
        close = suggest(value, HOST_KEY_POLICIES, _HOST_KEY_ALIASES)
        if close:
            message += f"; did you mean {close!r}?"
    return ck.problem(node, field, message)


def number(
    ck: Checker, node: Node, field: str, *, what: str, integer: bool, low: float, above: bool
) -> Any:
    """A YAML int (or float unless `integer`), finite, >= low (or > low when `above`)."""
    wanted = (yl.INT_TAG,) if integer else (yl.INT_TAG, yl.FLOAT_TAG)
    if not isinstance(node, ScalarNode) or node.tag not in wanted:
        hint = _quoted_hint(node, _is_number_text)
        return ck.problem(node, field, f"expected {what}, got {got(node)}{hint}")
    try:
        value = yl.scalar_value(node)
    except yl.ScalarError as exc:
        return ck.problem(node, field, f"expected {what}, got {node.value!r} ({exc})")
    if not math.isfinite(value) or value < low or (above and value == low):
        return ck.problem(node, field, f"expected {what}, got {node.value}")
    return value if integer else float(value)


def port(ck: Checker, node: Node, field: str) -> Any:
    value = number(ck, node, field, what="an integer from 1 to 65535", integer=True, low=1, above=False)
    if value is not INVALID and value > 65535:
        return ck.problem(node, field, f"expected an integer from 1 to 65535, got {node.value}")
    return value


def price(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a price in US dollars per hour, 0 or more",
                  integer=False, low=0, above=False)


def seconds(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a number of seconds greater than 0",
                  integer=False, low=0, above=True)


def positive_int(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a whole number greater than 0", integer=True, low=0, above=True)


def boolean(ck: Checker, node: Node, field: str) -> Any:
    if not isinstance(node, ScalarNode) or node.tag != yl.BOOL_TAG:
        hint = _quoted_hint(node, lambda t: t.lower() in ("true", "false", "yes", "no"))
        return ck.problem(node, field, f"expected true or false, got {got(node)}{hint}")
    return yl.scalar_value(node)


def progress(ck: Checker, node: Node, field: str) -> Any:
    """A user progress regex: it must compile and capture only groups we understand."""
    value = nonempty(ck, node, field, "a regular expression")
    if value is INVALID:
        return value
    try:
        pattern = re.compile(value)
    except re.error as exc:
        return ck.problem(node, field, f"is not a valid regular expression: {exc.msg} at position {exc.pos}")
    allowed = ", ".join(PROGRESS_GROUPS)
    unknown = [g for g in pattern.groupindex if g not in PROGRESS_GROUPS]
    if unknown:
        names = ", ".join(repr(g) for g in unknown)
        return ck.problem(node, field, f"named group {names} not understood; use only {allowed}")
    if not pattern.groupindex:
        return ck.problem(
            node, field,
            f"has no named group, so it cannot report anything; capture the step as "
            f"(?P<step>\\d+) (groups understood: {allowed})",
        )
    return value


def globs(ck: Checker, node: Node, field: str) -> Any:
    what = "a list of glob patterns"
    if not isinstance(node, SequenceNode):
        hint = f"; write [{node.value!r}]" if isinstance(node, ScalarNode) else ""
        return ck.problem(node, field, f"expected {what}, got {got(node)}{hint}")
    values = [nonempty(ck, item, f"{field}[{i}]", "a glob pattern") for i, item in enumerate(node.value)]
    return INVALID if INVALID in values else tuple(values)


def string_map(ck: Checker, node: Node, field: str, key_pattern: re.Pattern[str] | None = None,
               key_what: str = "") -> Any:
    """A mapping of text to text, read-only; keys optionally checked by a pattern."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping of names to text, got {got(node)}")
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    out: dict[str, str] = {}
    ok = True
    for e in entries:
        sub = join(field, e.key)
        if key_pattern is not None and not key_pattern.fullmatch(e.key):
            ck.problem(e.key_node, sub, f"expected {key_what}, got {e.key!r}")
            ok = False
            continue
        value = text(ck, e.value, sub, "text (write '' for an empty value)")
        if value is INVALID:
            ok = False
        else:
            out[e.key] = value
    return types.MappingProxyType(out) if ok else INVALID


def env(ck: Checker, node: Node, field: str) -> Any:
    """Names are checked because they are exported in a remote shell command."""
    return string_map(ck, node, field, ENV_NAME_PATTERN,
                      "an environment variable name (letters, digits and '_', not starting with a digit)")


def raw(ck: Checker, node: Node, field: str) -> Any:
    """A mapping kept as frozen plain data for a later validator."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping, got {got(node)}")
    issues: list[yl.Issue] = []
    value = yl.frozen_value(node, issues)
    ck.issues(issues, field)
    return value


# --- sections ------------------------------------------------------------------------

SESSION_FIELDS: dict[str, Validator] = {
    "name": name, "command": nonempty, "workdir": nonempty, "env": env, "log": nonempty,
    "total_steps": positive_int, "progress": progress, "resume": nonempty, "checkpoints": globs,
}
POD_FIELDS: dict[str, Validator] = {
    "name": name, "host": host, "port": port, "user": user, "identity": identity,
    "host_key": host_key, "price_per_hour": price, "workdir": nonempty,
    "provider": lambda ck, n, f: provider(ck, n, f),
    "sessions": lambda ck, n, f: sessions(ck, n, f),
    "connect_timeout": seconds, "interval": seconds,
}
DEFAULTS_FIELDS: dict[str, Validator] = {
    "user": user, "identity": identity, "host_key": host_key, "port": port,
    "connect_timeout": seconds, "command_timeout": seconds, "interval": seconds,
}
TOP_FIELDS: dict[str, Validator] = {
    "defaults": lambda ck, n, f: defaults(ck, n, f),
    "pods": lambda ck, n, f: pods(ck, n, f),
    "read_only": boolean, "keys": lambda ck, n, f: string_map(ck, n, f),
    "policies": raw, "theme": nonempty,
}
SECTIONS: dict[str, tuple[str, dict[str, Validator]]] = {
    "top": ("the top level", TOP_FIELDS),
    "defaults": ("'defaults:'", DEFAULTS_FIELDS),
    "pod": ("a pod entry under 'pods:'", POD_FIELDS),
    "session": ("a session entry under a pod's 'sessions:'", SESSION_FIELDS),
}


def unknown_key(ck: Checker, entry: yl.Entry, field: str, section: str) -> None:
    """Report a key the section does not have, with the most useful hint we can give."""
    where, spec = SECTIONS[section]
    valid = tuple(spec)
    message = f"unknown key {entry.key!r}"
    elsewhere = [s for s, (_, other) in SECTIONS.items() if s != section and entry.key in other]
    close = suggest(entry.key, valid, KEY_ALIASES)
    if elsewhere:
        message += f"; it belongs in {SECTIONS[elsewhere[0]][0]}, not in {where}"
    elif close:
        message += f"; did you mean {close!r}?"
    else:
        message += f"; valid keys here: {', '.join(valid)}"
    ck.problem(entry.key_node, join(field, entry.key), message)


def walk(ck: Checker, node: Node, field: str, section: str, what: str) -> dict[str, Any] | None:
    """Validate a mapping section; returns {key: valid value} (None if not a mapping).

    Keys set to an empty value are left out, i.e. "not set". Keys present with an
    invalid value are left out too; their problem is recorded.
    """
    if not isinstance(node, MappingNode):
        ck.problem(node, field, f"expected {what}, got {got(node)}")
        return None
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    spec = SECTIONS[section][1]
    values: dict[str, Any] = {}
    for e in entries:
        if e.key not in spec:
            unknown_key(ck, e, field, section)
        elif not yl.is_null(e.value):
            value = spec[e.key](ck, e.value, join(field, e.key))
            if value is not INVALID:
                values[e.key] = value
    return values


def _peek_name(node: Node) -> str | None:
    """The entry's name if it is valid, to label its other fields' paths."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == "name" and isinstance(value_node, ScalarNode):
                if NAME_PATTERN.fullmatch(value_node.value):
                    return value_node.value
    return None


def _required(ck: Checker, node: Node, field: str, key: str, values: dict[str, Any], help: str) -> bool:
    """Report a required key that is missing or empty; True when it is usable."""
    if key in values:
        return True
    entries, _ = yl.mapping_entries(node)  # type: ignore[arg-type]
    present = [e for e in entries if e.key == key]
    if not present:
        ck.problem(node, field, f"missing {key!r} ({help})")
    elif yl.is_null(present[0].value):
        ck.problem(present[0].value, join(field, key), f"{key!r} is empty ({help})")
    return False


def defaults(ck: Checker, node: Node, field: str) -> Any:
    values = walk(ck, node, field, "defaults", "a mapping of default settings")
    return INVALID if values is None else Defaults(**values)


def provider(ck: Checker, node: Node, field: str) -> Any:
    """`type` and `id` are read here; any other key is kept in `options`."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping with 'type:' (e.g. type: runpod), got {got(node)}")
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    kind: Any = INVALID
    ident: Any = None
    options: dict[str, Any] = {}
    for e in entries:
        sub = join(field, e.key)
        if e.key == "type":
            kind = nonempty(ck, e.value, sub, "the provider's name (e.g. runpod)")
        elif e.key == "id":
            ident = None if yl.is_null(e.value) else nonempty(ck, e.value, sub, "the provider's instance id")
        else:
            more: list[yl.Issue] = []
            options[e.key] = yl.frozen_value(e.value, more)
            ck.issues(more, sub)
    if not any(e.key == "type" for e in entries):
        ck.problem(node, field, "missing 'type' (the provider's name, e.g. type: runpod)")
    if kind is INVALID or ident is INVALID:
        return INVALID
    return ProviderConfig(kind, ident, types.MappingProxyType(options), yl.line_of(node))


def _entries_list(ck: Checker, node: Node, field: str, what: str, item: str,
                  build: Callable[[Checker, Node, str, dict[str, int]], Any]) -> Any:
    """A list of named entries (pods, sessions), names unique within the list."""
    if not isinstance(node, SequenceNode):
        message = f"expected a list of {what} (each item starts with '- name: ...'), got {got(node)}"
        if isinstance(node, MappingNode):
            message += f"; write each {item} as '- name: <name>' followed by its keys"
        return ck.problem(node, field, message)
    seen: dict[str, int] = {}
    built = [build(ck, entry, f"{field}[{i}]", seen) for i, entry in enumerate(node.value)]
    return tuple(b for b in built if b is not INVALID)


def _unique(ck: Checker, node: Node, values: dict[str, Any], field: str, seen: dict[str, int],
            kind: str) -> None:
    """Flag the second use of a name, pointing back at the first."""
    if "name" not in values:
        return
    entries, _ = yl.mapping_entries(node)  # type: ignore[arg-type]
    name_node = next(e.value for e in entries if e.key == "name")
    if values["name"] in seen:
        ck.problem(name_node, join(field, "name"),
                   f"duplicate {kind} name {values['name']!r} (first used on line "
                   f"{seen[values['name']]}); {kind} names must be unique")
        values.pop("name")
    else:
        seen[values["name"]] = yl.line_of(node)


def _session(ck: Checker, node: Node, field: str, seen: dict[str, int]) -> Any:
    label = _peek_name(node)
    prefix = f"{field} ({label})" if label else field
    values = walk(ck, node, prefix, "session", "a session entry (a mapping with at least name:)")
    if values is None:
        return INVALID
    _unique(ck, node, values, prefix, seen, "session")
    if not _required(ck, node, prefix, "name", values, "a name for the session, unique in this pod"):
        return INVALID
    return SessionConfig(**values, line=yl.line_of(node))


def sessions(ck: Checker, node: Node, field: str) -> Any:
    return _entries_list(ck, node, field, "sessions", "session", _session)


def _pod(ck: Checker, node: Node, field: str, seen: dict[str, int]) -> Any:
    label = _peek_name(node)
    prefix = f"{field} ({label})" if label else field
    values = walk(ck, node, prefix, "pod", "a pod entry (a mapping with at least name: and host:)")
    if values is None:
        return INVALID
    _unique(ck, node, values, prefix, seen, "pod")
    has_name = _required(ck, node, prefix, "name", values, "a unique name for the pod, e.g. name: a100-west")
    has_host = _required(ck, node, prefix, "host", values,
                         f"an IP address, a host name, an alias from ~/.ssh/config, or {LOCAL_HOST!r}")
    if not (has_name and has_host):
        return INVALID
    return PodConfig(**values, line=yl.line_of(node))


def pods(ck: Checker, node: Node, field: str) -> Any:
    return _entries_list(ck, node, field, "pods", "pod", _pod)


def build_config(root: Node | None, path: Path) -> Config:
    """Validate a composed document and build the Config.

    Raises:
        ConfigError: listing every problem, in file order.
    """
    ck = Checker(path)
    if root is None:
        ck.problem(None, "", "the file is empty: no pods configured")
        raise ConfigError(ck.sorted_problems(), EXAMPLE)
    what = "a mapping at the top level (keys such as 'pods:' and 'defaults:')"
    if isinstance(root, SequenceNode) and root.value and _peek_name(root.value[0]):
        what += "; put the list of pods under 'pods:'"
    values = walk(ck, root, "", "top", what)
    hint = None
    if values is not None:
        pods_entry = next((e for e in yl.mapping_entries(root)[0] if e.key == "pods"), None)  # type: ignore[arg-type]
        empty_list = isinstance(pods_entry and pods_entry.value, SequenceNode) and not pods_entry.value.value
        if pods_entry is None or yl.is_null(pods_entry.value) or empty_list:
            where = pods_entry.value if pods_entry is not None else None
            ck.problem(where, "pods", "no pods configured; add at least one under 'pods:'")
            hint = EXAMPLE
    if ck.problems or values is None:
        raise ConfigError(ck.sorted_problems(), hint)
    values.setdefault("defaults", Defaults())
    return Config(path=path, **values)
