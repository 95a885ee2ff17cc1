"""`gpuctl sessions POD`, `gpuctl logs POD SESSION [-n N] [-f]`, `gpuctl progress FILE`."""

from __future__ import annotations

import argparse
import json
import sys

from tui.commands.common import EXIT_USAGE, load_pod_or_explain, run_async


def register(sub: argparse._SubParsersAction) -> None:
    sessions = sub.add_parser("sessions", help="list a pod's training sessions with progress")
    sessions.add_argument("pod", metavar="POD")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    sessions.set_defaults(handler=_sessions)

    logs = sub.add_parser("logs", help="print (and follow) a session's log")
    logs.add_argument("pod", metavar="POD")
    logs.add_argument("session", metavar="SESSION")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="last N lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines, like tail -F")
    logs.set_defaults(handler=_logs)

    progress = sub.add_parser("progress", help="show what gpuctl reads from a local log file")
    progress.add_argument("file", metavar="FILE", nargs="?")
    progress.add_argument("--dir", metavar="RUN_DIR", dest="run_dir",
                          help="read the tracker files of a local run directory instead of a log")
    progress.add_argument("--json", action="store_true", help="print JSON")
    progress.set_defaults(handler=_progress)


def _progress(args: argparse.Namespace) -> int:
    if args.run_dir is not None or args.file is None:
        return _progress_dir(args)
    from sessions.progress.tracker import parse_file
    from sessions.progress.explain import missing
    from tui.sessions_table import render_progress

    try:
        progress = parse_file(args.file)  # reads in pieces: a multi-GB log stays cheap
    except OSError as exc:
        print(f"gpuctl: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        # the reading's keys, plus why each missing figure is missing
        print(json.dumps({**progress.to_json(), "missing": missing(progress)}))
    else:
        sys.stdout.write(render_progress(progress, args.file))
    return 0


def _progress_dir(args: argparse.Namespace) -> int:
    """`gpuctl progress --dir RUN_DIR`: the logic is `sessions.progress.trackers`'."""
    import os

    from sessions.progress import trackers

    if args.run_dir is None or args.file is not None:
        print("gpuctl: progress takes a log FILE or --dir RUN_DIR (one of them)", file=sys.stderr)
        return EXIT_USAGE
    if not os.path.isdir(args.run_dir):
        print(f"gpuctl: not a directory: {args.run_dir}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(trackers.dir_json(args.run_dir)))
    else:
        sys.stdout.write(trackers.explain(args.run_dir))
    return 0


def _sessions(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    return run_async(lambda: _sessions_async(config, pod.name, args.json))


async def _sessions_async(config, name: str, as_json: bool) -> int:
    from sessions.fleet.facade import Fleet
    from tui.sessions_table import render_sessions_plain
    from tui.status_json import session_json

    async with Fleet(config, [name]) as fleet:
        snapshot = (await fleet.wait_settled()).pod(name)
    if as_json:
        print(json.dumps({"pod": name, "state": snapshot.state, "error": snapshot.error,
                          "sessions": [session_json(s, snapshot) for s in snapshot.sessions]}))
    elif snapshot.state != "online":
        print(f"gpuctl: {name}: {snapshot.error or snapshot.state}", file=sys.stderr)
    elif not snapshot.sessions:
        print(f"no sessions on {name} (configure some under the pod's `sessions:`, or start one in tmux)")
    else:
        sys.stdout.write(render_sessions_plain(snapshot.sessions))
    return 0 if snapshot.state == "online" else 1


def _logs(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if pod.is_slurm:  # a login node: SESSION names a job (tui/commands/slurm_cmds.py)
        from tui.commands import slurm_cmds

        return slurm_cmds.logs(args, config, pod)
    from sessions.tmux.logs import default_log_path, log_path_for
    from tui.commands.session_cmds import name_refused

    configured = {s.name: s for s in pod.sessions}
    if args.session in configured:
        path = log_path_for(configured[args.session])
    elif name_refused(pod, args.session):
        return EXIT_USAGE
    else:
        path = default_log_path(args.session)  # an adopted session, captured by pipe-pane
    return run_async(lambda: _logs_async(config, pod, path, args.lines, args.follow))


async def _logs_async(config, pod, path: str, lines: int, follow: bool) -> int:
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet

    from tui.terminal_text import LogBytes, visible

    out = sys.stdout.buffer
    # On a terminal the pod's bytes are not trusted with it (colours and \r pass, other
    # control sequences are shown escaped); into a pipe or file they go as they are.
    cleaner = LogBytes() if sys.stdout.isatty() else None

    def notice(message: str) -> None:
        print(f"gpuctl: {visible(message)}", file=sys.stderr, flush=True)

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:  # one connection, reconnected by its link
            async for chunk in fleet.logs(pod.name, path, lines=lines, follow=follow, on_notice=notice):
                out.write(cleaner.feed(chunk) if cleaner else chunk)
                out.flush()
    except SshFailure as failure:
        print(f"gpuctl: {pod.name}: {visible(failure.message)}", file=sys.stderr)
        return 1
    finally:
        if cleaner:
            out.write(cleaner.flush())
            out.flush()
    return 0
