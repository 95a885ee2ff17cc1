"""`gpuctl jobs [--json]`, `gpuctl jobs launch|resume|logs|kill|teardown JOB`: a `jobs:` entry as one unit.

`jobs` prints each job's row (nodes online, GPUs, pace = its slowest running rank, step
skew, loss from rank 0, ETA, spend), in the fleet row's words (`tui.job_rows`), and names
stragglers, hung ranks and ranks not running with their pod; exit 1 when one is named or a node is not online. `launch` starts the job's session on
every pod in rank order with the rendezvous placeholders filled; `resume` relaunches
every rank from the newest checkpoint complete on rank 0; `logs` merges the ranks' logs,
each line prefixed `[rank N]`; `kill` ends it on
every pod; `teardown` checks the checkpoint guard on every node first and terminates
them all (through their providers) only when every node passes. `kill` and `teardown`
ask first on a terminal; without one they need `--yes`. Exit status 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, ask, complain, load_config_or_explain, refuse_read_only, run_async

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="multi-node jobs (config jobs:) as one unit")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(handler=_list)
    verbs = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    logs = verbs.add_parser("logs", help="the ranks' logs merged, each line prefixed [rank N] (-f: follow)")
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="last N lines of each rank (default 20)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines, as they come")
    logs.add_argument("--rank", type=int, metavar="R", help="only this rank's log")
    logs.set_defaults(handler=_logs)
    for verb, text in (("launch", "start the job's session on every node, rank 0 first"),
                       ("resume", "relaunch every node from the newest checkpoint complete on rank 0"),
                       ("kill", "kill the job's session on every node (asks first)"),
                       ("teardown", "terminate every node's instance, once the checkpoint guard passes on all")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("job", metavar="JOB")
        if verb in ("kill", "teardown"):
            p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if verb == "resume":
            p.add_argument("--restart", action="store_true", help="kill the job first where it still runs")
        if verb == "teardown":
            p.add_argument("--force", action="store_true", help="skip the checkpoint guard")
        p.set_defaults(handler=globals()[f"_{verb}"])


def _load(args: argparse.Namespace) -> tuple[Any, Any] | None:
    config = load_config_or_explain(args)
    if config is None:
        return None
    job = next((j for j in config.jobs if j.name == args.job), None)
    if job is None:
        names = ", ".join(j.name for j in config.jobs) or "none configured (add a jobs: block)"
        complain(f"no job {args.job!r} in {config.path}; jobs: {names}")
        return None
    return config, job


def _load_to_change(args: argparse.Namespace, verb: str) -> tuple[Any, Any] | None:
    """`_load`, refused (None, after saying why) where the config is read-only:
    `gpuctl jobs VERB` changes every node of the job."""
    loaded = _load(args)
    if loaded is None or refuse_read_only(loaded[0], f"jobs {verb}"):
        return None
    return loaded


def _confirm(args: argparse.Namespace, question: str) -> bool | None:
    """True to go on, False when the answer was no, None when no one can be asked."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        complain(f"{question.rstrip('?')}: not without confirmation; pass --yes")
        return None
    return ask(question)


async def _on_fleet(config: Any, pods: list[str], action: Any, *, follow: bool = False) -> int:
    from sessions.errors import GpuctlError
    from sessions.fleet.facade import Fleet
    from sessions.jobs.actions import JobError
    from sessions.tmux.control import SessionError

    try:
        fleet = Fleet(config, pods) if follow else Fleet.for_command(config, pods)
        async with fleet:
            return int(await action(fleet))
    except (JobError, SessionError, *GpuctlError) as exc:
        complain(getattr(exc, "message", None) or str(exc))
        return EXIT_FAILED


def _list(args: argparse.Namespace) -> int:
    config = load_config_or_explain(args)
    if config is None:
        return EXIT_USAGE
    if not config.jobs:
        complain(f"no jobs in {config.path}: add a jobs: block (name, pods in rank order, session)")
        return EXIT_USAGE
    pods = list(dict.fromkeys(p for j in config.jobs for p in j.pods))

    async def action(fleet: Any) -> int:
        from sessions.jobs.summary import STRAGGLER, summarize

        snapshot = await fleet.wait_settled(timeout=config.defaults.connect_timeout + config.defaults.command_timeout + 5)
        summaries = [summarize(job, snapshot) for job in config.jobs]
        if args.json:
            print(json.dumps({"jobs": [s.to_json() for s in summaries]}))
        else:
            from tui.job_rows import finding_text, pace_text

            for s in summaries:
                print(_row(s))
                for r in s.findings:  # a rank not running has no rate now, only its last step
                    # a straggler is judged by its rate now (RankView.recent_rate), not the run's
                    now = r.recent_rate if r.flag == STRAGGLER else r.rate
                    rate = "" if not r.running else f", {'no rate yet' if now is None else pace_text(now)}"
                    rate += " now" if r.flag == STRAGGLER and now is not None else ""
                    print(f"  {finding_text(r)}, step {r.step if r.step is not None else '-'}{rate}")
        bad = any(s.findings or s.nodes_online < len(s.ranks) for s in summaries)
        return EXIT_FAILED if bad else 0

    return run_async(lambda: _on_fleet(config, pods, action, follow=True))


