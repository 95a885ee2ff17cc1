"""`gpuctl checkpoints|download|resume POD SESSION`: a session's checkpoints from the shell.

Exit status: 0 done (and `download` of a copy already verified); 1 the pod, the
link or the copy failed (unreachable, transfer stopped, SHA-256 mismatch, nothing
complete to resume from, session still running); 2 the command line or config is
wrong (unknown pod, session or checkpoint name, no `resume:` template, read_only).

stdout carries the data (the table, the JSON, the final line naming the copy);
progress and diagnostics go to stderr.

Each command acts through `Fleet.for_command` (the calls the TUI makes), so it opens
exactly one connection to the pod, shared by all of its steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, complain, load_pod_or_explain, refuse_read_only, run_async
from tui.terminal_text import visible

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    listing = sub.add_parser("checkpoints", help="list a session's checkpoints on its pod, newest first")
    listing.add_argument("pod", metavar="POD")
    listing.add_argument("session", metavar="SESSION")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_checkpoints)

    download = sub.add_parser("download", help="download a checkpoint (default: the newest), resumable and verified")
    download.add_argument("pod", metavar="POD")
    download.add_argument("session", metavar="SESSION")
    download.add_argument("name", metavar="NAME", nargs="?", help="checkpoint name as listed (default: newest complete)")
    download.add_argument("--dest", metavar="DIR", help="local folder (default: ./checkpoints/POD/SESSION)")
    download.set_defaults(handler=_download)

    resume = sub.add_parser("resume", help="relaunch a session from its newest checkpoint (its resume: template)")
    resume.add_argument("pod", metavar="POD")
    resume.add_argument("session", metavar="SESSION")
    resume.add_argument("--restart", action="store_true", help="kill the session first if it is still running")
    resume.set_defaults(handler=_resume)



def _session_or_explain(pod: Any, name: str) -> Any:
    try:
        return pod.session(name)
    except KeyError as exc:
        complain(str(exc))
        return None


def _globs_ok(session: Any) -> bool:
    """The session's `checkpoints:` globs stay in its workdir (else say so)."""
    from sessions.checkpoints.listing import UnsafeName, patterns_for

    try:
        patterns_for(session)
    except UnsafeName as exc:
        complain(f"session {session.name!r}: {exc}")
        return False
    return True


def _load_checkpoint_session(args: argparse.Namespace) -> tuple[Any, Any, Any] | None:
    """(config, pod, session) for a command about a session's checkpoints, or None
    after saying what is wrong (unknown pod or session, globs leaving the workdir)."""
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return None
    config, pod = loaded
    session = _session_or_explain(pod, args.session)
    if session is None or not _globs_ok(session):
        return None
    return config, pod, session


# ------------------------------------------------------------------- checkpoints


