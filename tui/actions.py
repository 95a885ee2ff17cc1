"""Every key action of the TUI: what it may act on, what it asks, which call it makes.

One place, so read-only refusal, confirmations and error handling are uniform. Each
action runs in an async worker with `exit_on_error=False`; any failure becomes a
notification naming the pod and what failed, never a traceback on screen. Nothing here
draws: screens say what is targeted (`Target`) and show the results.

Wired: launch (`n`; where the pod holds a complete checkpoint of the session it asks:
resume from it, or start from scratch after a second yes), kill (`k`, confirmed, quoting
what the pane runs: `sessions.tmux.pane_process`) and attach (`a`: suspends the app, runs
`ssh -t ... tmux attach`) through the Fleet; stop (`s`, confirmed) and teardown (`T`,
type the pod name; the dialog says whether the newest checkpoint is safe, from
`sessions.checkpoints.teardown_guard`, told the steps each session trained so a run that never
saved is not called safe) through the Fleet's provider calls, a pod without
`provider:` saying it has none; download (`d`: `sessions.checkpoints.download`, progress in the
checkpoint list, the app stays usable) and resume (`r`: `sessions.checkpoints.resume`, confirmed
when it would restart a running session); the checkpoint listing the pod screen shows.
Each is a Fleet call (`sessions.fleet.facade`, `sessions.fleet.operations`), the same
the headless commands make, over the pod's live link. What an action did is told by
the Fleet on its event stream (`session_launched`, `session_killed`, `resumed`,
`provider_action`, `checkpoint_downloaded`) and toasted from there (`tui.event_toasts`),
so the toast, the notify targets and `gpuctl watch` say the same; this module toasts
only what is no event: refusals, cancellations, "asking..." and failures.

Past 400 lines on purpose: the issue asks for every action's wiring in one module,
and each flow is short but has its own question and its own failure sentences.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessions.snapshot import PodSnapshot, SessionSnapshot, SessionState
from tui import humanize
from tui.bindings import MUTATING
from tui.downloads import DONE, FAILED, RUNNING, DownloadState
from tui.messages import DownloadsChanged
from tui.sessions_table import step_text

if TYPE_CHECKING:
    from tui.app import GpuctlApp

AttachRunner = Callable[["GpuctlApp", list[str]], Awaitable[tuple[int, str]]]
"""Runs the attach command with the terminal handed over; returns its exit status and
the end of what it wrote to stderr (the reason, when it failed)."""

_STDERR_KEPT = 4096

NOTHING_TO_LAUNCH = "Nothing to launch: no stopped session has a `command:`."
GREYED_TOAST_S = 3.0
"""How long a greyed key's reason shows; pressed again meanwhile, it is not repeated."""


@dataclass(frozen=True)
class Target:
    """What an action acts on: a pod, and the session the screen has selected."""

    pod: str
    session: str | None = None


async def run_in_terminal(app: "GpuctlApp", argv: list[str]) -> int:
    """Suspend the app, run `argv` on the real terminal, come back when it exits.

    The event loop keeps running (the Fleet keeps its connections), but repaints are
    held with `batch_update`: in Textual 8.2 a repaint while suspended queues output
    to the stopped writer thread, whose bounded queue then blocks the loop."""
    with app.batch_update(), app.suspend():
        return await run_teeing_stderr(argv)


async def run_teeing_stderr(argv: list[str]) -> tuple[int, str]:
    """Run `argv` on this terminal, its stderr passed through to ours as it comes and
    the last few KiB kept: why an attach failed ("Connection refused", "can't find
    session") is printed while the app is suspended, and would otherwise be seen only
    after quitting."""
    process = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    kept = b""
    while chunk := await process.stderr.read(4096):
        try:
            os.write(2, chunk)
        except OSError:
            pass
        kept = (kept + chunk)[-_STDERR_KEPT:]
    return await process.wait(), kept.decode(errors="replace")