def _row(s: Any) -> str:
    """One job's line; its pace and ETA as the fleet row has them (`tui.job_rows`,
    `JobSummary.eta_s`: none while a rank is hung)."""
    from tui.humanize import duration
    from tui.job_rows import pace_text

    eta = duration(s.eta_s) if s.eta_s is not None else "-"
    loss = f"{s.loss:.4g}" if s.loss is not None else "-"
    spend = f"${s.spend_usd:.2f}" if s.spend_usd is not None else "-"
    skew = s.step_skew if s.step_skew is not None else "-"
    return (f"{s.name}: {s.nodes_online}/{len(s.ranks)} nodes, {s.gpus} GPUs, pace {pace_text(s.pace)}, "
            f"skew {skew} steps, loss {loss}, eta {eta}, spend {spend}")


def _launch(args: argparse.Namespace) -> int:
    loaded = _load_to_change(args, "launch")
    if loaded is None:
        return EXIT_USAGE
    config, job = loaded

    async def action(fleet: Any) -> int:
        from sessions.jobs import actions

        for rank, result in enumerate(await actions.launch(job, config, fleet.borrow)):
            print(f"rank {rank}: launched {result.name!r} on {result.pod} (log {result.log_path})")
        return 0

    return run_async(lambda: _on_fleet(config, list(job.pods), action))


def _resume(args: argparse.Namespace) -> int:
    loaded = _load_to_change(args, "resume")
    if loaded is None:
        return EXIT_USAGE
    config, job = loaded

    async def action(fleet: Any) -> int:
        from sessions.jobs import actions

        chosen, launched = await actions.resume(job, config, fleet.borrow, restart=args.restart)
        print(f"job {job.name!r} resumed from {chosen.path} (newest complete on rank 0)")
        for rank, result in enumerate(launched):
            print(f"rank {rank}: relaunched {result.name!r} on {result.pod} (log {result.log_path})")
        return 0

    return run_async(lambda: _on_fleet(config, list(job.pods), action))


def _kill(args: argparse.Namespace) -> int:
    loaded = _load_to_change(args, "kill")
    if loaded is None:
        return EXIT_USAGE
    config, job = loaded
    answer = _confirm(args, f"Kill {job.session!r} on every node of job {job.name!r} ({', '.join(job.pods)})?")
    if not answer:
        return EXIT_USAGE if answer is None else EXIT_FAILED

    async def action(fleet: Any) -> int:
        from sessions.jobs import actions

        for pod, result in await actions.kill(job, fleet.borrow):
            print(f"{'killed' if result.existed else 'nothing to kill:'} {job.session!r} on {pod}")
        return 0

    return run_async(lambda: _on_fleet(config, list(job.pods), action))


def _teardown(args: argparse.Namespace) -> int:
    loaded = _load_to_change(args, "teardown")
    if loaded is None:
        return EXIT_USAGE
    config, job = loaded
    missing = [p for p in job.pods if config.pod(p).provider is None]
    if missing:
        complain(f"job {job.name!r}: {', '.join(missing)} has no provider: entry to tear down through")
        return EXIT_USAGE
    answer = _confirm(args, f"Tear down every node of job {job.name!r} ({', '.join(job.pods)})?")
    if not answer:
        return EXIT_USAGE if answer is None else EXIT_FAILED

    async def action(fleet: Any) -> int:
        from sessions.jobs import actions

        async def check(pod: str) -> tuple[bool, str]:
            return (True, "not checked (--force)") if args.force else await fleet.teardown_check(pod)

        async def terminate(pod: str) -> Any:
            return await fleet.teardown_instance(pod, force=True)

        await actions.teardown(job, check, terminate)
        print(f"job {job.name!r} torn down: {', '.join(job.pods)}")
        return 0

    return run_async(lambda: _on_fleet(config, list(job.pods), action))


def _logs(args: argparse.Namespace) -> int:
    """Every rank's session log, line by line with its rank in front: the merged view a
    multi-node run needs to see which rank said what (or `--rank R` alone)."""
    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    config, job = loaded
    if job.session is None:
        complain(f"job {job.name!r} names no session: nothing to read")
        return EXIT_USAGE
    ranks = list(enumerate(job.pods))
    if args.rank is not None:
        if not 0 <= args.rank < len(ranks):
            complain(f"job {job.name!r} has ranks 0..{len(ranks) - 1}")
            return EXIT_USAGE
        ranks = [ranks[args.rank]]
    from sessions.tmux.logs import log_path_for
    from tui.terminal_text import LogBytes, visible

    out = sys.stdout.buffer
    cleaners = {rank: LogBytes() for rank, _ in ranks} if sys.stdout.isatty() else None

    def emit(rank: int, line: bytes) -> None:
        body = cleaners[rank].feed(line + b"\n") + cleaners[rank].flush() if cleaners else line + b"\n"
        out.write(b"[rank %d] " % rank + body)
        out.flush()

    async def action(fleet: Any) -> int:
        import asyncio

        async def one(rank: int, pod: str) -> None:
            path = log_path_for(config.pod(pod).session(job.session))
            rest = b""

            def notice(message: str) -> None:
                print(f"gpuctl: rank {rank} ({pod}): {visible(message)}", file=sys.stderr, flush=True)

            async for chunk in fleet.logs(pod, path, lines=args.lines, follow=args.follow, on_notice=notice):
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    emit(rank, line)
            if rest:
                emit(rank, rest)

        if args.follow:
            await asyncio.gather(*(one(rank, pod) for rank, pod in ranks))
        else:
            for rank, pod in ranks:  # a snapshot: rank by rank, in order
                await one(rank, pod)
        return 0

    return run_async(lambda: _on_fleet(config, [pod for _, pod in ranks], action))
