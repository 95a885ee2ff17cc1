"""gpuctl's config file: where it is, reading it, and explaining it.

The file is YAML at the platform config dir (`~/.config/gpuctl/config.yaml` on Linux,
honouring XDG_CONFIG_HOME), unless `--config PATH` or the `GPUCTL_CONFIG` environment
variable names another (the flag wins). A bad file never produces a traceback: every
problem becomes a `ConfigProblem` with file, line, column and field, collected in one
`ConfigError`.

The pieces live in small modules, all re-exported here so callers import only
`sessions.config.loader`:
* `config_model`: the frozen dataclasses and the error types;
* `config_schema`: the section tables that turn a YAML node tree into a `Config`;
* `config_fields`: one validator per kind of value (port, host, regex, ...);
* `policy_schema` / `policy_model`: the `policies:` blocks (top level, pod, session)
  and their merge (`policies_for`);
* `yaml_lines`: YAML nodes with line numbers (what `yaml.safe_load` throws away).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from sessions.config import yaml_lines
from sessions.config.bounded_read import NotRegularFile, TooBig, read_bounded
from sessions.config.model import (
    DEFAULT_HOST_KEY,
    HOST_KEY_POLICIES,
    LOCAL_HOST,
    Config,
    ConfigError,
    ConfigNotFound,
    ConfigProblem,
    Defaults,
    PodConfig,
    ProviderConfig,
    SessionConfig,
    UnknownName,
)
from sessions.config.schema import EXAMPLE, PROGRESS_GROUPS, build_config
from sessions.config.policy_model import EffectivePolicies, Policies, effective, policies_for

__all__ = [
    "DEFAULT_HOST_KEY", "ENV_VAR", "HOST_KEY_POLICIES", "LOCAL_HOST", "MAX_CONFIG_BYTES", "PROGRESS_GROUPS",
    "Config", "ConfigError", "ConfigLocation", "ConfigNotFound", "ConfigProblem", "Defaults",
    "EffectivePolicies", "PodConfig", "Policies", "ProviderConfig", "SessionConfig", "UnknownName",
    "default_config_path", "deprecations", "describe_config", "describe_policies", "effective", "load_config",
    "locate_config", "parse_config", "policies_for", "resolve_config_path",
]

MAX_CONFIG_BYTES = 2**20
"""The biggest config gpuctl reads: a hundred pods with every option fit in a tenth of
it, and a bound keeps a wrong `--config` (a log, a disk image) from filling memory."""

ENV_VAR = "GPUCTL_CONFIG"
"""Environment variable naming the config file (below `--config`, above the default)."""

SOURCE_CLI = "--config"
SOURCE_ENV = ENV_VAR
SOURCE_DEFAULT = "default"
SOURCE_GIVEN = "given"


@dataclass(frozen=True)
class ConfigLocation:
    """A config path plus where it came from, so "not found" can say why gpuctl looked there.

    Attributes:
        path: the file, `~` expanded.
        source: SOURCE_CLI, SOURCE_ENV, SOURCE_DEFAULT, or SOURCE_GIVEN (a path passed
            straight to `load_config`).
    """

    path: Path
    source: str = SOURCE_GIVEN


def default_config_path() -> Path:
    """`config.yaml` in the platform's per-user config dir (XDG_CONFIG_HOME on Linux)."""
    # appauthor=False: on Windows the default would nest gpuctl\gpuctl.
    return platformdirs.user_config_path("gpuctl", appauthor=False) / "config.yaml"


