"""Training sessions as text: the `gpuctl sessions` table and the `gpuctl progress` report."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the TUI's first frame should not pay for the parser
    from sessions.progress.tracker import Progress

from sessions.snapshot import SessionSnapshot, SessionState
from tui import humanize
from tui.terminal_text import plain_table

COLUMNS = ("SESSION", "STATE", "STEP", "RATE", "LOSS", "ETA", "LOG")


def step_text(progress: Progress | None) -> str:
    if progress is None or progress.step is None:
        return "-"
    return f"{progress.step}/{progress.total}" if progress.total else str(progress.step)


def rate_text(progress: Progress | None) -> str:
    """Steps per second, or seconds per step when slower than one a second."""
    return "-" if progress is None or not progress.rate else per_step_text(progress.rate)


def per_step_text(rate: float) -> str:
    """A rate above 0 as the RATE column words it: `2.31 it/s`, or `4.00 s/it` under one
    a second (a session's rate here, a job's pace in `tui.job_rows`)."""
    return f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"


def state_text(session: SessionSnapshot) -> str:
    if session.state == SessionState.EXITED:
        return f"exited {session.exit_status}" if session.exit_status is not None else "exited"
    if session.stalled:
        return "stalled"
    if session.state == SessionState.RUNNING and not session.configured:
        return "running (adopted)"
    return session.state


def session_rows(sessions: tuple[SessionSnapshot, ...]) -> list[list[str]]:
    rows = []
    for s in sessions:
        p = s.progress
        loss = f"{p.loss:.4g}" if p and p.loss is not None else "-"
        eta = humanize.duration(p.eta_s) if p and p.eta_s is not None else "-"
        rows.append([s.name, state_text(s), step_text(p), rate_text(p), loss, eta, s.log or "-"])
    return rows


def render_sessions_plain(sessions: tuple[SessionSnapshot, ...]) -> str:
    return plain_table([list(COLUMNS), *session_rows(sessions)])


def render_progress(progress: Progress, source: str) -> str:
    """What `gpuctl progress FILE` prints for a person, with a hint when empty."""
    if progress.format is None:
        return (
            f"gpuctl recognised no training progress in {source}.\n"
            "It reads tqdm / Hugging Face Trainer / Lightning (tqdm and Rich) / Keras bars, "
            "DeepSpeed, nanoGPT, Megatron and `step N | loss X` lines, and JSON lines.\n"
            "For another format, give the session a `progress:` regex in config with named "
            "groups step, total, loss, rate.\n"
        )
    unit = {"it/s": "printed as it/s", "s/it": "printed as s/it", "derived": "derived from steps over time"}
    rows = [
        ("format", progress.format),
        ("step", step_text(progress)),
        ("rate", f"{progress.rate:.4g} steps/s ({unit.get(progress.rate_unit or '', '?')})" if progress.rate else "-"),
        ("loss", f"{progress.loss:.6g}" if progress.loss is not None else "-"),
        ("lr", f"{progress.lr:.3g}" if progress.lr is not None else "-"),
        ("tokens/s", f"{progress.tokens_per_s:,.0f}" if progress.tokens_per_s is not None else "-"),
        ("epoch", f"{progress.epoch:.3g}" if progress.epoch is not None else "-"),
        ("eta", humanize.duration(progress.eta_s) if progress.eta_s is not None else "-"),
    ]
    from sessions.progress.explain import missing

    why = missing(progress)
    field = {"step": "step", "total": "step", "rate": "rate", "loss": "loss", "eta_s": "eta"}
    out = []
    for k, v in rows:
        out.append(f"{k:<9} {v}\n")
        for f, reason in why.items():
            if field[f] == k:  # wrapped to 80 columns under its figure
                text = f"{'total: ' if f == 'total' else ''}{reason}"
                out += [line + "\n" for line in textwrap.wrap(text, 80, initial_indent=" " * 12,
                                                                subsequent_indent=" " * 12)]
    if progress.ranks:
        out.append(f"ranks     {len(progress.ranks)}, slowest rank {progress.slowest_rank} (its reading above)\n")
        for rank, p in progress.ranks:
            loss = f"{p.loss:.4g}" if p.loss is not None else "-"
            out.append(f"  rank {rank:<4} step {step_text(p):<12} rate {rate_text(p):<12} loss {loss}\n")
    return "".join(out)
