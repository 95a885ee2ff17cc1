"""Check a composed YAML tree against gpuctl's config schema and build the `Config`.

The schema is the tables of field validators below (one per section: top level,
`defaults`, pod, session); `walk` applies a table to a mapping node, reports unknown
keys with the most useful hint it can find, and treats empty values as "not set".
Every problem is collected, not just the first, with a field path such as
`pods[1] (a100-west).port`, so one run of `gpuctl config check` lists everything.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sessions.config import policy_schema

from sessions.config import shell_template
from sessions.config import yaml_lines as yl
from sessions.config.fields import (
    INVALID,
    _one_or_list,
    NAME_PATTERN,
    PROGRESS_GROUPS,
    Checker,
    Validator,
    boolean,
    env,
    env_name,
    globs,
    got,
    host,
    host_key,
    identity,
    join,
    key_bindings,
    minutes,
    nonempty,
    pod_name,
    port,
    positive_int,
    price,
    progress,
    seconds,
    session_name,
    suggest,
    trackers,
    url,
    user,
)
from sessions.config.model import (
    LOCAL_HOST,
    POD_KINDS,
    PROVIDER_TYPES,
    Config,
    ConfigError,
    JOB_PLACEHOLDERS,
    Defaults,
    JobConfig,
    PodConfig,
    ProviderConfig,
    SessionConfig,
    SlurmConfig,
)

__all__ = ["EXAMPLE", "PROGRESS_GROUPS", "build_config"]

EXAMPLE = """\
A minimal config:
  pods:
    - name: my-pod
      host: 203.0.113.7      # an IP, a host name, an alias from ~/.ssh/config, or `local`
      user: root"""
"""Pasted into "file not found" and "no pods" messages."""


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


# --- sections ------------------------------------------------------------------------

SESSION_FIELDS: dict[str, Validator] = {
    "name": session_name, "command": nonempty, "workdir": nonempty, "env": env, "log": nonempty,
    "total_steps": positive_int, "progress": progress,
    "resume": shell_template.field(shell_template.RESUME_PLACEHOLDERS), "checkpoints": globs,
    "stall_minutes": minutes, "policies": policy_schema.policies, "trackers": trackers,
}
def pod_kind(ck: Checker, node: Node, field: str) -> Any:
    """`kind:` of a pod: ssh (a machine) or slurm (a cluster's login node)."""
    value = nonempty(ck, node, field, "a pod kind")
    if value is INVALID or value in POD_KINDS:
        return value
    return ck.problem(node, field, f"unknown kind {value!r}; expected one of {', '.join(POD_KINDS)}")


def texts(ck: Checker, node: Node, field: str) -> Any:
    """Non-empty strings: a list, or one written alone."""
    found = _one_or_list(node, field)
    if found is None:
        return ck.problem(node, field, f"expected text or a list of texts, got {got(node)}")
    values = [nonempty(ck, item, sub) for item, sub in zip(*found)]
    return INVALID if INVALID in values else tuple(values)


SLURM_FIELDS: dict[str, Validator] = {
    "script": nonempty, "price_per_gpu_hour": price, "all_users": boolean,
    "checkpoints": texts, "sbatch_args": texts,
}
POD_FIELDS: dict[str, Validator] = {
    "name": pod_name, "host": host, "port": port, "user": user, "identity": identity,
    "host_key": host_key, "price_per_hour": price, "workdir": nonempty,
    "provider": lambda ck, n, f: provider(ck, n, f),
    "sessions": lambda ck, n, f: sessions(ck, n, f),
    "connect_timeout": seconds, "interval": seconds, "policies": policy_schema.policies,
    "kind": pod_kind, "slurm": lambda ck, n, f: slurm_block(ck, n, f),
}
DEFAULTS_FIELDS: dict[str, Validator] = {
    "user": user, "identity": identity, "host_key": host_key, "port": port,
    "connect_timeout": seconds, "command_timeout": seconds, "interval": seconds,
}
JOB_FIELDS: dict[str, Validator] = {
    "name": pod_name, "pods": texts, "session": session_name, "master_addr": host, "master_port": port,
    "hostfile": nonempty,
}
TOP_FIELDS: dict[str, Validator] = {
    "defaults": lambda ck, n, f: defaults(ck, n, f),
    "pods": lambda ck, n, f: pods(ck, n, f),
    "read_only": boolean, "keys": key_bindings,
    "policies": policy_schema.policies, "theme": nonempty,
    "jobs": lambda ck, n, f: jobs(ck, n, f),
}
SECTIONS: dict[str, tuple[str, dict[str, Validator]]] = {
    "top": ("the top level", TOP_FIELDS),
    "defaults": ("'defaults:'", DEFAULTS_FIELDS),
    "pod": ("a pod entry under 'pods:'", POD_FIELDS),
    "session": ("a session entry under a pod's 'sessions:'", SESSION_FIELDS),
    "slurm": ("a pod's 'slurm:' block", SLURM_FIELDS),
    "job": ("a job entry under 'jobs:'", JOB_FIELDS),
}


def slurm_block(ck: Checker, node: Node, field: str) -> Any:
    values = walk(ck, node, field, "slurm", "a mapping (script:, price_per_gpu_hour:, ...)")
    return INVALID if values is None else SlurmConfig(**values)


def unknown_key(ck: Checker, entry: yl.Entry, field: str, section: str) -> None:
    """Report a key the section does not have, with the most useful hint we can give."""
    where, spec = SECTIONS[section]
    valid = tuple(spec)
    message = f"unknown key {entry.key!r}"
    elsewhere = [s for s, (_, other) in SECTIONS.items() if s != section and entry.key in other]
    close = suggest(entry.key, valid, KEY_ALIASES)
    if elsewhere:
        message += f"; it belongs in {SECTIONS[elsewhere[0]][0]}, not in {where}"
    elif entry.key in policy_schema.POLICY_KEYS:
        message += f"; it is a policy: put it under 'policies:' (in {where})"
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


# Per provider type: the option keys it understands beyond `type` and `id`. `region`
# is accepted everywhere (informational for most, used by the aws CLI).
_HTTP_OPTIONS = ("api_key_env", "api_url", "region")
PROVIDER_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "runpod": (*_HTTP_OPTIONS, "ssh_proxy"),
    "vastai": _HTTP_OPTIONS,
    "lambda": _HTTP_OPTIONS,
    "tensordock": _HTTP_OPTIONS,
    "thunder": _HTTP_OPTIONS,
    "crusoe": (*_HTTP_OPTIONS, "project", "access_key_env"),
    "aws": ("region", "profile", "api_url"),
    "gcp": ("zone", "project", "region"),
    "azure": ("resource_group", "subscription", "region"),
    "skypilot": ("region",),
    "dstack": ("project", "region"),
    "ssh": ("shutdown_stops_billing", "region"),
}
"""Option keys per provider type (`type` and `id` are always allowed)."""

