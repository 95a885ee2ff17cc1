"""`gpuctl doctor POD [--json]`: is a GPU of this pod quietly broken, and what to do.

Reads the pod's GPU health in one exec (`sessions.health.doctor`) and prints one row
per GPU and check: pass/warn/fail, a plain reason, and for what did not pass the next
step. Exit status: 0 nothing failed (warnings allowed); 1 a check failed, or the pod
could not be reached or read; 2 the command line or config is wrong.

stdout carries the table (or with `--json` the document of
`sessions.health.doctor.DoctorResult.to_json`); diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, complain, load_pod_or_explain, run_async

EXIT_FAILED = 1
COLUMNS = ("GPU", "CHECK", "STATUS", "REASON")


def register(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="GPU health of a pod: Xid errors, ECC, remapped rows, clocks, PCIe, "
                                           "zombie VRAM (pass/warn/fail, with the next step)")
    doctor.add_argument("pod", metavar="POD")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of a table")
    doctor.add_argument("--session", metavar="NAME",
                        help="also say why this session's step may have stopped: hung, idle or dead, with the "
                             "evidence (its processes, the GPUs, a py-spy dump when py-spy is on the pod)")
    doctor.add_argument("--burn", type=float, metavar="SECONDS",
                        help="also measure each GPU for SECONDS with the pod's torch (BF16 matmul TFLOPS, memory "
                             "GB/s) against its published figures: under 70%% is a warning")
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    if args.burn is not None and not args.burn > 0:
        complain(f"--burn must be a number of seconds above 0, not {args.burn:g}")
        return EXIT_USAGE
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    return run_async(lambda: _doctor_async(config, pod, args))


async def _doctor_async(config: Any, pod: Any, args: argparse.Namespace) -> int:
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet
    from sessions.health.doctor import HealthUnreadable, run_burn, run_doctor, with_checks

    try:
        async with Fleet.for_command(config, [pod.name]) as fleet:
            pid = None
            if args.session is not None:
                state = await fleet.session_state(pod.name, args.session)
                if not state.exists:
                    complain(f"pod {pod.name!r} has no tmux session {args.session!r}")
                    return EXIT_USAGE
                pid = state.pid if state.running else None
                if pid is None:
                    complain(f"session {args.session!r} is not running: its command exited"
                             + (f" with status {state.exit_status}" if state.exit_status is not None else ""))
                    return EXIT_FAILED
            async with fleet.borrow(pod.name) as transport:
                result = await run_doctor(transport, stall_pid=pid)
                if args.burn is not None:
                    result = with_checks(result, await run_burn(transport, args.burn, len(result.report.gpus)))
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    except HealthUnreadable as exc:
        complain(f"pod {pod.name!r}: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result.to_json(pod.name)))
    else:
        sys.stdout.write(render_plain(result, pod.name))
        if result.stall is not None:
            sys.stdout.write(render_stall(result.stall, args.session))
    return EXIT_FAILED if result.status == "fail" else 0


def render_stall(stall: Any, session: str) -> str:
    """'session 'train': hung' and the evidence, then the py-spy dump (or why there is none)."""
    from tui.terminal_text import visible

    lines = ["", f"session {session!r}: {stall.kind or 'no stall kind fits'}"]
    lines += [f"  {visible(line)}" for line in stall.evidence]
    if stall.py_spy:
        lines += ["", *(visible(line) for line in stall.py_spy.splitlines())]
    if stall.ncclras:
        lines += ["", "--- ncclras", *(visible(line) for line in stall.ncclras.splitlines())]
    return "\n".join(lines) + "\n"


def render_plain(result: Any, pod_name: str) -> str:
    """The table, the next steps of what did not pass, and a one-line verdict."""
    from tui.terminal_text import plain_table, visible

    rows = [list(COLUMNS)]
    for check in result.checks:
        rows.append(["pod" if check.gpu is None else str(check.gpu), check.check, check.status, check.reason])
    steps = [f"  {'pod' if c.gpu is None else 'GPU ' + str(c.gpu)} {c.check}: {visible(c.next_step)}"
             for c in result.checks if c.status != "pass" and c.next_step]
    lines = ["", "next steps:", *steps] if steps else []
    failed = sum(c.status == "fail" for c in result.checks)
    warned = sum(c.status == "warn" for c in result.checks)
    gpus = len(result.report.gpus)
    verdict = f"pod {pod_name!r}: {gpus} GPU{'s' if gpus != 1 else ''} read through {result.report.source or '?'}; "
    verdict += f"{failed} failed, {warned} warnings" if failed or warned else "healthy"
    return plain_table(rows) + "\n".join(lines + ["", verdict]) + "\n"