def locate_config(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> ConfigLocation:
    """Pick the config file: `--config`, else `GPUCTL_CONFIG`, else the default.

    An empty `GPUCTL_CONFIG` counts as unset, as shells make `VAR=` easy to leave behind.
    """
    if cli_path:
        return ConfigLocation(Path(os.path.expanduser(cli_path)), SOURCE_CLI)
    from_env = environ.get(ENV_VAR, "")
    if from_env:
        return ConfigLocation(Path(os.path.expanduser(from_env)), SOURCE_ENV)
    return ConfigLocation(default_config_path(), SOURCE_DEFAULT)


def resolve_config_path(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The config file path, by the precedence of `locate_config`."""
    return locate_config(cli_path, environ).path


def load_config(path: str | os.PathLike[str] | ConfigLocation) -> Config:
    """Read and validate the config file.

    Args:
        path: the file, or a `ConfigLocation` from `locate_config` (preferred by the
            CLI: a missing file's message then says whether the path came from
            `--config`, `GPUCTL_CONFIG` or the default location; for a bare path
            that is guessed from the environment).

    Raises:
        ConfigNotFound: no file there; the message shows where gpuctl looked and an
            example config to paste.
        ConfigError: unreadable, not a regular file (a FIFO, a device), over
            `MAX_CONFIG_BYTES`, not UTF-8, not YAML, or not a valid config.
    """
    location = path if isinstance(path, ConfigLocation) else _guess_source(
        Path(os.path.expanduser(os.fspath(path))), os.environ
    )
    file = location.path
    if not file.exists():
        raise _not_found(location)
    try:
        data = _read_bounded(file)
    except IsADirectoryError:
        raise _file_problem(file, f"is a directory, not a file; name the YAML file itself, e.g. {file / 'config.yaml'}") from None
    except PermissionError:
        raise _file_problem(file, f"cannot be read: permission denied (check its owner and mode: ls -l {shlex.quote(str(file))})") from None
    except OSError as exc:
        raise _file_problem(file, f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = ConfigProblem(file, line, column, "", f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8")
        raise ConfigError([problem]) from None
    return parse_config(text, file)


def _read_bounded(file: Path) -> bytes:
    """The file's bytes (`bounded_read.read_bounded`: a regular file, at most
    `MAX_CONFIG_BYTES`), its refusals as the config's own problems.

    Raises:
        IsADirectoryError: a directory.
        ConfigError: not a regular file, or too big (the message gives the size).
        OSError: what opening or reading raised.
    """
    try:
        return read_bounded(file, MAX_CONFIG_BYTES)
    except NotRegularFile as exc:
        raise _file_problem(file, f"is {exc.kind}, not a regular file; name the YAML file itself") from None
    except TooBig as exc:
        raise _file_problem(file, f"config is {exc.size:,} bytes; gpuctl reads at most "
                                  f"{MAX_CONFIG_BYTES // 2**20} MiB ({MAX_CONFIG_BYTES:,} bytes)") from None


def _guess_source(path: Path, environ: Mapping[str, str]) -> ConfigLocation:
    """Where a bare path most likely came from, for the "not found" message.

    Callers that pass `resolve_config_path(...)` lose the source; matching the path
    against `GPUCTL_CONFIG` and the default location recovers it in practice.
    """
    from_env = environ.get(ENV_VAR, "")
    if from_env and Path(os.path.expanduser(from_env)) == path:
        return ConfigLocation(path, SOURCE_ENV)
    if path == default_config_path():
        return ConfigLocation(path, SOURCE_DEFAULT)
    return ConfigLocation(path, SOURCE_GIVEN)


def parse_config(text: str, path: str | os.PathLike[str]) -> Config:
    """Validate config text; `path` is only used in messages and `Config.path`.

    Raises:
        ConfigError: every problem found, in file order.
    """
    file = Path(path)
    try:
        root = yaml_lines.compose(text)
    except yaml_lines.YamlRefused as exc:
        raise ConfigError([ConfigProblem(file, exc.line, exc.column, exc.field, exc.message)]) from None
    except yaml_lines.YamlSyntaxError as exc:
        raise ConfigError([ConfigProblem(file, exc.line, exc.column, exc.field, f"invalid YAML: {exc.message}")]) from None
    return build_config(root, file)


def _file_problem(path: Path, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path, None, None, "", message)])


def _shell_path(path: Path) -> str:
    """`path` as a shell word, `~/` kept unquoted so it still expands."""
    home = Path.home()
    try:
        rest = path.relative_to(home)
    except ValueError:
        return shlex.quote(str(path))
    return "~/" + shlex.quote(str(rest)) if str(rest) != "." else "~"


def _not_found(location: ConfigLocation) -> ConfigNotFound:
    """A "no config" error that says where gpuctl looked, why there, and what to write."""
    default = default_config_path()
    why = {
        SOURCE_DEFAULT: f"gpuctl's default location; --config PATH or the {ENV_VAR} environment variable name another file",
        SOURCE_ENV: f"this path came from the {ENV_VAR} environment variable; unset it to use the default, {default}",
        SOURCE_CLI: f"this path came from --config; without it gpuctl reads ${ENV_VAR} if set, else {default}",
        SOURCE_GIVEN: f"gpuctl reads the file named by --config PATH, else ${ENV_VAR}, else {default}",
    }[location.source]
    problem = ConfigProblem(location.path, None, None, "", f"no config file here ({why})")
    file = _shell_path(location.path)
    hint = "\n".join([
        "Create it:",
        f"  mkdir -p {_shell_path(location.path.parent)} && $EDITOR {file}",
        EXAMPLE,
        "Or run `gpuctl demo` to try gpuctl on simulated pods, no config needed.",
    ])
    return ConfigNotFound([problem], hint)


# --- describe ------------------------------------------------------------------------


def _home(path: str) -> str:
    """Show a local path with `~` for the home dir, as people write it."""
    home = str(Path.home())
    return "~" + path[len(home):] if path == home or path.startswith(home + os.sep) else path


def _secs(value: float) -> str:
    return f"{value:g}s"


def _price(value: float) -> str:
    return f"${value:.2f}/h" if round(value, 2) == value else f"${value:g}/h"


def _inherited(default: object, fallback: str, ssh_config: bool = True) -> str:
    """Describe a value the pod leaves to ~/.ssh/config and defaults (SSH precedence)."""
    tail = f"defaults ({default})" if default is not None else fallback
    return f"from ~/.ssh/config, else {tail}" if ssh_config else f"from {tail}"


def _limit(value: float | bool | None, unit: str = "") -> str:
    return "off" if value is False else f"{value:g}{unit}"


def describe_policies(layer: Policies) -> str:
    """One line for a `policies:` layer: the keys it sets, with their values.

    Notify targets show their kind only: a webhook URL or a command may hold a token.
    """
    parts: list[str] = []
    if layer.auto_download is not None:
        parts.append(f"auto_download {layer.auto_download}")
    if layer.keep_local is not None:
        parts.append("keep_local all" if layer.keep_local is False else f"keep_local {layer.keep_local}")
    resume = layer.auto_resume
    if resume is not None:
        if resume.enabled is False:
            parts.append("auto_resume off")
        else:
            extra = [f"max {resume.max_restarts} restart{'s' if resume.max_restarts != 1 else ''}" if resume.max_restarts is not None else "",
                     f"backoff {resume.backoff_s:g}s" if resume.backoff_s is not None else "",
                     f"on hang {resume.on_hang_minutes:g} min" if resume.on_hang_minutes not in (None, False) else ""]
            extra = [e for e in extra if e]
            parts.append("auto_resume on" + (f" ({', '.join(extra)})" if extra else ""))
    alerts = layer.alerts
    if alerts is not None:
        units = {"gpu_temp_c": "°C", "disk_used_pct": "%", "stall_minutes": "min", "loss_spike": "x",
                 "gpu_idle_minutes": "min"}
        written = [(name, getattr(alerts, name)) for name in
                ("gpu_temp_c", "disk_used_pct", "stall_minutes", "loss_spike", "nan_loss", "gpu_idle_minutes",
                 "gpu_health")
                if getattr(alerts, name) is not None]
        if written and all(value is False for _, value in written) and len(written) == 7:
            parts.append("alerts off")
        elif written:
            shown = [f"{name} {'on' if value is True else _limit(value, units.get(name, ''))}"
                     for name, value in written]
            parts.append(f"alerts ({', '.join(shown)})")
    budget = layer.budget
    if budget is not None:
        if budget.enabled is False:
            parts.append("budget off")
        else:
            text = f"budget ${budget.max_usd:g}" if budget.max_usd is not None else "budget"
            if budget.action:
                text += f" then {budget.action}"
            if budget.grace_minutes is not None:
                text += f" (grace {budget.grace_minutes:g}min)"
            parts.append(text)
    if layer.notify is not None:
        parts.append("notify " + (", ".join(t.kind for t in layer.notify) if layer.notify else "off"))
    if layer.download_dir is not None:
        parts.append(f"download_dir {layer.download_dir}")
    if layer.checkpoint_interval_s is not None:
        parts.append(f"checkpoint listing every {layer.checkpoint_interval_s:g}s")
    return ", ".join(parts) if parts else "none set"


def _describe_session(session: SessionConfig) -> list[str]:
    head = f"{session.name}: {session.command}" if session.command else (
        f"{session.name}: no command (adopts an existing tmux session)")
    details = []
    if session.workdir:
        details.append(f"in {session.workdir}")
    if session.log:
        details.append(f"log {session.log}")
    if session.total_steps:
        details.append(f"{session.total_steps} steps")
    if session.progress:
        details.append("own progress pattern")
    if session.resume:
        details.append("resumable")
    if session.checkpoints:
        details.append("checkpoints " + ", ".join(session.checkpoints))
    if session.env:
        # Names only: values may be tokens, and this output gets pasted into issues.
        details.append("env " + ", ".join(session.env))
    if session.policies is not None:
        details.append("policies: " + describe_policies(session.policies))
    return [head] + ([f"  ({'; '.join(details)})"] if details else [])


def _describe_pod(pod: PodConfig, defaults: Defaults) -> list[str]:
    rows: list[tuple[str, str]] = []
    if pod.is_local:
        rows.append(("host", "local (this machine, no SSH)"))
    else:
        rows.append(("host", pod.host))
        rows.append(("port", str(pod.port) if pod.port else _inherited(defaults.port, "22")))
        rows.append(("user", pod.user or _inherited(defaults.user, "your local user name")))
        rows.append(("identity", _home(pod.identity) if pod.identity else _inherited(
            _home(defaults.identity) if defaults.identity else None, "ssh's default keys")))
        policy = pod.host_key or (f"{defaults.host_key} (from defaults)" if defaults.host_key
                                  else f"{DEFAULT_HOST_KEY} (built-in default)")
        rows.append(("host key", policy))
        rows.append(("connect", _secs(pod.connect_timeout) if pod.connect_timeout
                     else f"{_secs(defaults.connect_timeout)} timeout (from defaults)"))
    rows.append(("telemetry", f"every {_secs(pod.interval)}" if pod.interval
                 else f"every {_secs(defaults.interval)} (from defaults)"))
    rows.append(("price", _price(pod.price_per_hour) if pod.price_per_hour is not None
                 else "not set (the provider API may know it)" if pod.provider else "not set"))
    rows.append(("disk shown", pod.workdir or "home directory"))
    if pod.provider:
        text = pod.provider.type + (f", id {pod.provider.id}" if pod.provider.id else ", no id")
        if pod.provider.options:
            text += "; options " + ", ".join(pod.provider.options)
        rows.append(("provider", text))
    if pod.policies is not None:
        rows.append(("policies", describe_policies(pod.policies)))
    if pod.is_slurm:
        sl = pod.slurm
        parts = [f"script {sl.script}" if sl and sl.script else "no script (launch needs slurm.script)",
                 f"{_price(sl.price_per_gpu_hour)} per GPU" if sl and sl.price_per_gpu_hour is not None else None,
                 "every user's jobs" if sl and sl.all_users else "your jobs",
                 f"checkpoints {', '.join(sl.checkpoints)}" if sl and sl.checkpoints else None]
        rows.append(("slurm", "login node; " + "; ".join(p for p in parts if p)))
    lines = [f"{pod.name}  (line {pod.line})" if pod.line else pod.name]
    lines += [f"  {label:<11} {value}" for label, value in rows]
    if pod.sessions:
        session_lines = [line for s in pod.sessions for line in _describe_session(s)]
        lines.append(f"  {'sessions':<11} {session_lines[0]}")
        lines += [f"  {'':<11} {line}" for line in session_lines[1:]]
    else:
        lines.append(f"  {'sessions':<11} none configured (existing tmux sessions still show)")
    return lines


def deprecations(config: Config) -> list[str]:
    """Warnings for keys still accepted but replaced, as `file:line: ...` lines that say
    what to write instead (`gpuctl config check` prints them)."""
    out: list[str] = []
    for pod in config.pods:
        for session in pod.sessions:
            if session.stall_minutes is None:
                continue
            where = f"{config.path}:{session.line}" if session.line else str(config.path)
            out.append(f"{where}: sessions[].stall_minutes (session {session.name!r} of pod {pod.name!r}) is "
                       f"deprecated; write it as policies: {{alerts: {{stall_minutes: {session.stall_minutes:g}}}}} "
                       "in that session instead (policies.alerts.stall_minutes, the one stall threshold "
                       "the stalled flag and the stall alert both use).")
    return out


def describe_config(config: Config) -> str:
    """What `gpuctl config check` prints: what gpuctl understood, pod by pod.

    Values a pod leaves out are shown as where they will come from (`~/.ssh/config`,
    then `defaults`), since that precedence is the usual source of "why is it using
    that user?". Secrets are never printed: env and provider options show names only.
    """
    d = config.defaults
    parts = [
        f"user {d.user}" if d.user else None,
        f"identity {_home(d.identity)}" if d.identity else None,
        f"host key {d.host_key}" if d.host_key else None,
        f"port {d.port}" if d.port else None,
        f"connect timeout {_secs(d.connect_timeout)}",
        f"command timeout {_secs(d.command_timeout)}",
        f"telemetry every {_secs(d.interval)}",
    ]
    lines = [f"Config: {config.path}", "Defaults: " + ", ".join(p for p in parts if p)]
    if config.read_only:
        lines.append("Read-only: yes (actions that change pods are refused)")
    if config.theme:
        lines.append(f"Theme: {config.theme}")
    if config.keys:
        lines.append("Key bindings: " + ", ".join(f"{k} = {v}" for k, v in config.keys.items()))
    if config.policies is not None:
        lines.append("Policies: " + describe_policies(config.policies))
    count = len(config.pods)
    lines += ["", f"{count} pod{'s' if count != 1 else ''}:"]
    for pod in config.pods:
        lines += [""] + _describe_pod(pod, d)
    if config.jobs:
        lines += ["", f"{len(config.jobs)} job{'s' if len(config.jobs) != 1 else ''}:", ""]
        for job in config.jobs:
            ranks = ", ".join(f"{i}={p}" for i, p in enumerate(job.pods))
            session = f"session {job.session}" if job.session else "no session (nodes grouped only)"
            source = f" (from hostfile {job.hostfile})" if job.hostfile else ""
            lines.append(f"{job.name}  (line {job.line}): ranks {ranks}{source}; {session}")
    return "\n".join(lines) + "\n"