def attach_failure(status: int, stderr: str, argv: list[str], session: str) -> str:
    """Why an attach ended with `status`, in one sentence for a toast."""
    from tui.terminal_text import visible

    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    said = visible(lines[-1])[:200] if lines else ""
    if argv[0] == "ssh" and status == 255:
        return f"ssh could not connect: {said}" if said else "ssh could not connect"
    if said:
        return said
    term = os.environ.get("TERM", "")
    hint = "" if term.startswith(("xterm", "screen", "tmux", "vt", "linux", "rxvt")) else (
        f", or the pod's tmux does not know TERM={term!r} (try TERM=xterm-256color)" if term else "")
    return f"tmux could not attach to {session!r} (it may have just ended{hint})"


def same_command(configured: str, running: str) -> bool:
    """Whether `running` (ps's arguments, space-joined) is the configured command line,
    the program's path aside: `python3 train.py` runs as `/usr/bin/python3 train.py`
    through a wrapper or a venv, and saying so would only be noise."""
    import shlex

    try:
        words = shlex.split(configured)
    except ValueError:
        words = configured.split()
    return bool(words) and " ".join(words[1:]) == " ".join(running.split()[1:])


def error_text(exc: BaseException) -> str:
    """An exception as a sentence for a toast (SSH failures carry their own)."""
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    text = str(exc) or type(exc).__name__
    return text if not isinstance(exc, (OSError, RuntimeError, ValueError)) else f"{type(exc).__name__}: {text}"


