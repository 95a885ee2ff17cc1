"""Relaunch a session's training from its newest complete checkpoint on the pod.

The session's `resume:` template, e.g. `torchrun train.py --resume {checkpoint}`, is
rendered by `sessions.config.shell_template`: `{checkpoint}` becomes a reference to the
environment variable GPUCTL_CHECKPOINT, and the command that runs is
`export GPUCTL_CHECKPOINT=<quoted path>; <rendered template>`. The path, which whoever
writes files on the pod chooses, is therefore never part of the command's text and
cannot end a quote or start a command wherever `{checkpoint}` stands: bare, quoted
(`"{checkpoint}"`), inside a larger quoted word (`--ckpt="{checkpoint}/model.pt"`) or
inside `$(…)`. Places where it could still run as code (inside `'…'` with other text,
after `bash -c`, ...) are refused as a config problem that says what to write instead.
Other braces in the template (JSON, `${VAR}`) stay as written.

The command then goes through `session_control.launch` exactly as `gpuctl launch`
would run the session's `command:`: same tmux session name, same workdir and env,
same log (pipe-pane or the session's `log:`), same exit-status file. Only the command
differs. A running session is left alone unless `restart=True`, which kills it first;
an exited one is replaced, as launch does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from backends.runner import Runner
from sessions.tmux import control as sc
from sessions.checkpoints.listing import Checkpoint, list_checkpoints, newest_complete
from sessions.config.model import PodConfig, SessionConfig
from sessions.config.shell_template import RESUME_PLACEHOLDERS, TemplateError, env_name, fill, render

PLACEHOLDER = "{checkpoint}"


class NoResumeTemplate(sc.SessionError):
    """The session has no usable `resume:` template (a config problem: exit 2)."""


class NoCheckpointToResume(sc.SessionError):
    """The pod has no complete checkpoint for the session."""


@dataclass(frozen=True)
class ResumeResult:
    """What `resume` did.

    Attributes:
        checkpoint: the checkpoint resumed from.
        command: the filled-in command now running in tmux.
        launch: the launch's own result (log path, replaced exited session...).
        killed_running: a running session was killed first (`restart=True`).
    """

    checkpoint: Checkpoint
    command: str
    launch: sc.LaunchResult
    killed_running: bool = False


def fill_template(template: str, checkpoint_path: str) -> str:
    """The command to run: the path exported as GPUCTL_CHECKPOINT, then the rendered
    template (see the module docstring).

    Raises:
        sessions.config.shell_template.TemplateError: `{checkpoint}` where it cannot be passed safely.
    """
    return fill(template, {"checkpoint": checkpoint_path})


def resumable(pod: PodConfig, session: str | SessionConfig) -> SessionConfig:
    """The session's config, checked to have a template with `{checkpoint}` (no pod contact).

    Raises:
        sessions.config.model.UnknownName: no such session (a KeyError).
        NoResumeTemplate: no `resume:`, one without `{checkpoint}`, or one with it where
            its value could run as code.
    """
    cfg = pod.session(session) if isinstance(session, str) else session
    at = f" (config line {cfg.line})" if cfg.line else ""
    example = (f"    - name: {cfg.name}\n"
               f"      command: {cfg.command or 'python train.py'}\n"
               f"      resume: {cfg.command or 'python train.py'} --resume {PLACEHOLDER}")
    if not cfg.resume:
        raise NoResumeTemplate(
            f"session {cfg.name!r} on pod {pod.name!r} has no resume command{at}. Add a `resume:` "
            f"template to it; gpuctl puts the newest checkpoint's path where {PLACEHOLDER} is:\n{example}")
    try:
        rendered = render(cfg.resume, RESUME_PLACEHOLDERS)
    except TemplateError as exc:
        raise NoResumeTemplate(
            f"the resume command of session {cfg.name!r} on pod {pod.name!r}{at} cannot be used: {exc}") from None
    # No {checkpoint} (or only in a comment, or as `${checkpoint}`), and the command does not
    # read the variable itself either (as `bash -c '... "$GPUCTL_CHECKPOINT"'` does).
    if rendered == cfg.resume and env_name("checkpoint") not in cfg.resume:
        raise NoResumeTemplate(
            f"the resume command of session {cfg.name!r} on pod {pod.name!r}{at} does not mention "
            f"{PLACEHOLDER}, so it would not resume from anything:\n{example}")
    return cfg


async def resume(runner: Runner, pod: PodConfig, session: str | SessionConfig, *,
                 restart: bool = False, checkpoints: Sequence[Checkpoint] | None = None) -> ResumeResult:
    """Relaunch the session in tmux from its newest complete checkpoint.

    Args:
        runner: how to run commands on the pod.
        pod, session: the pod's config and the session (name or config).
        restart: kill the session first when it is still running.
        checkpoints: a fresh listing to use instead of listing again.

    Raises:
        NoResumeTemplate, sessions.config.model.UnknownName: config problems.
        NoCheckpointToResume: nothing complete to resume from.
        sc.AlreadyRunning: it runs and `restart` is False.
        sc.TmuxMissing, sc.TmuxFailed, backends.ssh.SshFailure: the pod's side.
    """
    cfg = resumable(pod, session)
    state = await sc.session_state(runner, cfg.name, pod_name=pod.name)
    if state.running and not restart:
        raise sc.AlreadyRunning(
            f"session {cfg.name!r} is still running on pod {pod.name!r}; not resuming over it "
            f"(gpuctl resume {pod.name} {cfg.name} --restart kills it first)")
    if checkpoints is None:
        checkpoints = await list_checkpoints(runner, pod, cfg, settle=0)
    chosen = newest_complete(checkpoints)
    if chosen is None:
        writing = sum(1 for c in checkpoints if not c.complete)
        detail = f"{writing} still being written" if writing else "none found"
        raise NoCheckpointToResume(
            f"no complete checkpoint to resume session {cfg.name!r} on pod {pod.name!r} from ({detail})")
    killed = False
    if state.running:
        killed = (await sc.kill(runner, cfg.name, pod_name=pod.name)).was_running
    command = fill_template(cfg.resume or "", chosen.path)
    launched = await sc.launch(runner, pod, replace(cfg, command=command))
    return ResumeResult(chosen, command, launched, killed)