PROVIDER_ALIASES: Mapping[str, str] = {
    "vast": "vastai", "vast.ai": "vastai", "vast_ai": "vastai", "vast-ai": "vastai",
    "lambdalabs": "lambda", "lambda_labs": "lambda", "lambda-labs": "lambda",
    "lambda_cloud": "lambda", "lambda-cloud": "lambda", "lambdacloud": "lambda",
    "ec2": "aws", "gce": "gcp", "google": "gcp", "gcloud": "gcp", "az": "azure",
    "sky": "skypilot", "tnr": "thunder", "thundercompute": "thunder",
    "thunder_compute": "thunder", "thunder-compute": "thunder", "crusoecloud": "crusoe",
    "runpod.io": "runpod",
}
"""Other spellings people write, read as the canonical type without complaint."""

# The API path gpuctl appends to `api_url`; a URL already ending in it would double it.
_API_PREFIX = {"runpod": "/v2", "vastai": "/api/v0", "lambda": "/api/v1",
               "tensordock": "/api/v2", "thunder": "/v1", "crusoe": "/v1"}
_CLI_AUTH = {
    "aws": "the aws CLI's own credentials (aws configure, AWS_PROFILE)",
    "gcp": "gcloud's own login (gcloud auth login)",
    "azure": "the az CLI's own login (az login)",
    "skypilot": "SkyPilot's own cloud credentials (sky check)",
    "dstack": "dstack's own server login (dstack config)",
    "ssh": "nothing: an ssh pod has no provider API",
}
_SECRET_WORDS = ("api_key", "apikey", "key", "token", "secret", "api_token", "password", "secret_key")
_PROVIDER_OPTION_CHECKS: dict[str, Validator] = {
    "api_key_env": env_name, "access_key_env": env_name, "api_url": url,
    "shutdown_stops_billing": boolean, "ssh_proxy": boolean,
}
# Options kept in `options` as checked text.
_PROVIDER_TEXT_OPTIONS = ("region", "profile", "zone", "project", "resource_group", "subscription")