class Actions:
    """The app's action runner (`app.actions`)."""

    def __init__(self, app: "GpuctlApp", *, read_only: bool, attach_runner: AttachRunner | None = None) -> None:
        self.app = app
        self.read_only = read_only
        self.attach_runner = attach_runner or run_in_terminal
        self.downloads: dict[tuple[str, str], DownloadState] = {}
        """(pod, session) -> the latest download of its checkpoint started here."""
        self._greyed_told: tuple[str, float] = ("", 0.0)
        """The last greyed key's reason and when it was told (`greyed_key`)."""

    # -- what may run --------------------------------------------------------------

    def check(self, action: str, target: Target | None) -> bool | None:
        """For `check_action`: False hides (read-only), None greys out (nothing to act on)."""
        if self.read_only and action in MUTATING:
            return False
        if target is None:
            return None
        if action in ("attach", "kill", "log", "download", "resume") and target.session is None:
            return None
        if action == "launch" and not self._launch_candidates(target.pod):
            return None
        return True

    def why_off(self, action: str, target: Target | None) -> str | None:
        """Why `check` greys `action` out for `target`, in one line; None when it is not."""
        if target is None:
            return "No pod is selected."
        if action in ("attach", "kill", "log", "download", "resume") and target.session is None:
            return f"No session on {target.pod} to {action}."
        if action == "launch" and not self._launch_candidates(target.pod):
            return NOTHING_TO_LAUNCH
        return None

    def greyed_key(self, action: str, target: Target | None) -> None:
        """A greyed-out key was pressed: say why in one calm line, once (pressed again
        while that line still shows, it is not stacked)."""
        why = self.why_off(action, target)
        if why is None:
            return
        now = time.monotonic()
        if self._greyed_told[0] == why and now - self._greyed_told[1] < GREYED_TOAST_S:
            return
        self._greyed_told = (why, now)
        self.app.notify(why, title=target.pod if target else "", timeout=GREYED_TOAST_S, routine=True)

    def _refused(self, action: str) -> bool:
        if self.read_only and action in MUTATING:
            self.app.notify(f"Read-only mode: {action} would change a pod, so it is off.",
                            title="Read-only", severity="warning")
            return True
        return False

    def refused_key(self, key: str, action: str) -> None:
        """A key read-only mode turned off was pressed: a short toast, so it is not silent."""
        self.app.notify(f"Read-only: {key} ({action}) is off.", severity="warning", timeout=3)

    def _fleet(self) -> Any | None:
        if self.app.fleet is None:
            self.app.notify("Still starting up: no pod is connected yet.", severity="warning")
        return self.app.fleet

    def _run(self, what: str, target: Target, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - every failure is shown, none is fatal
                self.app.notify(f"{what} failed: {error_text(exc)}", title=target.pod, severity="error")

        self.app.run_worker(guarded(), name=f"{what} {target.pod}", group="actions", exit_on_error=False)

    def _pod(self, name: str) -> PodSnapshot | None:
        try:
            return self.app.snapshot.pod(name)
        except KeyError:
            return None

    def _session(self, target: Target) -> SessionSnapshot | None:
        pod = self._pod(target.pod)
        return next((s for s in pod.sessions if s.name == target.session), None) if pod else None

    # -- automation (the config's policies, run by tui.watch_bridge) ------------------

    def automation(self, target: Target) -> None:
        if self._refused("automation"):
            return
        bridge = self.app.automation
        enabled = bridge.toggle(target.pod) if bridge is not None else None
        if enabled is None:
            self.app.notify("Still starting up: the policies are not running yet.", severity="warning")
            return
        marker = getattr(self.app.screen, "automation_changed", None)
        if marker is not None:
            marker()
        if enabled:
            self.app.notify("Policies on: auto-download, auto-resume and the budget act on this pod.",
                            title=target.pod)
        else:
            self.app.notify("Policies paused: nothing is downloaded, restarted or stopped automatically "
                            "on this pod (alerts stay on). w turns them back on.", title=target.pod,
                            severity="warning")

    # -- launch --------------------------------------------------------------------

    def _launch_candidates(self, pod_name: str) -> list[str]:
        """Configured sessions with a command that are not running now."""
        pod = self._pod(pod_name)
        running = {s.name for s in pod.sessions if s.state == SessionState.RUNNING} if pod else set()
        try:
            configured = self.app.config.pod(pod_name).sessions
        except KeyError:
            return []
        return [s.name for s in configured if s.command and s.name not in running]

    def launch(self, target: Target) -> None:
        if self._refused("launch"):
            return
        candidates = self._launch_candidates(target.pod)
        if not candidates:
            self.app.notify(NOTHING_TO_LAUNCH, title=target.pod, severity="warning")
            return
        if target.session in candidates or len(candidates) == 1:
            name = target.session if target.session in candidates else candidates[0]
            self._run("Launch", target, self._launch(target.pod, name))
            return
        self._run("Launch", target, self._pick_and_launch(target.pod, candidates))

    async def _pick_and_launch(self, pod: str, candidates: list[str]) -> None:
        from tui.dialogs.pick import PickDialog

        commands = {s.name: s.command or "" for s in self.app.config.pod(pod).sessions}
        choice = await self.app.push_screen_wait(
            PickDialog(f"Launch which session on {pod}?", [(n, commands[n]) for n in candidates]))
        if choice:
            await self._launch(pod, choice)

    async def _launch(self, pod: str, session: str) -> None:
        fleet = self._fleet()
        if fleet is None:
            return
        how = await self._launch_how(pod, session)
        if how is None:
            self.app.notify(f"Session {session!r} was not launched.", title=pod)
            return
        if how == "resume":
            await self._resume(Target(pod, session), running=False)
            return
        await fleet.launch(pod, session)  # told as `session_launched`: tui.event_toasts words it

    async def _launch_how(self, pod: str, session: str) -> str | None:
        """"scratch", "resume", or None (cancelled). Launching runs the session's
        `command:`, which starts training at step 0: where the pod holds a complete
        checkpoint of the session, that silently throws it away, so `n` asks as `r` does
        (resume from it, or start from scratch after a second yes)."""
        from sessions.checkpoints.listing import newest_complete
        from sessions.checkpoints.resume import NoResumeTemplate, resumable
        from tui.dialogs.confirm import ConfirmDialog
        from tui.dialogs.pick import PickDialog

        try:
            newest = newest_complete(await self.list_checkpoints(Target(pod, session)))
        except Exception as exc:  # noqa: BLE001 - could not look: say so, and let the user choose
            question = (f"gpuctl could not look for checkpoints of session {session!r}: {error_text(exc)}\n"
                        "Launching runs its `command:`, which starts training from step 0.")
            ok = await self.app.push_screen_wait(ConfirmDialog("Launch without checking?", question, "Launch"))
            return "scratch" if ok else None
        if newest is None:
            return "scratch"
        at = f" (step {newest.step})" if newest.step is not None else ""
        verified = ", a verified copy is downloaded here" if getattr(newest, "verified_local", False) else ""
        scratch = (f"Launch session {session!r} on pod {pod!r} from scratch?\n"
                   f"Its `command:` runs and training starts again from step 0. {newest.name}{at} stays on the "
                   "pod, unless the new run saves over it.")
        try:
            resumable(self.app.config.pod(pod), session)
        except NoResumeTemplate:
            question = (scratch + f"\nThe session has no `resume:` command, so it cannot resume from "
                        f"{newest.name}; add one to config to resume with n or r.")
            ok = await self.app.push_screen_wait(ConfirmDialog("Start from scratch?", question, "Start from scratch"))
            return "scratch" if ok else None
        choice = await self.app.push_screen_wait(PickDialog(
            f"Launch {session}", [("resume", f"Resume from {newest.name}{at}"),
                                  ("scratch", "Start from scratch (step 0)…")],
            body=f"Session {session!r} has a checkpoint on pod {pod!r}: {newest.name}{at}{verified}.",
            show_names=False))
        if choice != "scratch":
            return choice
        ok = await self.app.push_screen_wait(ConfirmDialog("Start from scratch?", scratch, "Start from scratch"))
        return "scratch" if ok else None

    # -- kill ----------------------------------------------------------------------

    def kill(self, target: Target) -> None:
        if self._refused("kill") or target.session is None:
            return
        session = self._session(target)
        if session is None or session.state == SessionState.ABSENT:
            self.app.notify(f"No tmux session {target.session!r} is running: nothing to kill.",
                            title=target.pod, severity="warning")
            return
        self._run("Kill", target, self._kill(target, session))

    def kill_question(self, target: Target, session: SessionSnapshot, running: str | None = None) -> str:
        """The dialog text: which session, what it is doing, what is lost and kept.
        `running`: what the pod's process table says runs (`sessions.tmux.pane_process`),
        quoted before the configured `command:`, which a `resume:` relaunch or a
        session started by hand does not run."""
        lines = [f"Kill tmux session {session.name!r} on pod {target.pod!r}."]
        if session.state == SessionState.EXITED:
            status = f" with status {session.exit_status}" if session.exit_status is not None else ""
            lines.append(f"Its command already exited{status}; this removes the session and its last screen.")
        else:
            configured = self._configured_command(target.pod, session.name)
            if running:
                lines.append(f"It is running: {running}")
                if configured and not same_command(configured, running):
                    lines.append(f"(its configured command: {configured})")
            else:
                lines.append(f"It is running: {configured or 'a command started by hand'}")
            p = session.progress
            if p and p.step is not None:
                eta = f", ETA {humanize.duration(p.eta_s)}" if p.eta_s is not None else ""
                lines.append(f"Training is at step {step_text(p)}{eta}; it stops now, unsaved progress is lost.")
            else:
                lines.append("The process is ended now.")
        if session.log:
            lines.append(f"The log stays on the pod: {session.log}")
        return "\n".join(lines)

    def _configured_command(self, pod: str, session: str) -> str | None:
        try:
            return self.app.config.pod(pod).session(session).command
        except KeyError:
            return None

    async def _what_runs(self, pod: str, session: SessionSnapshot) -> str | None:
        """What the session's pane runs, read from the pod (None when unknown: the
        dialog then quotes the configured command, as it always did)."""
        from tui.terminal_text import visible

        if session.state != SessionState.RUNNING or session.pid is None or self.app.fleet is None:
            return None
        try:
            found = await self.app.fleet.what_runs(pod, session.pid)
        except Exception:  # noqa: BLE001 - a question about the kill must not stop the kill
            return None
        return visible(found)[:300] if found else None

    async def _kill(self, target: Target, session: SessionSnapshot) -> None:
        from tui.dialogs.confirm import ConfirmDialog

        question = self.kill_question(target, session, await self._what_runs(target.pod, session))
        if not await self.app.push_screen_wait(ConfirmDialog("Kill session?", question, "Kill")):
            self.app.notify(f"Session {session.name!r} was not killed.", title=target.pod)
            return
        fleet = self._fleet()
        if fleet is None:
            return
        await fleet.kill(target.pod, session.name)  # told as `session_killed`: tui.event_toasts words it

    # -- attach --------------------------------------------------------------------

    def attach(self, target: Target) -> None:
        if self._refused("attach") or target.session is None:
            return
        session = self._session(target)
        if session is None or session.state == SessionState.ABSENT:
            hint = " Press n to launch it." if target.session in self._launch_candidates(target.pod) else ""
            self.app.notify(f"No tmux session {target.session!r} on this pod.{hint}",
                            title=target.pod, severity="warning")
            return
        self._run("Attach", target, self._attach(target.pod, session.name))

    async def _attach(self, pod: str, session: str) -> None:
        from textual.app import SuspendNotSupported

        fleet = self._fleet()
        if fleet is None:
            return
        argv = fleet.attach_argv(pod, session, inside_tmux=bool(os.environ.get("TMUX")))
        try:
            status, stderr = await self.attach_runner(self.app, argv)
        except SuspendNotSupported:
            self.app.notify(f"This terminal cannot be handed over; run: gpuctl attach {pod} {session}",
                            title=pod, severity="error")
            return
        except FileNotFoundError:
            self.app.notify(f"Cannot attach: {argv[0]!r} is not installed.", title=pod, severity="error")
            return
        fleet.refresh(pod)
        if status not in (0, None):
            self.app.notify(f"Attach ended with status {status}: {attach_failure(status, stderr, argv, session)}.",
                            title=pod, severity="warning")

    # -- checkpoints: download and resume ----------------------------------------------

    def _configured_session(self, target: Target, verb: str) -> Any | None:
        """The session's config entry, or None after saying why it is needed."""
        try:
            return self.app.config.pod(target.pod).session(target.session or "")
        except KeyError:
            self.app.notify(f"Session {target.session!r} is not in config: gpuctl needs its workdir and "
                            f"checkpoint globs to {verb}.", title=target.pod, severity="warning")
            return None

    def download(self, target: Target) -> None:
        if target.session is None or self._configured_session(target, "find its checkpoints") is None:
            return
        current = self.downloads.get((target.pod, target.session))
        if current is not None and current.state == RUNNING:
            self.app.notify(f"Already downloading {current.name or 'a checkpoint'} of {target.session!r}.",
                            title=target.pod)
            return
        self._set_download(DownloadState(target.pod, target.session, started=time.monotonic()))
        self._run("Download", target, self._download(target.pod, target.session))

    def _operations(self) -> Any:
        """The Fleet, whose operations (`sessions.fleet.operations`) every action here
        calls, as the headless commands do; they borrow the pod's live link, so an
        action costs no handshake. Raises while the app is still starting."""
        if self.app.fleet is None:
            raise RuntimeError("still starting: no pod is connected yet")
        return self.app.fleet

    def _set_download(self, state: DownloadState) -> None:
        self.downloads[(state.pod, state.session)] = state
        self.app.post_message(DownloadsChanged())

    async def _download(self, pod: str, session: str) -> None:
        key = (pod, session)

        def progress(done: int, total: int) -> None:
            state = self.downloads[key]
            self._set_download(DownloadState(pod, session, RUNNING, state.name, done, total, started=state.started))

        self.app.notify(f"Downloading the newest complete checkpoint of {session!r}.", title=pod, routine=True)
        try:
            result = await self._operations().download(pod, session, progress=progress)  # the live link
        except Exception as exc:  # noqa: BLE001 - DownloadError, listing, SSH...: all shown
            why = error_text(exc)
            self._set_download(DownloadState(pod, session, FAILED, self.downloads[key].name, message=why))
            self.app.notify(f"Download failed: {why}", title=pod, severity="error", timeout=15)
            return
        name = result.checkpoint.name
        self._set_download(DownloadState(pod, session, DONE, name, result.size, result.size,
                                         message=str(result.local_path)))
        if result.skipped:
            self.app.notify(f"{name} is already downloaded and verified: {result.local_path}", title=pod)
        # Otherwise the Fleet published `checkpoint_downloaded`, as auto-download does: the
        # toast, the checkpoint pane and the notify targets follow from that one event.

    def take_event(self, event: Any) -> None:
        """A domain event (the app hands each one here): a local copy the
        `keep_local` policy pruned is no longer shown as this session's download."""
        from sessions.events import EventKind

        if event.kind != EventKind.CHECKPOINT_PRUNED or event.session is None:
            return
        shown = self.downloads.get((event.pod, event.session))
        if shown is not None and shown.state == DONE and shown.message == event.extra.get("local_path"):
            del self.downloads[(event.pod, event.session)]
            self.app.post_message(DownloadsChanged())

    def resume(self, target: Target) -> None:
        if self._refused("resume") or target.session is None:
            return
        if self._configured_session(target, "resume it") is None:
            return
        session = self._session(target)
        running = session is not None and session.state == SessionState.RUNNING
        self._run("Resume", target, self._resume(target, running))

    async def _resume(self, target: Target, running: bool) -> None:
        from sessions.checkpoints import resume
        from tui.dialogs.confirm import ConfirmDialog

        pod = self.app.config.pod(target.pod)
        resume.resumable(pod, target.session or "")  # a config problem says so before any question
        if running:
            question = (f"Session {target.session!r} on pod {target.pod!r} is still running.\n"
                        "Resuming kills it and relaunches its `resume:` command from the newest complete "
                        "checkpoint; progress since that checkpoint is lost.")
            if not await self.app.push_screen_wait(ConfirmDialog("Restart from checkpoint?", question, "Restart")):
                self.app.notify(f"Session {target.session!r} was left running.", title=target.pod)
                return
        # Told as `resumed` by the Fleet, as auto-resume's is: tui.event_toasts words it.
        await self._operations().resume(target.pod, target.session or "", restart=running)

    async def list_checkpoints(self, target: Target) -> list[Any]:
        """The session's checkpoints, newest first, each marked when a verified copy
        exists here (for the pod screen's worker). Raises as `list_checkpoints` does."""
        return await self._operations().list_checkpoints(target.pod, target.session or "", settle=0)

    # -- stop and teardown, through the pod's provider ---------------------------------

    def stop(self, target: Target) -> None:
        if not self._refused("stop") and self._provider_entry(target.pod, "stop") is not None:
            self._run("Stop", target, self._stop(target.pod))

    def teardown(self, target: Target) -> None:
        if not self._refused("teardown") and self._provider_entry(target.pod, "tear down") is not None:
            self._run("Teardown", target, self._teardown(target.pod))

    def _provider_entry(self, pod: str, verb: str) -> Any | None:
        """The pod's provider entry, or None after saying that it has none."""
        try:
            entry = self.app.config.pod(pod).provider
        except KeyError:
            entry = None
        if entry is None:
            self.app.notify(f"Pod {pod!r} has no provider, so gpuctl cannot {verb} it. Add a `provider:` "
                            "entry to the pod in config, or use your cloud console.", title=pod, severity="warning")
        return entry

    async def _capabilities(self, pod: Any) -> Any:
        """What the provider can do and what each action keeps and destroys (raises
        `ProviderSetupError`, e.g. an unset key variable, before anything is asked)."""
        from sessions.providers import ops as provider_ops

        provider = provider_ops.build_provider(pod.provider, pod_name=pod.name)
        try:
            return provider.capabilities
        finally:
            await provider.aclose()

    async def _stop(self, pod_name: str) -> None:
        from tui.dialogs.confirm import ConfirmDialog

        pod = self.app.config.pod(pod_name)
        caps = await self._capabilities(pod)
        if not caps.can_stop:
            self.app.notify(f"Not stopping: {caps.stop_refusal}", title=pod_name, severity="warning")
            return
        question = (f"Stop pod {pod_name!r}: ask {pod.provider.type} to stop instance {pod.provider.id}.\n"
                    f"Kept: {caps.stop_keeps}\nLost: {caps.stop_loses}")
        ok, guard = True, None
        if caps.stop_loses_data:  # the stop wipes a disk (RunPod): the teardown guard's question too
            guard = self._operations().guard_for(self.trained_steps(pod_name))  # over the pod's live link
            ok, note = await guard(pod)
            question += "\n" + self.checkpoints_line(ok, note)
        if not await self.app.push_screen_wait(ConfirmDialog("Stop pod?", question, "Stop" if ok else "Stop anyway")):
            self.app.notify(f"Pod {pod_name!r} was not stopped.", title=pod_name)
            return
        self.app.notify(f"Asking {pod.provider.type} to stop the pod; this can take minutes.", title=pod_name)
        fleet = self._fleet()
        if fleet is not None:
            # Confirming after reading the checkpoint warning is the TUI's --force. The result is
            # told as `provider_action` by the Fleet: tui.event_toasts words it.
            await fleet.stop_instance(pod_name, force=not ok, guard=guard)

    def trained_steps(self, pod_name: str) -> dict[str, int]:
        """Session -> the step its log last showed: the guard's evidence that a session
        without any checkpoint has progress to lose (a stop or teardown wipes it)."""
        pod = self._pod(pod_name)
        return {s.name: s.progress.step for s in (pod.sessions if pod else ())
                if s.progress is not None and s.progress.step}

    @staticmethod
    def checkpoints_line(ok: bool, note: str) -> str:
        """The dialogs' line on whether the newest checkpoint is safe (the guard's words;
        a pod not running gives no verdict on its side, only what is verified here)."""
        from sessions.checkpoints.teardown_guard import NOT_CHECKED

        if ok:
            return f"Checkpoints: safe: {note}."
        if note.startswith(NOT_CHECKED):
            return f"Checkpoints: {note[:1].upper()}{note[1:]}."
        return f"Checkpoints: NOT safely downloaded: {note}."

    def teardown_question(self, pod: Any, caps: Any, checkpoint_ok: bool, checkpoint_note: str) -> str:
        """What a teardown destroys, and whether the newest checkpoint is safe."""
        where = f"instance {pod.provider.id}" if pod.provider.id else pod.host
        return (f"Terminate pod {pod.name!r}: ask {pod.provider.type} to delete {where}.\n"
                f"Destroyed: {caps.teardown_destroys}\n{self.checkpoints_line(checkpoint_ok, checkpoint_note)}\n"
                "This cannot be undone.")

    async def _teardown(self, pod_name: str) -> None:
        from tui.dialogs.confirm import TypedConfirmDialog

        pod = self.app.config.pod(pod_name)
        caps = await self._capabilities(pod)
        guard = self._operations().guard_for(self.trained_steps(pod_name))  # over the pod's live link
        ok, note = await guard(pod)
        question = self.teardown_question(pod, caps, ok, note)
        dialog = TypedConfirmDialog("Tear down pod?", question, "Tear down" if ok else "Tear down anyway", pod_name)
        if not await self.app.push_screen_wait(dialog):
            self.app.notify(f"Pod {pod_name!r} was not torn down.", title=pod_name)
            return
        self.app.notify(f"Asking {pod.provider.type} to terminate the pod; this can take minutes.", title=pod_name)
        fleet = self._fleet()
        if fleet is not None:
            # Typing the name after reading the checkpoint warning is the TUI's --force
            # (told as `provider_action`, like a stop).
            await fleet.teardown_instance(pod_name, force=not ok, guard=guard)
