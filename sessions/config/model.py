"""The validated config as frozen data, and the errors that explain a bad file.

Kept apart from the YAML reading (`config_schema`) so that code which only consumes a
config (the Fleet, the SSH layer, tests building a `PodConfig` by hand) imports plain
dataclasses and nothing of PyYAML. `sessions.config.loader` re-exports every name here.

Unset means `None`: a pod entry that leaves `user` out keeps `user=None` rather than
the value from `defaults`, because the SSH layer lets `~/.ssh/config` fill the gap
first and only then falls back to `defaults` (OpenSSH precedence). Filling defaults in
here would make an alias's `User` line silently lose.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessions.config.policy_model import Policies

HOST_KEY_POLICIES: tuple[str, ...] = ("strict", "accept-new")
"""What `host_key` may say. `strict` refuses unknown hosts; `accept-new` records a new
host's key on first contact (like OpenSSH's StrictHostKeyChecking=accept-new)."""

DEFAULT_HOST_KEY = "strict"
"""The policy when neither the pod, `~/.ssh/config` nor `defaults` names one."""

LOCAL_HOST = "local"
"""`host: local` means this machine, reached without SSH."""

PROVIDER_TYPES: tuple[str, ...] = (
    "runpod", "vastai", "lambda", "tensordock", "thunder", "crusoe",
    "aws", "gcp", "azure", "skypilot", "dstack", "ssh",
)
"""What `provider: {type: ...}` may say (`backends.providers.registry` has one module each)."""

KEY_BINDING_IDS: tuple[str, ...] = (
    "app.help", "app.quit", "app.palette", "app.notifications",
    "fleet.open", "fleet.filter", "fleet.sort", "fleet.reverse", "fleet.open_job", "fleet.toggle_job", "job.back",
    "pod.attach", "pod.launch", "pod.kill", "pod.download", "pod.resume", "pod.stop",
    "pod.teardown", "pod.log", "pod.automation", "pod.back", "pod.previous_session",
    "pod.next_session",
    "log.search", "log.follow", "log.page_up", "log.page_down", "log.back", "log.next_match",
    "log.previous_match", "log.wrap", "log.top", "log.end", "log.left", "log.right",
    "dialog.confirm", "dialog.cancel",
)
"""What `keys:` may remap: the ids of the bindings in `tui.bindings`, a contract with
users' configs. Listed here, not read from there, because config validation lives in
`sessions` (which may not import the TUI) and `gpuctl config check` must not load
Textual; a test keeps this list equal to `tui.bindings.binding_ids()`."""



def _empty() -> Mapping[str, Any]:
    """A fresh read-only empty mapping (dataclasses refuse a shared unhashable default)."""
    return types.MappingProxyType({})


@dataclass(frozen=True)
class Defaults:
    """Fallbacks for every pod (used after `~/.ssh/config`, see module docstring).

    Attributes:
        user: SSH login name, or None to let SSH decide.
        identity: private key path, `~` already expanded, or None.
        host_key: one of HOST_KEY_POLICIES, or None (then DEFAULT_HOST_KEY applies).
        port: SSH port, or None (then 22 or what `~/.ssh/config` says).
        connect_timeout: seconds to wait for an SSH connection.
        command_timeout: seconds to wait for a one-off remote command.
        interval: seconds between telemetry samples.
    """

    user: str | None = None
    identity: str | None = None
    host_key: str | None = None
    port: int | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    interval: float = 1.0


@dataclass(frozen=True)
class ProviderConfig:
    """Which cloud API manages a pod, for price lookups, stop and teardown.

    Attributes:
        type: one of PROVIDER_TYPES (a known alias such as `vast` is stored as `vastai`).
        id: the provider's instance id (always text, even when written as a number).
        options: every other key of the `provider:` mapping, read-only, each checked
            against the keys that provider type understands.
        line: 1-based line of the `provider:` mapping, for those later messages.
        api_key_env: name of the environment variable holding the API key, when it
            is not the provider's usual one (`RUNPOD_API_KEY`, ...); the key itself
            never appears in the config.
        api_url: server root replacing the provider's official one (a private
            gateway, a test server); the API's own paths are appended to it.
        shutdown_stops_billing: `ssh` only: powering the host off stops its billing,
            so `teardown` may offer `sudo shutdown -h now`.
    """

    type: str
    id: str | None = None
    options: Mapping[str, Any] = field(default_factory=_empty)
    line: int | None = None
    api_key_env: str | None = None
    api_url: str | None = None
    shutdown_stops_billing: bool = False


@dataclass(frozen=True)
class SessionConfig:
    """A training session (a tmux session) gpuctl can launch, follow and resume.

    Attributes:
        name: unique within the pod; also the tmux session name.
        command: the shell command to run, or None to only adopt an existing session.
        workdir: remote directory to start in (not `~`-expanded: it is the pod's home).
        env: extra environment variables, names checked to be shell-safe.
        log: log file to follow (relative to workdir), or None for tmux's own output.
        total_steps: known step count, when the log does not say it.
        progress: user regex with named groups among step, total, loss, rate.
        resume: command template filled with the newest checkpoint.
        checkpoints: glob patterns locating checkpoints (empty: built-in patterns).
        stall_minutes: minutes without a new step before the session counts as
            stalled (None: gpuctl's default, 15).
        trackers: tracker files or run folders to read (relative: under workdir);
            None searches the workdir, ``()`` reads none (`sessions.progress.trackers`).
        policies: this session's `policies:` layer (innermost; see
            `sessions.config.policy_model.policies_for`), or None.
        line: 1-based line of the entry in the config file.
    """

    name: str
    command: str | None = None
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=_empty)
    log: str | None = None
    total_steps: int | None = None
    progress: str | None = None
    resume: str | None = None
    checkpoints: tuple[str, ...] = ()
    stall_minutes: float | None = None
    policies: Policies | None = None
    trackers: tuple[str, ...] | None = None
    line: int | None = None


POD_KINDS: tuple[str, ...] = ("ssh", "slurm")
"""`kind:` of a pod entry: a machine gpuctl runs on (default), or a Slurm login node."""


@dataclass(frozen=True)
class SlurmConfig:
    """A `kind: slurm` pod's `slurm:` block (see `sessions/slurm/`). None = not set.

    Attributes:
        script: the batch script on the login node that `launch` submits (sbatch).
        price_per_gpu_hour: USD per allocated GPU per hour, for a job's cost.
        all_users: list every user's jobs, not only the login user's.
        checkpoints: globs on the cluster's filesystem; `resume` submits the script
            again with the newest match in `$GPUCTL_CHECKPOINT`.
        sbatch_args: more sbatch options, one per item (`--partition=gpu`).
    """

    script: str | None = None
    price_per_gpu_hour: float | None = None
    all_users: bool | None = None
    checkpoints: tuple[str, ...] = ()
    sbatch_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodConfig:
    """One machine gpuctl watches. `None` means "not set in this entry".

    Attributes:
        name: unique pod name.
        host: address, host name, `~/.ssh/config` alias, or LOCAL_HOST.
        port, user, identity, host_key: SSH settings the entry sets itself; None lets
            `~/.ssh/config`, then `defaults`, fill them.
        price_per_hour: USD per hour, or None (then the provider API may know).
        workdir: directory whose filesystem's disk use is shown (None: the home).
        provider: cloud provider link, or None.
        sessions: configured training sessions.
        connect_timeout, interval: per-pod overrides of `defaults`, or None.
        policies: this pod's `policies:` layer (over the top level's, under each
            session's), or None.
        kind: `slurm` for a cluster's login node (jobs, not tmux sessions), or None.
        slurm: the `slurm:` block of a `kind: slurm` pod, or None.
        line: 1-based line of the entry in the config file.
    """

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    host_key: str | None = None
    price_per_hour: float | None = None
    workdir: str | None = None
    provider: ProviderConfig | None = None
    sessions: tuple[SessionConfig, ...] = ()
    connect_timeout: float | None = None
    interval: float | None = None
    policies: Policies | None = None
    kind: str | None = None
    slurm: SlurmConfig | None = None
    line: int | None = None

    @property
    def is_slurm(self) -> bool:
        """True for a Slurm cluster's login node (`kind: slurm`)."""
        return self.kind == "slurm"

    @property
    def is_local(self) -> bool:
        """True when the pod is this machine (no SSH)."""
        return self.host == LOCAL_HOST

    def session(self, name: str) -> SessionConfig:
        """The session called `name`.

        Raises:
            UnknownName: (a KeyError) naming the pod and suggesting a close match.
        """
        for session in self.sessions:
            if session.name == name:
                return session
        raise UnknownName("session", name, [s.name for s in self.sessions], f"pod {self.name!r}")


JOB_PLACEHOLDERS: tuple[str, ...] = ("rank", "nnodes", "master_addr", "master_port")
"""What a job's session `command:` may use; each rank's launch fills them (`$GPUCTL_RANK`...)."""


@dataclass(frozen=True)
class JobConfig:
    """One training job across pods (`jobs:`): its nodes in rank order, one session each.

    Attributes:
        name: unique job name.
        pods: pod names, rank 0 first (given, or read from `hostfile`).
        session: the session (configured on every one of those pods) each rank runs;
            None groups the nodes only (an imported cluster), with nothing to launch.
        master_addr: where rank 0 listens (None: rank 0's SSH host name).
        master_port: the rendezvous port (None: 29500, torchrun's default).
        line: 1-based line of the entry in the config file.
    """

    name: str
    pods: tuple[str, ...] = ()
    session: str | None = None
    master_addr: str | None = None
    master_port: int | None = None
    hostfile: str | None = None
    """A DeepSpeed/MPI hostfile the pods came from (rank order by line), or None."""
    line: int | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated config file.

    Attributes:
        path: the file it was read from.
        defaults: fallbacks for every pod.
        pods: pods in file order.
        read_only: when true, gpuctl refuses actions that change pods.
        keys: key binding overrides, action id -> key.
        policies: the top-level `policies:` layer, defaults for every pod and
            session (validated by `policy_schema`; merge the layers with
            `sessions.config.policy_model.policies_for`), or None when the file has none.
        theme: Textual theme name, or None for the default.
        jobs: multi-node jobs (`jobs:`), each over pods of `pods`.
    """

    path: Path
    defaults: Defaults = field(default_factory=Defaults)
    pods: tuple[PodConfig, ...] = ()
    read_only: bool = False
    keys: Mapping[str, str] = field(default_factory=_empty)
    policies: Policies | None = None
    theme: str | None = None
    jobs: tuple[JobConfig, ...] = ()

    def pod(self, name: str) -> PodConfig:
        """The pod called `name`.

        Raises:
            UnknownName: (a KeyError) whose message names the config file and
                suggests the closest pod name, since this is what a mistyped
                `gpuctl logs POD ...` shows.
        """
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise UnknownName("pod", name, [p.name for p in self.pods], str(self.path))


class UnknownName(KeyError):
    """A pod or session name that is not in the config.

    A KeyError so `except KeyError` works, but with a readable `str()`: KeyError's own
    would print the message inside quotes.
    """

    def __init__(self, kind: str, name: str, known: Sequence[str], where: str) -> None:
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        message = f"no {kind} named {name!r} in {where}"
        close = difflib.get_close_matches(name, self.known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif self.known:
            message += f"; {kind}s: {', '.join(self.known)}"
        else:
            message += f"; it has no {kind}s"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, with where it is.

    Attributes:
        path: the config file.
        line: 1-based line, or None when the problem is about the whole file.
        column: 1-based column, or None.
        field: where in the schema, e.g. `pods[1] (a100-west).port`; "" for the file.
        message: what was expected and what was found, with a hint where one helps.
    """

    path: Path | str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class ConfigError(Exception):
    """The config file cannot be used; carries every problem found in one pass.

    `str()` is what the CLI prints: one `file:line:column: field: message` line per
    problem (compiler style, so editors can jump to it), then an optional hint block.

    Attributes:
        problems: the problems, in file order.
        hint: extra lines printed after the problems (an example to paste), or None.
    """

    def __init__(self, problems: Sequence[ConfigProblem], hint: str | None = None) -> None:
        self.problems = list(problems)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class ConfigNotFound(ConfigError):
    """There is no config file where gpuctl looked.

    Its message says where it looked, why there (default location, `--config` or
    `GPUCTL_CONFIG`), how to point elsewhere, and an example to paste.
    """