def _provider_type(ck: Checker, node: Node, field: str) -> Any:
    value = nonempty(ck, node, field, "the provider's name (e.g. runpod)")
    if value is INVALID:
        return value
    norm = value.strip().lower()
    if norm in PROVIDER_TYPES:
        return norm
    if norm in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[norm]
    close = suggest(norm, PROVIDER_TYPES, PROVIDER_ALIASES)
    hint = f"did you mean {close!r}?" if close else f"known providers: {', '.join(PROVIDER_TYPES)}"
    return ck.problem(node, field, f"unknown provider {value!r}; {hint}")


def _provider_option(ck: Checker, kind: str, entry: yl.Entry, field: str) -> Any:
    """One option key of a provider entry of type `kind`, checked; INVALID if wrong."""
    known = PROVIDER_OPTIONS[kind]
    key = entry.key
    if key in known:
        check = _PROVIDER_OPTION_CHECKS.get(key, nonempty)
        value = check(ck, entry.value, field)
        if value is not INVALID and key == "api_url" and kind in _API_PREFIX:
            prefix = _API_PREFIX[kind]
            if value.lower().endswith(prefix):
                return ck.problem(entry.value, field,
                                  f"is the server root; gpuctl appends {prefix}/... itself, so write "
                                  f"{value[: -len(prefix)]!r}")
        return value
    if key.lower() in _SECRET_WORDS:
        if kind in _CLI_AUTH:
            message = f"{kind} takes no API key here; it uses {_CLI_AUTH[kind]}"
        else:
            message = ("the API key never goes in the config: put it in an environment variable "
                       "(the provider's usual one, or the one api_key_env names)")
        return ck.problem(entry.key_node, field, message)
    if key == "api_key_env" and kind in _CLI_AUTH:
        return ck.problem(entry.key_node, field, f"{kind} has no API key to read; it uses {_CLI_AUTH[kind]}")
    if key == "shutdown_stops_billing":
        return ck.problem(entry.key_node, field, "only type: ssh has shutdown_stops_billing")
    if key == "api_url" and kind in _CLI_AUTH:
        return ck.problem(entry.key_node, field, f"{kind} is reached through its CLI, which has no api_url here")
    close = suggest(key, known)
    hint = f"did you mean {close!r}?" if close else f"keys {kind} understands: type, id, {', '.join(known)}"
    return ck.problem(entry.key_node, field, f"unknown key {key!r} for provider {kind}; {hint}")


