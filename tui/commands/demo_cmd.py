"""`gpuctl demo [--pods N] [--headless] [--json] [--preempt-after SECONDS]`.

The whole product on one machine: simulated pods (`backends.demo`) reached over real
SSH on loopback, each training in real tmux, followed by the very Fleet `gpuctl status`
and the TUI use. Sessions are launched with gpuctl's own `Fleet.launch`, so what a
newcomer sees is what a real pod shows.

Isolation: the pods live in a private temp dir, and before gpuctl resolves any path
this process points HOME, the XDG dirs and `GPUCTL_CONFIG` into it (`Demo.client_env`),
then pins the pods' host keys in the known_hosts gpuctl reads there. The user's own
config, `~/.ssh` and known_hosts are never read or written.

Ctrl-C (or SIGTERM/SIGHUP) stops everything: the pods' tmux servers, the SSH servers
and every process they started, and the temp dir goes. Exit status 0 after a clean
stop, 1 when tmux is missing or something could not be cleaned up, 2 for bad options.
Headless mode never imports textual.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import sys
import threading
from typing import Any, AsyncIterator, Callable, TextIO

from tui.commands.common import EXIT_USAGE

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", reads_config=False, help="try gpuctl on simulated pods on this machine (no cloud account)")
    demo.add_argument("--pods", type=int, default=3, metavar="N",
                      help="how many simulated pods (default 3: 4xA100, 8xH100, one RTX 4090 spot pod)")
    demo.add_argument("--headless", action="store_true",
                      help="print the status table every few seconds instead of opening the TUI")
    demo.add_argument("--json", action="store_true",
                      help="headless, one `gpuctl status --json` document per line")
    demo.add_argument("--watch", action="store_true",
                      help="headless `gpuctl watch` over the demo pods: one event per line (--json: JSON)")
    demo.add_argument("--preempt-after", type=float, default=180.0, metavar="SECONDS",
                      help="preempt the spot pod after this long, and again every time (default 180; 0: never)")
    # 90 s: longer than gpuctl's 60 s provider poll, so the pod is seen as `preempted`.
    demo.add_argument("--outage", type=float, default=90.0, metavar="SECONDS",
                      help="how long a preempted spot pod stays away (default 90)")
    demo.add_argument("--interval", type=float, default=3.0, metavar="S",
                      help="seconds between prints in headless mode (default 3)")
    demo.add_argument("--fault", metavar="KIND",
                      help="show a failing GPU on the first pod (ecc, xid, pcie, remap, slowdown or zombie), or a "
                           "run that hangs (hang): see it in the TUI, `gpuctl doctor` and `watch`")
    # For tests and impatient demos: faster training, smaller checkpoints.
    demo.add_argument("--pace", type=float, default=1.0, help=argparse.SUPPRESS)
    demo.add_argument("--checkpoint-mb", type=float, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(handler=_demo)


class _Notices:
    """Sentences from the pods' thread, printed by the front end when it can."""

    def __init__(self) -> None:
        self._queue: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            self._queue.append(message)

    def drain(self) -> list[str]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items


def _err(message: str) -> None:
    try:
        print(f"gpuctl demo: {message}", file=sys.stderr, flush=True)
    except OSError:  # the terminal went away (SIGHUP): the cleanup must go on regardless
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    from sessions.demo import FAULTS, MAX_PODS, Demo, DemoError, DemoThread, require_tmux

    try:
        require_tmux()
    except DemoError as exc:
        _err(str(exc))
        return EXIT_FAILED
    if not 1 <= args.pods <= MAX_PODS:
        _err(f"--pods must be between 1 and {MAX_PODS}")
        return EXIT_USAGE
    if args.fault is not None and args.fault not in FAULTS:
        _err(f"--fault must be one of {', '.join(FAULTS)}, not {args.fault!r}")
        return EXIT_USAGE
    if args.config:
        _err("--config is ignored: the demo writes a config of its own for its pods")
    notices = _Notices()
    demo = Demo(pods=args.pods, preempt_after=args.preempt_after or None, outage=args.outage, pace=args.pace,
                checkpoint_mb=args.checkpoint_mb, notify=notices, fault=args.fault)
    runner = DemoThread(demo)
    saved_env = dict(os.environ)
    handlers = _install_signal_handlers()
    code = 0
    try:
        runner.start()
        code = _run(demo, args, notices)
    except KeyboardInterrupt:
        code = 0
    except DemoError as exc:
        _err(str(exc))
        code = EXIT_FAILED
    except BrokenPipeError:  # `gpuctl demo --headless | head`
        code = 0
    finally:
        if handlers:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        problems = runner.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        _restore_signal_handlers(handlers)
        if problems:
            _err("could not clean up everything: " + "; ".join(problems))
            code = code or EXIT_FAILED
        elif demo.root is not None:
            _err(f"stopped the pods and removed {' and '.join(str(p) for p in demo.temp_dirs)}")
    return code


