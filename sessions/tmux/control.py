"""Launch, inspect, adopt and kill a pod's tmux sessions, over any `Runner`.

The commands come from `sessions.tmux.commands` (built and quoted there, parsed there); this
module decides what to run in which order and turns what the pod says into results
and exceptions with plain messages. It works the same over SSH and locally, and is
what the headless commands and the TUI both call.

Errors: `SessionError` and its subclasses carry a sentence for a person (`str(exc)`).
An unreachable pod or a timed-out command is `backends.ssh.SshFailure`, not wrapped:
callers already handle that one for every pod action.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backends.runner import CommandResult, Runner
from sessions.tmux import commands as tmux
from sessions.config.model import PodConfig, SessionConfig
from sessions.tmux.logs import default_log_path, log_path_for
from sessions.tmux.commands import SessionState

__all__ = [
    "AdoptResult",
    "AlreadyRunning",
    "BadSessionName",
    "KillResult",
    "LaunchResult",
    "NoCommand",
    "SessionError",
    "SessionNotFound",
    "SessionState",
    "TmuxFailed",
    "TmuxMissing",
    "adopt",
    "capture",
    "default_log_path",
    "kill",
    "launch",
    "launchable",
    "log_path_for",
    "session_state",
]


class SessionError(Exception):
    """A session action the pod refused or could not do; `str()` says what and why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TmuxMissing(SessionError):
    """The pod has no `tmux` on the PATH its non-interactive shell gets."""


class TmuxFailed(SessionError):
    """tmux ran and reported an error we have no better name for."""


class SessionNotFound(SessionError):
    """No tmux session of that name on the pod."""


class AlreadyRunning(SessionError):
    """Launch refused: a session of that name is running."""


class NoCommand(SessionError):
    """Launch refused: the configured session has no `command:`."""


class BadSessionName(SessionError):
    """A name tmux would not keep as it is (`sessions.tmux.commands.tmux_name_problem`).

    Refused rather than mapped: tmux turns `a.b` into `a_b`, so acting on `a.b`
    would act on whatever session is named `a_b` (killing one killed the other).
    """


@dataclass(frozen=True)
class LaunchResult:
    """What `launch` did.

    Attributes:
        pod: the pod's name.
        name: the session's name (as configured).
        log_path: the pod file that receives the session's output (`~` = pod home).
        piped: True when gpuctl captures the pane with pipe-pane (no `log:` set).
        replaced: an exited session of the same name was killed first.
        previous_exit_status: that exited session's status, when known.
    """

    pod: str
    name: str
    log_path: str
    piped: bool
    replaced: bool = False
    previous_exit_status: int | None = None


@dataclass(frozen=True)
class KillResult:
    """What `kill` found and did.

    Attributes:
        name: the session asked about.
        existed: False when there was no such session (nothing was done).
        was_running: its command was still running when killed.
        exit_status: for an already exited session, the status it had exited with.
    """

    name: str
    existed: bool
    was_running: bool = False
    exit_status: int | None = None


@dataclass(frozen=True)
class AdoptResult:
    """What `adopt` did.

    Attributes:
        name: the session.
        log_path: where its output is logged from now on, or None when the pane was
            already piped elsewhere (by someone else) and gpuctl left that alone.
        started_pipe: gpuctl started the pipe now (False: one existed already).
    """

    name: str
    log_path: str | None
    started_pipe: bool


def _where(pod_name: str | None) -> str:
    return f"pod {pod_name!r}" if pod_name else "the pod"


def _check_name(name: str, pod_name: str | None, *, existing: bool = True) -> None:
    """Refuse a name tmux would not keep (see `tmux.tmux_name_problem`), before any
    tmux command: `existing` for lookups, False for a session about to be created."""
    problem = tmux.tmux_name_problem(name, existing=existing)
    if problem:
        raise BadSessionName(f"{_where(pod_name)}: {problem}")