def provider(ck: Checker, node: Node, field: str) -> Any:
    """`type` first (it decides which other keys are valid), then `id` and the options."""
    if not isinstance(node, MappingNode):
        return ck.problem(node, field, f"expected a mapping with 'type:' (e.g. type: runpod), got {got(node)}")
    entries, issues = yl.mapping_entries(node)
    ck.issues(issues, field)
    type_entry = next((e for e in entries if e.key == "type"), None)
    if type_entry is None:
        ck.problem(node, field, "missing 'type' (the provider's name, e.g. type: runpod)")
        return INVALID
    kind = _provider_type(ck, type_entry.value, join(field, "type"))
    if kind is INVALID:
        return INVALID
    ident: Any = None
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    ok = True
    for e in entries:
        sub = join(field, e.key)
        if e.key == "type":
            continue
        if e.key == "id":
            ident = None if yl.is_null(e.value) else nonempty(ck, e.value, sub, "the provider's instance id")
            ok = ok and ident is not INVALID
            continue
        if yl.is_null(e.value):
            continue
        value = _provider_option(ck, kind, e, sub)
        if value is INVALID:
            ok = False
        elif e.key in ("api_key_env", "api_url", "shutdown_stops_billing"):
            values[e.key] = value
        else:
            options[e.key] = value
    if not ok:
        return INVALID
    return ProviderConfig(kind, ident, types.MappingProxyType(options), yl.line_of(node), **values)


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


def _named_entry(ck: Checker, node: Node, field: str, seen: dict[str, int], kind: str,
                 what: str) -> tuple[str, dict[str, Any] | None]:
    """One entry of a list of named things (sessions, pods, jobs): its field path
    labelled with its name (`pods[1] (a100)`), its valid values (None: not a mapping),
    and a second use of its name flagged (`_unique`)."""
    label = _peek_name(node)
    prefix = f"{field} ({label})" if label else field
    values = walk(ck, node, prefix, kind, what)
    if values is not None:
        _unique(ck, node, values, prefix, seen, kind)
    return prefix, values


def _session(ck: Checker, node: Node, field: str, seen: dict[str, int]) -> Any:
    prefix, values = _named_entry(ck, node, field, seen, "session", "a session entry (a mapping with at least name:)")
    if values is None:
        return INVALID
    if not _required(ck, node, prefix, "name", values, "a name for the session, unique in this pod"):
        return INVALID
    return SessionConfig(**values, line=yl.line_of(node))


def sessions(ck: Checker, node: Node, field: str) -> Any:
    return _entries_list(ck, node, field, "sessions", "session", _session)


def _pod(ck: Checker, node: Node, field: str, seen: dict[str, int]) -> Any:
    prefix, values = _named_entry(ck, node, field, seen, "pod", "a pod entry (a mapping with at least name: and host:)")
    if values is None:
        return INVALID
    has_name = _required(ck, node, prefix, "name", values, "a unique name for the pod, e.g. name: a100-west")
    has_host = _required(ck, node, prefix, "host", values,
                         f"an IP address, a host name, an alias from ~/.ssh/config, or {LOCAL_HOST!r}")
    if not (has_name and has_host):
        return INVALID
    if "slurm" in values and values.get("kind") != "slurm":
        entry = next(e for e in yl.mapping_entries(node)[0] if e.key == "slurm")  # type: ignore[arg-type]
        ck.problem(entry.key_node, join(prefix, "slurm"), "a 'slurm:' block needs 'kind: slurm' in the same pod")
        return INVALID
    return PodConfig(**values, line=yl.line_of(node))


def pods(ck: Checker, node: Node, field: str) -> Any:
    return _entries_list(ck, node, field, "pods", "pod", _pod)


def _job(ck: Checker, node: Node, field: str, seen: dict[str, int]) -> Any:
    prefix, values = _named_entry(ck, node, field, seen, "job", "a job entry (a mapping with name:, pods: and session:)")
    if values is None:
        return INVALID
    ok = _required(ck, node, prefix, "name", values, "a unique name for the job")
    if "pods" in values and "hostfile" in values:
        ck.problem(node, prefix, "give either pods: or hostfile:, not both (the hostfile says the pods)")
        ok = False
    elif "hostfile" not in values:
        ok = _required(ck, node, prefix, "pods", values, "its pods in rank order, e.g. pods: [node0, node1]") and ok
    return JobConfig(**values, line=yl.line_of(node)) if ok else INVALID


def jobs(ck: Checker, node: Node, field: str) -> Any:
    return _entries_list(ck, node, field, "jobs", "job", _job)