def _install_signal_handlers() -> dict[int, Any]:
    saved: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return saved
    for sig in (signal.SIGTERM, signal.SIGHUP):
        saved[sig] = signal.signal(sig, _raise_interrupt)
    saved[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    return saved


def _restore_signal_handlers(saved: dict[int, Any]) -> None:
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _run(demo: Any, args: argparse.Namespace, notices: _Notices) -> int:
    """With the pods up: point gpuctl at them, launch the sessions, show them."""
    from sessions.config.loader import load_config
    from sessions.config.paths import gpuctl_known_hosts_path

    os.environ.update(demo.client_env)
    demo.install_known_hosts(gpuctl_known_hosts_path())
    config = load_config(demo.config_path)
    if args.watch:
        return _watch(demo, config, args, notices)
    run_app, why_not = (None, "") if args.headless or args.json else _find_tui()
    _intro(demo, args, tui=run_app is not None)
    if run_app is not None:
        # The TUI shows what happens to the pods itself; text on its terminal would garble it.
        asyncio.run(launch_sessions(config, notices))
        result = run_app(config, help_note=f"Headless commands against this demo, from another terminal: "
                                           f"{_shortest_wrapper(demo)} status (or sessions, logs, checkpoints…)")
        return result if isinstance(result, int) else 0
    if why_not:
        _err(f"{why_not}; showing the headless view instead (--headless)")
    return asyncio.run(_headless(config, args, notices))


def _find_tui() -> tuple[Callable[..., Any] | None, str]:
    """`(tui.app.run_app, "")`, or `(None, why not)`. Imports textual, so only here."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None, "not a terminal, so no full-screen TUI"
    try:
        from tui.app import run_app  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"the full-screen TUI cannot start ({exc})"
    return run_app, ""


def _shortest_wrapper(demo: Any) -> str:
    """The stable `~/.cache/gpuctl/gpuctl-demo` when it was written, else the demo's own."""
    return demo.stable_wrapper_shown if demo.stable_wrapper.exists() else str(demo.gpuctl_wrapper)


def _intro(demo: Any, args: argparse.Namespace, *, tui: bool) -> None:
    pods = ", ".join(f"{p.name} ({p.spec.gpu_count}x {p.spec.runpod_gpu.replace('NVIDIA ', '')})"
                     for p in demo.pods.values())
    _err(f"{len(demo.pods)} simulated pods on this machine: {pods}")
    _err(f"their files, keys and gpuctl config are in {demo.root} (removed on exit)")
    spot = [p.name for p in demo.pods.values() if p.spec.spot]
    if spot and args.preempt_after:
        _err(f"{spot[0]} is a spot pod: preempted after {args.preempt_after:g}s, back {args.outage:g}s later")
    _err(f"from another terminal: {_shortest_wrapper(demo)} sessions {next(iter(demo.pods))}   "
         "(or status, logs, attach, kill...)")
    _err("quitting the TUI stops everything" if tui else "Ctrl-C stops everything")


def _watch(demo: Any, config: Any, args: argparse.Namespace, notices: _Notices) -> int:
    """`gpuctl watch` over the demo pods, its state and downloads in the demo's temp dir."""
    from tui.headless_watch import run_watch

    _intro(demo, args, tui=False)
    asyncio.run(launch_sessions(config, notices))
    return asyncio.run(run_watch(config, state_path=demo.root / "watch-state.json", as_json=args.json,
                                 pod_names=None, start_dir=demo.root))


async def launch_sessions(config: Any, notify: Callable[[str], None]) -> None:
    """Start every configured session with gpuctl's own launch (tmux over SSH)."""
    from sessions.fleet.facade import Fleet

    fleet = Fleet(config)  # not started: only its actions are used
    jobs = [(pod.name, session.name) for pod in config.pods for session in pod.sessions if session.command]
    results = await asyncio.gather(*(fleet.launch(p, s) for p, s in jobs), return_exceptions=True)
    for (pod, session), result in zip(jobs, results):
        if isinstance(result, BaseException):
            notify(f"{pod}: could not launch {session}: {getattr(result, 'message', None) or result}")


@contextlib.asynccontextmanager
async def running_fleet(config: Any, pod_names: list[str] | None = None) -> AsyncIterator[Any]:
    """`async with Fleet(...)`, with a stop that cannot hang on a lost cancellation.

    On Python < 3.12, `asyncio.wait_for` can swallow a cancellation that lands just as
    the read it waits on completes (CPython gh-86296). A pod monitor waiting on its
    agent that way keeps running, and `Fleet.stop()` would wait for it forever: the
    demo's Ctrl-C would then never reach its cleanup. So the stop is asked again
    until it is done.
    """
    from sessions.fleet.facade import Fleet

    fleet = Fleet(config, pod_names)
    fleet.start()
    try:
        yield fleet
    finally:
        await stop_fleet(fleet)


async def stop_fleet(fleet: Any, patience: float = 0.5) -> None:
    """Stop the Fleet (which re-cancels its monitors until they have ended)."""
    await fleet.stop(patience=patience)


async def _headless(config: Any, args: argparse.Namespace, notices: _Notices, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    await launch_sessions(config, notices)
    async with running_fleet(config) as fleet:
        await fleet.wait_settled(timeout=30)
        try:
            if out.isatty() and not args.json:
                await _live(fleet, args.interval, out, notices)
            while True:
                for message in notices.drain():
                    _err(message)
                _print(fleet.snapshot(), as_json=args.json, out=out)
                await asyncio.sleep(args.interval)
        except BrokenPipeError:
            raise
        except OSError:  # EIO: the terminal closed under us (SIGHUP follows); just stop
            return 0


def _print(snapshot: Any, *, as_json: bool, out: TextIO) -> None:
    from tui.headless_status import print_snapshot

    print_snapshot(snapshot, as_json=as_json, out=out)
    if not as_json:
        out.write(render_sessions_plain(snapshot) + "\n")
        out.flush()


def session_rows(snapshot: Any) -> list[list[str]]:
    """One row per session of every pod: pod, then `gpuctl sessions`' columns."""
    from tui.sessions_table import session_rows as rows

    found = []
    for pod in snapshot.pods:
        for row in rows(pod.sessions):
            found.append([pod.name, *row[:-1]])
    return found


SESSION_COLUMNS = ("POD", "SESSION", "STATE", "STEP", "RATE", "LOSS", "ETA")


def render_sessions_plain(snapshot: Any) -> str:
    table = [list(SESSION_COLUMNS), *session_rows(snapshot)]
    widths = [max(len(r[i]) for r in table) for i in range(len(SESSION_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table) + "\n"


async def _live(fleet: Any, interval: float, out: TextIO, notices: _Notices) -> None:
    """Redraw in place on a terminal (rich Live), notices printed above the table."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    from tui.status_table import rich_renderable

    def view() -> Group:
        snapshot = fleet.snapshot()
        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        for column in SESSION_COLUMNS:
            table.add_column(column, no_wrap=True)
        for row in session_rows(snapshot):
            table.add_row(*row)
        hint = Text("gpuctl demo · Ctrl-C stops everything", style="dim")
        return Group(rich_renderable(snapshot), Text(""), table, Text(""), hint)

    with Live(view(), console=Console(file=out), auto_refresh=False) as live:
        while True:
            for message in notices.drain():
                live.console.print(Text(message, style="yellow"))
            live.update(view(), refresh=True)
            await asyncio.sleep(interval)