def _raise_for(result: CommandResult, what: str, name: str, pod_name: str | None) -> None:
    """Turn a failed tmux command into the matching `SessionError`."""
    where = _where(pod_name)
    if tmux.tmux_not_installed(result.exit_status, result.stderr):
        raise TmuxMissing(f"tmux is not installed on {where}: {tmux.TMUX_INSTALL_HINT}")
    if tmux.is_missing(result.stderr):
        raise SessionNotFound(f"no tmux session {name!r} on {where}")
    raise TmuxFailed(f"{what} {name!r} failed on {where}: {result.last_error_line()}")


async def session_state(runner: Runner, name: str, *, pod_name: str | None = None) -> SessionState:
    """Whether the session exists, whether it runs, and how it exited.

    A missing session (or no tmux server at all) is `exists=False`, not an error.

    When a pane is dead but tmux has no `pane_dead_status` for it, the status is
    read from the file the launch wrapper writes. That happens more often than one
    would think: a command that exits within milliseconds of its start can lose its
    SIGCHLD to libutempter's handler inside the tmux server (tmux/tmux#311; measured
    on tmux 3.3a: about 1 in 4 of `exit 3` commands), leaving the pane dead with
    no status until some other child of the server exits; and the pty closes a
    moment before the status is reaped even when it is not lost (tmux/tmux#4841).
    Measured here, the loss is not limited to fast commands: tmux calls
    libutempter again when the pty closes, i.e. right as the command exits. So
    this also nudges the server to reap (`reap_and_read_exit_command`).

    Raises:
        BadSessionName: a name no tmux session can have (`a.b`: tmux calls it `a_b`).
        TmuxMissing, TmuxFailed: see the classes; SshFailure: pod unreachable.
    """
    _check_name(name, pod_name)
    result = await runner.run(tmux.state_command(name))
    if not result.ok:
        if tmux.is_missing(result.stderr) and not tmux.tmux_not_installed(result.exit_status, result.stderr):
            return SessionState(name, exists=False)
        _raise_for(result, "listing session", name, pod_name)
    try:
        state = tmux.parse_state(name, result.stdout)
    except ValueError as exc:
        raise TmuxFailed(f"reading session {name!r} on {_where(pod_name)}: {exc}") from None
    if state.exited and state.exit_status is None:
        recorded = await runner.run(tmux.reap_and_read_exit_command(name))
        status = tmux.parse_exit_file(recorded.stdout)
        if status is not None:
            state = replace(state, exit_status=status)
    return state


def launchable(pod: PodConfig, session: str | SessionConfig) -> SessionConfig:
    """The session's config, checked to be launchable (no pod contact).

    Raises:
        sessions.config.model.UnknownName: no such session in the pod's config
            (a KeyError whose message suggests a close name).
        NoCommand: the session has no `command:`.
    """
    cfg = pod.session(session) if isinstance(session, str) else session
    if not cfg.command:
        at = f" (line {cfg.line})" if cfg.line else ""
        raise NoCommand(
            f"session {cfg.name!r} on pod {pod.name!r} has no command in the config{at}: "
            "add `command:` to launch it (a session without one can only be adopted)"
        )
    return cfg


async def launch(runner: Runner, pod: PodConfig, session: str | SessionConfig) -> LaunchResult:
    """Start a configured session in a detached tmux session on the pod.

    Refuses when a session of that name is running; an exited one (its dead pane
    kept by remain-on-exit) is killed and replaced, and the result says so.

    Raises:
        sessions.config.model.UnknownName: no such session in the pod's config
            (a KeyError whose message suggests a close name).
        NoCommand: the session has no `command:`.
        BadSessionName: tmux would rename the session (`.`, `:`, `#`, ...).
        AlreadyRunning: a session of that name is running.
        TmuxMissing, TmuxFailed: see the classes; SshFailure: pod unreachable.
    """
    cfg = launchable(pod, session)
    _check_name(cfg.name, pod.name, existing=False)
    state = await session_state(runner, cfg.name, pod_name=pod.name)
    if state.running:
        raise _already_running(pod.name, cfg.name)
    if state.exists:
        await kill(runner, cfg.name, pod_name=pod.name)
    piped = not cfg.log
    log_path = log_path_for(cfg)
    assert cfg.command is not None  # launchable() refused a session without one (NoCommand)
    command = tmux.launch_command(
        cfg.name, cfg.command, workdir=cfg.workdir, env=cfg.env, pipe_log=log_path if piped else None
    )
    result = await runner.run(command)
    if not result.ok:
        if "duplicate session" in result.stderr:  # someone launched it in between
            raise _already_running(pod.name, cfg.name)
        _raise_for(result, "launching session", cfg.name, pod.name)
    return LaunchResult(
        pod=pod.name,
        name=cfg.name,
        log_path=log_path,
        piped=piped,
        replaced=state.exists,
        previous_exit_status=state.exit_status if state.exists else None,
    )


