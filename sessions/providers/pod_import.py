"""`gpuctl pods import`: turn a provider's running instances into pod entries in the config.

The config file is edited as text, not re-dumped, so comments, order and formatting
survive: the new entries are appended at the end of the `pods:` list (or a `pods:`
list is added). The result is validated before it is written, and written
atomically with the old file's mode. An instance whose provider id is already in
the config is never added twice.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from backends.providers.base import InstanceInfo, InstanceState
from sessions.config import yaml_lines as yl
from sessions.config.loader import Config, parse_config

PROXY_NOTE = ("RunPod proxied SSH: an interactive shell only (no exec channel, no SFTP); "
              "expose 22/tcp on the pod for direct TCP, which is faster and works everywhere")
_PLAIN = re.compile(r"[A-Za-z0-9_./-]+")  # no ":" or "@": they mean things in flow mappings
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


class ImportError_(Exception):
    """The config cannot be edited safely (the message says why and what to do)."""


@dataclass(frozen=True)
class NewPod:
    """A pod entry to add, from one instance."""

    name: str
    info: InstanceInfo
    text: str


@dataclass
class ImportPlan:
    """What an import would do.

    Attributes:
        added: entries to add, in the provider's order.
        skipped: (instance, why) for instances not added.
    """

    added: list[NewPod] = field(default_factory=list)
    skipped: list[tuple[InstanceInfo, str]] = field(default_factory=list)


def scalar(value: object) -> str:
    """A YAML scalar for `value`: plain when unambiguous, else double-quoted (JSON)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS and text[0] != "-":
        return text
    return json.dumps(text)


def pod_name(info: InstanceInfo, provider_type: str, taken: set[str]) -> str:
    """A valid, unused pod name from the instance's name (else type-id)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", (info.name or "").strip()).strip("-.")
    if not base:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{provider_type}-{info.id}").strip("-.")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def entry_text(name: str, info: InstanceInfo, provider_type: str, indent: int,
               provider_extra: dict[str, object] | None = None) -> str:
    """One pod entry as YAML block text, its dash at column `indent`."""
    pad = " " * indent
    lines = []
    if info.ssh_proxied:
        lines.append(f"{pad}# {PROXY_NOTE}")
    lines.append(f"{pad}- name: {scalar(name)}")
    body: list[tuple[str, object]] = [("host", info.ssh_host)]
    if info.ssh_port and info.ssh_port != 22:
        body.append(("port", info.ssh_port))
    body.append(("user", info.ssh_user))
    # A new cloud host's key is unknown: record it on first connect, as OpenSSH's
    # accept-new does (never "accept anything"), and said here where it can be changed.
    body.append(("host_key", "accept-new"))
    if info.price_per_hour is not None and info.price_per_hour > 0:
        body.append(("price_per_hour", round(info.price_per_hour, 4)))
    provider = {"type": provider_type, "id": str(info.id), **(provider_extra or {})}
    if info.ssh_proxied:
        provider["ssh_proxy"] = True
    for key, value in body:
        if value is not None:
            lines.append(f"{pad}  {key}: {scalar(value)}")
    if info.ssh_user is None:
        lines.append(f"{pad}  # user: set the SSH login; {provider_type} does not say which one the image uses")
    inner = ", ".join(f"{k}: {scalar(v)}" for k, v in provider.items())
    lines.append(f"{pad}  provider: {{{inner}}}")
    return "\n".join(lines) + "\n"


def plan(config: Config | None, provider_type: str, instances: list[InstanceInfo], *,
         indent: int = 2, provider_extra: dict[str, object] | None = None) -> ImportPlan:
    """Which instances become pod entries, and why the others do not."""
    result = ImportPlan()
    pods = config.pods if config else ()
    known = {(p.provider.type, p.provider.id): p.name for p in pods if p.provider and p.provider.id}
    taken = {p.name for p in pods}
    for info in instances:
        if (provider_type, str(info.id)) in known:
            result.skipped.append((info, f"already in the config as pod {known[(provider_type, str(info.id))]!r}"))
        elif info.state not in (InstanceState.RUNNING, InstanceState.STARTING):
            result.skipped.append((info, f"not running ({info.raw_status or info.state})"))
        elif not info.ssh_host:
            result.skipped.append((info, "no SSH address yet (still starting?); import again in a minute"))
        else:
            name = pod_name(info, provider_type, taken)
            taken.add(name)
            result.added.append(NewPod(name, info, entry_text(name, info, provider_type, indent, provider_extra)))
    return result


# --- editing the file -----------------------------------------------------------------


def _pods_node(root: object, name: str = "pods") -> tuple[ScalarNode, Node] | None:
    if not isinstance(root, MappingNode):
        return None
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == name:
            return key, value
    return None


def list_indent(text: str, name: str = "pods") -> int:
    """Column of the `-` of the existing entries of list `name` (2 when there are none)."""
    root = yl.compose(text) if text.strip() else None
    found = _pods_node(root, name)
    if found and isinstance(found[1], SequenceNode) and found[1].value and not found[1].flow_style:
        line = text.splitlines()[found[1].value[0].start_mark.line]
        stripped = line.lstrip()
        if stripped.startswith("-"):
            return len(line) - len(stripped)
    return 2


def insert_pods(text: str, entries: str, name: str = "pods") -> str:
    """`text` with `entries` (block YAML, already indented) appended to its `pods:` list
    (or the top-level list `name`, e.g. `jobs`).

    Raises:
        ImportError_: the list is a non-empty flow list (`[a, b]`) or not a list.
    """
    if text and not text.endswith("\n"):
        text += "\n"
    root = yl.compose(text) if text.strip() else None
    found = _pods_node(root, name)
    if found is None:
        return text + f"{name}:\n" + entries
    key, node = found
    lines = text.splitlines(keepends=True)
    if isinstance(node, SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        end = last.end_mark
        last_line = end.line if end.column > 0 else end.line - 1
        dash = list_indent(text, name)
        # Trailing blank lines and comments at the list's own level belong after it.
        while last_line > last.start_mark.line:
            stripped = lines[last_line].strip()
            indent = len(lines[last_line]) - len(lines[last_line].lstrip())
            if stripped and not (stripped.startswith("#") and indent <= dash):
                break
            last_line -= 1
        if not lines[last_line].endswith("\n"):
            lines[last_line] += "\n"
        return "".join(lines[: last_line + 1]) + entries + "".join(lines[last_line + 1:])
    empty_flow = isinstance(node, SequenceNode) and node.flow_style and not node.value
    empty_null = isinstance(node, ScalarNode) and node.tag == yl.NULL_TAG
    if empty_flow or empty_null:
        # `pods: []` or `pods:`: the value becomes the new block list.
        before, after = text[: key.end_mark.index], text[node.end_mark.index:]
        head = before + ":"
        rest = after.lstrip(" \t")
        comment = ""
        if rest.startswith("#"):
            comment, _, rest = rest.partition("\n")
            comment = "  " + comment
        elif rest.startswith("\n"):
            rest = rest[1:]
        return head + comment + "\n" + entries + rest
    if isinstance(node, SequenceNode):
        raise ImportError_(f"'{name}:' is written as a [flow, list]; write it as a block list "
                           "(one '- name: ...' per line) so gpuctl can append to it")
    raise ImportError_(f"'{name}:' is not a list; fix the config first (gpuctl config check)")


def write_config(path: Path, new_text: str) -> None:
    """Validate `new_text`, then replace `path` atomically, keeping its mode."""
    parse_config(new_text, path)  # raises ConfigError: never write a file gpuctl cannot read
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