def _job_nodes(root: Node) -> dict[str | None, Node]:
    """Each `jobs:` entry's node by its name, for the line a later check points at."""
    entry = next((e for e in yl.mapping_entries(root)[0] if e.key == "jobs"), None)  # type: ignore[arg-type]
    return {_peek_name(n): n for n in entry.value.value} if entry and isinstance(entry.value, SequenceNode) else {}


def _jobs_from_hostfiles(ck: Checker, root: Node, built: tuple[JobConfig, ...], pod_list: tuple[PodConfig, ...],
                         path: Path) -> tuple[JobConfig, ...]:
    """Each job given a `hostfile:` with its pods read from it (sessions/config/hostfile.py)."""
    from dataclasses import replace

    from sessions.config import hostfile

    nodes = _job_nodes(root)
    out = []
    for i, job in enumerate(built):
        if job.hostfile is None:
            out.append(job)
            continue
        where = nodes.get(job.name)
        field = join(f"jobs[{i}] ({job.name})", "hostfile")
        hosts, why = hostfile.read_hostfile(job.hostfile, path)
        names, problems = hostfile.pods_for(hosts, pod_list, job.hostfile)
        for problem in ([why] if why else problems):
            ck.problem(where, field, problem)
        out.append(replace(job, pods=tuple(names)))
    return tuple(out)


def check_jobs(ck: Checker, root: Node, built: tuple[JobConfig, ...], pod_list: tuple[PodConfig, ...]) -> None:
    """Each job's pods exist, are distinct, and configure its session with a command
    that renders with the rank placeholders (`{rank}`, `{nnodes}`...)."""
    nodes = _job_nodes(root)
    by_name = {p.name: p for p in pod_list}
    for i, job in enumerate(built):
        where = nodes.get(job.name)
        field = f"jobs[{i}] ({job.name})"
        if len(set(job.pods)) != len(job.pods):
            ck.problem(where, join(field, "pods"), "a pod appears twice; each rank needs a pod of its own")
        for name in job.pods:
            pod = by_name.get(name)
            if pod is None:
                close = suggest(name, tuple(by_name))
                ck.problem(where, join(field, "pods"), f"no pod {name!r}" + (f"; did you mean {close!r}?" if close else ""))
                continue
            if job.session is None:
                continue  # nodes grouped only (an imported cluster): nothing to launch yet
            session = next((s for s in pod.sessions if s.name == job.session), None)
            if session is None or not session.command:
                ck.problem(where, join(field, "session"),
                           f"pod {name!r} has no session {job.session!r} with a command to run")
                continue
            why = shell_template.check(session.command, JOB_PLACEHOLDERS)
            if why:
                ck.problem(where, join(field, "session"), f"the command of {name!r}'s {job.session!r}: {why}")
            why = session.resume and shell_template.check(
                session.resume, (*shell_template.RESUME_PLACEHOLDERS, *JOB_PLACEHOLDERS))
            if why:
                ck.problem(where, join(field, "session"), f"the resume: of {name!r}'s {job.session!r}: {why}")


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
        empty_list = (pods_entry is not None and isinstance(pods_entry.value, SequenceNode)
                      and not pods_entry.value.value)
        if pods_entry is None or yl.is_null(pods_entry.value) or empty_list:
            where = pods_entry.value if pods_entry is not None else None
            ck.problem(where, "pods", "no pods configured; add at least one under 'pods:'")
            hint = EXAMPLE
    if values is not None:
        policy_schema.check_layers(ck, values.get("policies"), values.get("pods"))
        if values.get("jobs"):
            values["jobs"] = _jobs_from_hostfiles(ck, root, values["jobs"], values.get("pods") or (), path)
            check_jobs(ck, root, values["jobs"], values.get("pods") or ())
    if ck.problems or values is None:
        raise ConfigError(ck.sorted_problems(), hint)
    values.setdefault("defaults", Defaults())
    return Config(path=path, **values)