def _checkpoints(args: argparse.Namespace) -> int:
    loaded = _load_checkpoint_session(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod, session = loaded
    return run_async(lambda: _checkpoints_async(config, pod, session, args.json))


async def _checkpoints_async(config: Any, pod: Any, session: Any, as_json: bool) -> int:
    from sessions.errors import SshFailure
    from sessions.checkpoints.listing import CheckpointListingFailed
    from sessions.fleet.facade import Fleet

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            found = await fleet.list_checkpoints(pod.name, session.name)
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    except CheckpointListingFailed as exc:
        complain(str(exc))
        return EXIT_FAILED
    if as_json:
        print(json.dumps({"pod": pod.name, "session": session.name, "checkpoints": [c.to_json() for c in found]}))
    elif not found:
        print(f"no checkpoints found for session {session.name!r} on pod {pod.name!r} "
              f"(looked for: {', '.join(session.checkpoints) or 'the default patterns'}; "
              "set the session's `checkpoints:` globs, relative to its workdir)")
    else:
        sys.stdout.write(render_checkpoints(found))
    return 0


def render_checkpoints(found: list[Any]) -> str:
    """The plain table of `gpuctl checkpoints`."""
    from tui import humanize
    from tui.terminal_text import plain_table

    columns = ("NAME", "STEP", "SIZE", "AGE", "STATE", "LOCAL")
    rows = [list(columns)] + [
        [c.name + ("/" if c.kind == "dir" else ""), "-" if c.step is None else str(c.step),
         humanize.size(c.size), humanize.duration(c.age_s), c.state, "verified" if c.verified_local else "-"]
        for c in found
    ]
    return plain_table(rows)


# ---------------------------------------------------------------------- download


def _download(args: argparse.Namespace) -> int:
    loaded = _load_checkpoint_session(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod, session = loaded
    return run_async(lambda: _download_async(config, pod, session, args.name, args.dest))


async def _download_async(config: Any, pod: Any, session: Any, name: str | None, dest: str | None) -> int:
    from sessions.errors import SshFailure
    from sessions.checkpoints.listing import CheckpointListingFailed
    from sessions.checkpoints.download import DownloadError
    from sessions.fleet.facade import Fleet
    from tui import humanize
    from tui.transfer_progress import TransferProgress

    label = f"{pod.name}/{session.name}"
    try:
        with TransferProgress(label) as progress:  # a rich bar on a terminal, plain lines otherwise
            async with Fleet.for_command(config, [pod.name]) as fleet:
                result = await fleet.download(pod.name, session.name, name, dest, progress)
    except DownloadError as exc:
        complain(exc.message)
        return exc.exit_code
    except CheckpointListingFailed as exc:
        complain(str(exc))
        return EXIT_FAILED
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    cp = result.checkpoint
    if result.skipped:
        print(visible(f"{cp.name}: already downloaded and verified at {result.local_path}"))
        return 0
    if result.copied_from is not None:
        how = "hard-linked" if result.method == "link" else "copied"
        print(visible(f"{cp.name}: {how} from the verified copy at {result.copied_from}, "
                      f"sha256 verified -> {result.local_path}"))
        return 0
    rate = humanize.rate(result.transferred / result.seconds if result.seconds > 0 else 0.0)
    resumed = f", resumed after {humanize.size(result.resumed_from)}" if result.resumed_from else ""
    print(visible(f"{cp.name}: {humanize.size(result.size)} in {result.seconds:.1f}s ({rate}{resumed}), "
                  f"sha256 verified -> {result.local_path}"))
    return 0


# ------------------------------------------------------------------------ resume


def _resume(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if refuse_read_only(config, "resume"):
        return EXIT_USAGE
    if pod.is_slurm:  # a login node: SESSION names a job (tui/commands/slurm_cmds.py)
        from tui.commands import slurm_cmds

        return slurm_cmds.resume(args, config, pod)
    from sessions.checkpoints.resume import NoResumeTemplate, resumable

    try:  # before connecting: no pod can fix the config
        session = resumable(pod, args.session)
    except KeyError as exc:
        complain(str(exc))
        return EXIT_USAGE
    except NoResumeTemplate as exc:
        complain(str(exc))
        return EXIT_USAGE
    if not _globs_ok(session):
        return EXIT_USAGE
    return run_async(lambda: _resume_async(config, pod, session, args.restart))


async def _resume_async(config: Any, pod: Any, session: Any, restart: bool) -> int:
    from sessions.errors import SshFailure
    from sessions.checkpoints.listing import CheckpointListingFailed
    from sessions.fleet.facade import Fleet
    from sessions.tmux.control import SessionError

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            result = await fleet.resume(pod.name, session.name, restart=restart)
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    except (SessionError, CheckpointListingFailed) as exc:
        complain(str(exc))
        return EXIT_FAILED
    killed = ", after killing the running one" if result.killed_running else ""
    print(visible(f"resumed session {session.name!r} on pod {pod.name!r} from {result.checkpoint.name}{killed}"))
    print(visible(f"  command: {result.command}"))
    print(f"  log:     {result.launch.log_path}")
    print(f"  attach:  gpuctl attach {pod.name} {session.name}")
    return 0
