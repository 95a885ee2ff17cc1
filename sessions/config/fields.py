"""Field validators for the config: one small function per kind of value.

Each validator takes a `Checker`, the YAML node and the field path, records a problem
(with the node's line and column) and returns INVALID when the value is wrong, so a
whole file is checked in one pass. Messages say what was expected and what YAML
actually read (`got yes (YAML reads yes as the boolean true)`).

Two deliberate leniencies, because YAML 1.1 types plain words on its own:
* A text field takes any scalar as written: `name: 4090`, `CUDA_VISIBLE_DEVICES: 0`,
  `id: 123456` (Vast.ai ids are numbers) or `command: true` are meant as text.
* An empty value (`user:`, `~`, `null`) means "not set", like leaving the key out
  (handled by the section walker in `config_schema`).
Numbers and booleans are strict: `port: "22"` or `price_per_hour: yes` are errors.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sessions.config import yaml_lines as yl
from sessions.config.names import UnsafeName, check_relative, tmux_name_problem
from sessions.config.model import (
    HOST_KEY_POLICIES,
    KEY_BINDING_IDS,
    LOCAL_HOST,
    ConfigProblem,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROGRESS_GROUPS: tuple[str, ...] = ("step", "total", "loss", "rate")
"""Named groups a session's `progress` regex may capture."""


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
    if isinstance(node, ScalarNode) and node.tag == yl.BOOL_TAG:  # only a scalar carries !!bool
        try:
            meaning = "true" if yl.scalar_value(node) else "false"
        except yl.ScalarError:  # `!!bool maybe`: tagged boolean, but not one
            return f"{node.value!r} (not a boolean YAML knows)"
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
    spellings like `IdentityFile`, `hostname`); the one choice that starts with
    `word` (`price` -> `price_per_hour`, where difflib would say `provider`);
    difflib's closest match.
    """
    norm = word.lower().replace("-", "_")
    for choice in choices:
        if choice.lower().replace("-", "_") == norm:
            return choice
    alias = aliases.get(norm)
    if alias in choices:
        return alias
    starts = [c for c in choices if len(norm) >= 3 and c.startswith(norm)]
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(norm, choices, n=1, cutoff=0.6)
    return close[0] if close else None


# --- scalar validators ---------------------------------------------------------------


def text(ck: Checker, node: Node, field: str, what: str = "text") -> Any:
    """Any scalar, as written (see module docstring for why numbers count as text)."""
    if not isinstance(node, ScalarNode) or node.tag == yl.NULL_TAG:
        return ck.problem(node, field, f"expected {what}, got {got(node)}")
    if node.tag.startswith("!"):
        return ck.problem(node, field, f"the YAML tag {node.tag} is not supported here")
    if "\0" in node.value:
        # Only a `"\0"` escape gets here; no argv, path, environment value or name
        # can carry one (the OS cuts the string there or refuses it).
        return ck.problem(node, field, f"holds a NUL character (\\0), which no command, path or name "
                                       f"can carry: {node.value!r}")
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


def pod_name(ck: Checker, node: Node, field: str) -> Any:
    """A pod name is a folder in local paths (`download_dir: checkpoints/{pod}/...`)."""
    value = name(ck, node, field)
    if value in (".", ".."):
        return ck.problem(node, field, f"{value!r} cannot name a pod: it names a folder in the paths "
                                       "gpuctl builds from pod names (checkpoints/{pod}/...)")
    return value


def session_name(ck: Checker, node: Node, field: str) -> Any:
    """A session name is its tmux session's name, which tmux must keep exactly as
    written: tmux stores `a.b` as `a_b`, so gpuctl would never find `a.b` and would
    take `a_b` (another session, or an adopted one) for it."""
    value = name(ck, node, field)
    if value is INVALID:
        return value
    problem = tmux_name_problem(value)
    return ck.problem(node, field, problem) if problem else value


def _control_character(value: str) -> str | None:
    """The first control character in `value` (C0, DEL or C1), or None."""
    return next((c for c in value if unicodedata.category(c) == "Cc"), None)


def host(ck: Checker, node: Node, field: str) -> Any:
    """Reject what would reach `ssh` as an option or hide a port/user in the host."""
    what = f"an IP address, a host name, an alias from ~/.ssh/config, or {LOCAL_HOST!r}"
    value = nonempty(ck, node, field, what)
    if value is INVALID:
        return value
    control = _control_character(value)
    if control is not None:
        # A host reaches ssh's argv, ~/.ssh/config matching and messages on a terminal.
        return ck.problem(node, field, f"expected {what}, got {value!r} (it contains the control "
                                       f"character {control!r})")
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
    control = _control_character(value)
    if control is not None:
        return ck.problem(node, field, f"expected {what}, got {value!r} (it contains the control "
                                       f"character {control!r})")
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


def minutes(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a number of minutes greater than 0",
                  integer=False, low=0, above=True)


def positive_int(ck: Checker, node: Node, field: str) -> Any:
    return number(ck, node, field, what="a whole number greater than 0", integer=True, low=0, above=True)


def boolean(ck: Checker, node: Node, field: str) -> Any:
    if not isinstance(node, ScalarNode) or node.tag != yl.BOOL_TAG:
        hint = _quoted_hint(node, lambda t: t.lower() in ("true", "false", "yes", "no"))
        return ck.problem(node, field, f"expected true or false, got {got(node)}{hint}")
    try:
        return yl.scalar_value(node)
    except yl.ScalarError as exc:
        return ck.problem(node, field, f"expected true or false; {exc}")


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


def _one_or_list(node: Node, field: str) -> tuple[list[Node], list[str]] | None:
    """The items of a list, or of one value written alone (people write `checkpoints:
    "out/ckpt-*"` for a single pattern, and it means only one thing), each with its
    field path; None when the node is neither."""
    if isinstance(node, ScalarNode):
        return [node], [field]
    if isinstance(node, SequenceNode):
        return list(node.value), [f"{field}[{i}]" for i in range(len(node.value))]
    return None


def globs(ck: Checker, node: Node, field: str) -> Any:
    """Glob patterns: a list, or one pattern written alone."""
    found = _one_or_list(node, field)
    if found is None:
        return ck.problem(node, field, f"expected a glob pattern or a list of them, got {got(node)}")
    items, fields = found
    values = [nonempty(ck, item, sub, "a glob pattern") for item, sub in zip(items, fields)]
    for i, (item, value) in enumerate(zip(items, values)):
        if value is INVALID:
            continue
        try:
            check_relative(value, "checkpoints glob")  # the rule listing applies, said at check time
        except UnsafeName as exc:
            values[i] = ck.problem(item, fields[i], str(exc))
    return INVALID if INVALID in values else tuple(values)


def trackers(ck: Checker, node: Node, field: str) -> Any:
    """A session's tracker files or run folders: one path or a list (relative paths are
    under its workdir), or `false` to read none; left out, the workdir is searched."""
    if isinstance(node, ScalarNode) and node.tag == yl.BOOL_TAG:
        if yl.scalar_value(node) is False:
            return ()
        return ck.problem(node, field, "expected a path, a list of paths, or false (read no tracker files)")
    found = _one_or_list(node, field)
    if found is None:
        return ck.problem(node, field, f"expected a path, a list of paths, or false, got {got(node)}")
    items, fields = found
    values = [nonempty(ck, item, sub, "a tracker file or folder") for item, sub in zip(items, fields)]
    return INVALID if INVALID in values else tuple(values)


def key_bindings(ck: Checker, node: Node, field: str) -> Any:
    """`keys:`: binding id -> key, every id one the TUI has (`KEY_BINDING_IDS`)."""
    value = string_map(ck, node, field)
    if value is INVALID:
        return value
    entries, _ = yl.mapping_entries(node)  # type: ignore[arg-type]
    ok = True
    for e in entries:
        if e.key not in KEY_BINDING_IDS:
            close = suggest(e.key, KEY_BINDING_IDS)
            hint = f"did you mean {close!r}?" if close else f"ids: {', '.join(KEY_BINDING_IDS)}"
            ok = ck.problem(e.key_node, join(field, e.key), f"no key binding with id {e.key!r}; {hint}")
    return value if ok is True else INVALID


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


def env_name(ck: Checker, node: Node, field: str) -> Any:
    """The *name* of an environment variable (the value is read at use, never stored)."""
    what = "an environment variable name (letters, digits and '_', not starting with a digit)"
    value = nonempty(ck, node, field, what)
    if value is INVALID or ENV_NAME_PATTERN.fullmatch(value):
        return value
    hint = ""
    if len(value) >= 16 and not any(c.isspace() for c in value):
        # A long opaque word is most likely the key pasted where its variable's name goes.
        hint = "; this looks like a key itself: put the key in an environment variable and name that variable here"
    return ck.problem(node, field, f"expected {what}, got {'a value' if hint else repr(value)}{hint}")


def url(ck: Checker, node: Node, field: str) -> Any:
    """An http(s) server root such as `https://api.example.com` (no query, no login)."""
    from urllib.parse import urlsplit

    what = "an http:// or https:// URL (the server root, e.g. https://api.runpod.io)"
    value = nonempty(ck, node, field, what)
    if value is INVALID:
        return value
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ck.problem(node, field, f"expected {what}, got {value!r}")
    if parts.username or parts.password:
        return ck.problem(node, field, "must not carry a user or password; the API key comes from an "
                                       "environment variable (see api_key_env)")
    if parts.query or parts.fragment:
        return ck.problem(node, field, f"expected {what} without '?' or '#', got {value!r}")
    return value.strip().rstrip("/")


def raw(ck: Checker, node: Node, field: str) -> Any:
    """A mapping kept as frozen plain data for a later validator."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping, got {got(node)}")
    issues: list[yl.Issue] = []
    value = yl.frozen_value(node, issues)
    ck.issues(issues, field)
    return value