def _already_running(pod: str, name: str) -> AlreadyRunning:
    return AlreadyRunning(
        f"session {name!r} is already running on pod {pod!r} "
        f"(attach: gpuctl attach {pod} {name}; stop it: gpuctl kill {pod} {name})"
    )


async def kill(runner: Runner, name: str, *, pod_name: str | None = None) -> KillResult:
    """Kill the session (running or exited). Idempotent.

    A session that is not there is not an error: the result has `existed=False`
    and nothing is sent, so `gpuctl kill` in a cleanup script can run twice. The
    caller is responsible for confirmation.

    Raises:
        BadSessionName: a name no tmux session can have (see `session_state`).
        TmuxMissing, TmuxFailed: see the classes; SshFailure: pod unreachable.
    """
    state = await session_state(runner, name, pod_name=pod_name)
    if not state.exists:
        return KillResult(name, existed=False)
    result = await runner.run(tmux.kill_command(name))
    if not result.ok:
        if tmux.is_missing(result.stderr):  # it ended by itself in between
            return KillResult(name, existed=False)
        _raise_for(result, "killing session", name, pod_name)
    return KillResult(name, existed=True, was_running=state.running, exit_status=state.exit_status)


async def adopt(runner: Runner, name: str, *, pod_name: str | None = None) -> AdoptResult:
    """Start logging a session gpuctl did not launch, without disturbing it.

    Its active pane is piped (pipe-pane) into `default_log_path(name)`; nothing
    is sent to the pane and no option of the session changes (so, unlike a launched
    session, its exit status is not kept once it ends). A pane that already pipes
    somewhere is left alone (`pipe-pane -o` would *close* that pipe): when the default
    log exists, that pipe is taken to be gpuctl's own from an earlier launch/adopt.

    Raises:
        SessionNotFound: no such session.
        BadSessionName: a name no tmux session can have (see `session_state`).
        TmuxMissing, TmuxFailed: see the classes; SshFailure: pod unreachable.
    """
    state = await session_state(runner, name, pod_name=pod_name)
    if not state.exists:
        raise SessionNotFound(f"no tmux session {name!r} on {_where(pod_name)} to adopt")
    log_path = default_log_path(name)
    if state.piped:
        ours = await runner.run(tmux.path_exists_command(log_path))
        return AdoptResult(name, log_path if ours.ok else None, started_pipe=False)
    result = await runner.run(tmux.pipe_pane_command(name, log_path))
    if not result.ok:
        _raise_for(result, "logging session", name, pod_name)
    return AdoptResult(name, log_path, started_pipe=True)


async def capture(runner: Runner, name: str, lines: int = 200, *, pod_name: str | None = None) -> list[str]:
    """The session's last `lines` lines of pane history and screen, as text lines.

    Raises:
        SessionNotFound: no such session.
        BadSessionName: a name no tmux session can have (see `session_state`).
        TmuxMissing, TmuxFailed: see the classes; SshFailure: pod unreachable.
    """
    _check_name(name, pod_name)
    result = await runner.run(tmux.capture_command(name, lines))
    if not result.ok:
        _raise_for(result, "reading session", name, pod_name)
    return tmux.parse_capture(result.stdout)
