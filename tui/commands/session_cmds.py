"""`gpuctl launch|kill|attach POD SESSION`: a pod's tmux sessions from the shell.

Each acts through `Fleet.for_command` (the calls the TUI makes): one connection to the
pod for the whole command (kill's look, question and kill included).

Exit status: 0 done (and `kill` of a session that is not there: nothing to do);
1 the pod refused or could not be reached (already running, tmux missing, SSH
failure); 2 the command line or config is wrong (unknown pod or session, no
`command:`, `kill` without `--yes` and no terminal to ask on, `read_only` config).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, Awaitable, Callable, Sequence

from tui.commands.common import EXIT_USAGE, ask, complain, load_pod_or_explain, refuse_read_only, run_async

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    launch = sub.add_parser("launch", help="start a configured session in tmux on a pod")
    launch.add_argument("pod", metavar="POD")
    launch.add_argument("session", metavar="SESSION")
    launch.set_defaults(handler=_launch)

    attach = sub.add_parser("attach", help="attach this terminal to a session (detach: C-b d)")
    attach.add_argument("pod", metavar="POD")
    attach.add_argument("session", metavar="SESSION")
    attach.set_defaults(handler=_attach)

    kill = sub.add_parser("kill", help="kill a session's tmux session (asks first)")
    kill.add_argument("pod", metavar="POD")
    kill.add_argument("session", metavar="SESSION")
    kill.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    kill.set_defaults(handler=_kill)



def name_refused(pod: Any, name: str) -> bool:
    """Say so (and return True) when no tmux session can be called `name` (`a.b` is
    `a_b` to tmux): a usage error, found before connecting."""
    from sessions.tmux.commands import tmux_name_problem

    problem = tmux_name_problem(name, existing=True)
    if problem:
        complain(f"pod {pod.name!r}: {problem}")
    return problem is not None


async def _on_pod(config: Any, pod: Any, action: Callable[[Any], Awaitable[int]]) -> int:
    """Run `action(fleet)` on a command's Fleet (`Fleet.for_command`: the calls the TUI
    makes, one connection for all the steps), and print pod and session errors plainly."""
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet
    from sessions.tmux.control import SessionError

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            return await action(fleet)
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
    except SessionError as exc:
        complain(str(exc))
    return EXIT_FAILED


# ------------------------------------------------------------------------ launch


def _launch(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if pod.is_slurm:  # a login node: SESSION names a job (tui/commands/slurm_cmds.py)
        from tui.commands import slurm_cmds

        return EXIT_USAGE if refuse_read_only(config, "launch") else slurm_cmds.launch(args, config, pod)
    if refuse_read_only(config, "launch"):
        return EXIT_USAGE
    from sessions.tmux import control as sc

    try:  # before connecting: no pod can fix the config
        session = sc.launchable(pod, args.session)
    except KeyError as exc:
        complain(str(exc))
        return EXIT_USAGE
    except sc.NoCommand as exc:
        complain(str(exc))
        return EXIT_USAGE

    async def action(fleet: Any) -> int:
        result = await fleet.launch(pod.name, session.name)
        replaced = ""
        if result.replaced:
            status = result.previous_exit_status
            how = f"exited with status {status}" if status is not None else "exited"
            replaced = f", replacing the one that had {how}"
        print(f"launched session {result.name!r} on pod {pod.name!r}{replaced}")
        print(f"  log:    {result.log_path}")
        print(f"  attach: gpuctl attach {pod.name} {result.name}")
        return 0

    return run_async(lambda: _on_pod(config, pod, action))


# -------------------------------------------------------------------------- kill


def _kill(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if pod.is_slurm:  # a login node: SESSION names a job (tui/commands/slurm_cmds.py)
        from tui.commands import slurm_cmds

        return EXIT_USAGE if refuse_read_only(config, "kill") else slurm_cmds.kill(args, config, pod)
    if refuse_read_only(config, "kill") or name_refused(pod, args.session):
        return EXIT_USAGE
    if not args.yes and not sys.stdin.isatty():
        complain(f"not killing session {args.session!r} on pod {pod.name!r} without confirmation: "
             "pass --yes to kill without a prompt")
        return EXIT_USAGE
    configured = {s.name: s.command for s in pod.sessions}

    async def action(fleet: Any) -> int:
        state = await fleet.session_state(pod.name, args.session)
        if not state.exists:
            complain(f"no session {args.session!r} on pod {pod.name!r}; nothing to kill")
            return 0
        if not args.yes:
            if state.running:
                what = f"running: {configured.get(args.session) or state.current_command or 'unknown'}"
            else:
                status = state.exit_status
                what = f"exited with status {status}" if status is not None else "exited"
            if not ask(f"Kill session {args.session!r} on pod {pod.name!r} ({what})?"):
                complain("not killed")
                return EXIT_FAILED
        result = await fleet.kill(pod.name, args.session)
        if not result.existed:
            complain(f"session {args.session!r} on pod {pod.name!r} ended by itself; nothing to kill")
            return 0
        print(f"killed session {args.session!r} on pod {pod.name!r}")
        return 0

    return run_async(lambda: _on_pod(config, pod, action))


# ------------------------------------------------------------------------ attach


def run_attach(argv: Sequence[str], *, replace_process: bool = True, env: dict[str, str] | None = None) -> int:
    """Hand the terminal to `argv` (ssh -t ... tmux attach).

    With `replace_process` (the CLI), gpuctl execs it: no Python stays between the
    terminal and ssh, and when the user detaches, ssh exits and they are back in
    their shell with ssh's status. Tests pass False to run it as a child instead.
    """
    if not replace_process:
        return subprocess.run(list(argv), env=env).returncode
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if env is None:
            os.execvp(argv[0], list(argv))
        else:
            os.execvpe(argv[0], list(argv), env)
    except OSError as exc:  # only returns on failure
        complain(f"cannot run {argv[0]}: {exc.strerror or exc}")
    return EXIT_FAILED


def _attach(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if name_refused(pod, args.session):
        return EXIT_USAGE
    from sessions.fleet.facade import Fleet

    configured = {s.name for s in pod.sessions}
    found: dict[str, Any] = {}

    async def action(fleet: Any) -> int:
        found["state"] = await fleet.session_state(pod.name, args.session)
        return 0

    code = run_async(lambda: _on_pod(config, pod, action))
    if code != 0:
        return code
    state = found["state"]
    if not state.exists:
        hint = f" (start it: gpuctl launch {pod.name} {args.session})" if args.session in configured else ""
        complain(f"no tmux session {args.session!r} on pod {pod.name!r}{hint}")
        return EXIT_FAILED
    if not sys.stdin.isatty():
        complain("gpuctl attach needs a terminal: stdin is not one (run it from an interactive shell)")
        return EXIT_USAGE
    if not state.running:
        status = f" with status {state.exit_status}" if state.exit_status is not None else ""
        complain(f"session {args.session!r} has exited{status}; attaching shows its last screen")
    # the argv the TUI's `a` runs, with the connection settings monitoring uses
    argv = Fleet.for_command(config, [pod.name]).attach_argv(pod.name, args.session,
                                                             inside_tmux=bool(os.environ.get("TMUX")))
    return run_attach(argv)
