"""What the fleet screen shows for each pod, as plain text and a tone: pure functions.

The table widget only turns a tone into a theme style (`-hot`, `-offline`...), so
everything a person reads here is testable without Textual. Columns carry a priority:
on a narrow terminal the least important ones drop first (`visible_columns`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sessions.snapshot import FleetSnapshot, PodSnapshot, PodState, SessionSnapshot, SessionState
from tui import humanize
from tui.sessions_table import rate_text, step_text
from tui.status_table import age_text, billed_price, price_text, short_gpu_name, summary, temp_tone

Span = tuple[str, str]
"""(text, tone); tone is "" or one of TONES."""
Cell = tuple[Span, ...]
"""A cell is one or more spans: the GPUS cell colours its temperature alone."""

TONES = ("online", "connecting", "reconnecting", "offline", "preempted", "stopped", "terminated", "stale", "hot",
         "warm", "stalled", "exited", "failed", "muted")
"""`stale`: a last-known value of a pod that is not online (dimmed, never in live colours)."""


@dataclass(frozen=True)
class Column:
    """One fleet table column."""

    key: str
    label: str
    width: int
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("pod", "POD", 12),
    Column("state", "STATE", 12),
    Column("gpus", "GPUS    TEMP UTIL", 17),
    Column("mem", "MEM", 9, True),
    Column("session", "SESSION", 12),
    Column("step", "STEP", 10, True),
    Column("rate", "RATE", 10, True),
    Column("loss", "LOSS", 7, True),
    Column("eta", "ETA", 7, True),
    Column("price", "$/H", 5, True),
    Column("spent", "SPENT", 8, True),
)
DROP_ORDER = ("spent", "mem", "rate", "price", "loss", "eta", "step", "session", "gpus")
"""Which columns give way first when the terminal is narrow."""
CELL_PADDING = 1
"""Blank cells on each side of a cell (the fleet table draws them)."""
SCROLLBAR = 1
"""Room kept for the table's vertical scrollbar (one cell wide in gpuctl.tcss)."""


def visible_columns(width: int, pod_width: int = 12) -> list[Column]:
    """The columns that fit `width` cells, dropping the least important first."""
    cols = [Column(c.key, c.label, pod_width) if c.key == "pod" else c for c in COLUMNS]
    for key in DROP_ORDER:
        if sum(c.width + 2 * CELL_PADDING for c in cols) <= width - SCROLLBAR:
            break
        cols = [c for c in cols if c.key != key]
    return cols


# -------------------------------------------------------------------------- pod cells


def main_session(pod: PodSnapshot) -> SessionSnapshot | None:
    """The session the fleet row shows and actions target: a running one first
    (configured before adopted; on a pod not online, one last seen running), then the
    first configured one."""
    running = [s for s in pod.sessions if (s.last_state if s.stale else s.state) == SessionState.RUNNING]
    if running:
        return next((s for s in running if s.configured), running[0])
    return pod.sessions[0] if pod.sessions else None


def gpu_model(pod: PodSnapshot) -> str:
    """'2×A100', '8×H100', 'A100+H100', 'no GPU' or '-'."""
    if not pod.gpus:
        return {"none": "no GPU", "error": "GPU error"}.get(pod.gpu_status or "", "-")
    names = [_model(g.name) for g in pod.gpus]
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return f"{len(names)}×{unique[0]}"
    return "+".join(unique)


def _model(name: str | None) -> str:
    """The model as people say it: 'NVIDIA A100-SXM4-80GB' -> 'A100', 'NVIDIA H100 80GB
    HBM3' -> 'H100', 'NVIDIA GeForce RTX 4090' -> '4090', 'Tesla V100-SXM2' -> 'V100'."""
    short = short_gpu_name(name).split("-")[0]
    return next((word for word in short.split() if any(ch.isdigit() for ch in word)), short)


def hottest(pod: PodSnapshot) -> float | None:
    temps = [g.temp_c for g in pod.gpus if g.temp_c is not None]
    return max(temps) if temps else None


def mean_util(pod: PodSnapshot) -> float | None:
    utils = [g.util_pct for g in pod.gpus if g.util_pct is not None]
    return sum(utils) / len(utils) if utils else None


def memory(pod: PodSnapshot) -> str:
    used = [g.mem_used_mib for g in pod.gpus if g.mem_used_mib is not None]
    total = [g.mem_total_mib for g in pod.gpus if g.mem_total_mib is not None]
    if not used or not total:
        return "-"
    return f"{sum(used) / 1024:.0f}/{sum(total) / 1024:.0f}G"


def spent(pod: PodSnapshot) -> float | None:
    """Dollars so far, as the Fleet works it out (price x the provider's running time,
    else the pod's uptime); None without a price."""
    return pod.spend_usd


def session_span(session: SessionSnapshot | None, width: int = 12) -> Span:
    """The main session's name, with its state when it is not simply running; a long
    name is shortened so the state still shows."""
    if session is None:
        return ("-", "muted")
    suffix, tone = "", ""
    if session.stale:  # the pod is not online: as last seen, never "running" in live colours
        tone = "stale"
    elif session.state == SessionState.EXITED:
        status = session.exit_status
        suffix, tone = f" exit {status if status is not None else '?'}", "exited" if status == 0 else "failed"
    elif session.state == SessionState.ABSENT:
        suffix, tone = " off", "muted"
    elif session.stalled:
        suffix, tone = " stalled", "stalled"
    name = session.name
    if len(name) + len(suffix) > width:
        name = name[: max(1, width - len(suffix) - 1)] + "…"
    return (name + suffix, tone)


HEALTH_GLYPH = "✗"
"""Marks a pod with a GPU failing a doctor check (`sessions.health`); the pod screen says why."""


def gpus_cell(pod: PodSnapshot, hot_c: float | None = None) -> Cell:
    """'2×A100    52°  96%': model (with a ✗, all in the failed tone, when a GPU fails a
    health check: the pod screen says which and why), hottest
    temperature (toned against `hot_c`, the pod's alert threshold; None: the default),
    mean utilization."""
    if not pod.gpus:
        return ((gpu_model(pod), "muted"),)
    temp, util = hottest(pod), mean_util(pod)
    model = gpu_model(pod)
    model = model if len(model) <= 7 else model[:6] + "…"
    failing = any(check.status == "fail" and check.gpu is not None for check in pod.health_checks)
    return ((f"{model:<7}{HEALTH_GLYPH if failing else ' '}", "failed" if failing else ""),
            (f"{humanize.number(temp, '°'):>4}", temp_tone(temp, hot_c)), (f"{humanize.number(util, '%'):>5}", ""))


def compact_count(n: int) -> str:
    """12345 -> '12.3k', 100000 -> '100k', 2500000 -> '2.5M': steps fit a narrow column."""
    for unit, size, start in (("M", 1_000_000, 1_000_000), ("k", 1000, 10_000)):
        if n >= start:
            value = n / size
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def step_span(progress) -> str:
    if progress is None or progress.step is None:
        return "-"
    text = step_text(progress)
    if len(text) <= 10:
        return text
    total = f"/{compact_count(progress.total)}" if progress.total else ""
    return compact_count(progress.step) + total


PAUSED_MARK = " ⏸"
"""After the state of a pod whose policies `w` paused: a lasting mark, since the toast
that said so is gone in seconds (the detail line and pod header say it in words)."""
PAUSED_WORDS = "policies paused (w)"


STALE_COLUMNS = ("gpus", "mem", "session", "step", "rate", "loss")
"""The columns a pod's samples fill: dimmed as last known when it is not online."""


def pod_cells(pod: PodSnapshot, paused: bool = False, hot_c: float | None = None,
              now: float | None = None) -> dict[str, Cell]:
    """Every column's (text, tone) for one pod; `paused`: its policies' actions are off;
    `hot_c`: the pod's GPU temperature alert threshold (`status_table.pod_alerts`).
    A pod that is not online shows its values as last known: dimmed, and the ETA
    column says how old they are instead (an ETA of a run nobody sees is a guess)."""
    if pod.stale:
        cells = _live_cells(pod, paused, hot_c)
        for key in STALE_COLUMNS:
            cells[key] = tuple((text, "stale") for text, _ in cells[key])
        cells["eta"] = ((age_text(pod, now) or "-", "stale"),)
        return cells
    return _live_cells(pod, paused, hot_c)


def _live_cells(pod: PodSnapshot, paused: bool, hot_c: float | None) -> dict[str, Cell]:
    session = main_session(pod)
    progress = session.progress if session else None
    live = progress if session is not None and session.state == SessionState.RUNNING else None
    cost = spent(pod)
    loss = f"{progress.loss:.4g}" if progress and progress.loss is not None else "-"
    eta = humanize.duration(live.eta_s) if live and live.eta_s is not None else "-"
    return {
        "pod": ((pod.name, ""),),
        "state": ((pod.state, pod.state if pod.state in TONES else ""),) + (((PAUSED_MARK, "muted"),) if paused else ()),
        "gpus": gpus_cell(pod, hot_c),
        "mem": ((memory(pod), ""),),
        "session": (session_span(session),),  # width: COLUMNS' session width
        "step": ((step_span(progress), ""),),
        "rate": ((rate_text(live), ""),),
        "loss": ((loss, "failed" if loss in ("nan", "inf") else ""),),
        "eta": ((eta, ""),),
        "price": ((price_text(pod), ""),),
        "spent": ((f"${cost:,.2f}" if cost is not None else "-", ""),),
    }


def detail_line(pod: PodSnapshot, paused: bool = False) -> Span:
    """The line under the table for the highlighted pod: why it is not online, or
    where it is (and that its policies are paused)."""
    if pod.error and pod.state != PodState.ONLINE:
        age = age_text(pod)
        since = f" · values shown are from {age}" if age else ""
        return (f"{pod.name}: {pod.error}{since}", "reconnecting" if pod.state == PodState.RECONNECTING else "failed")
    if pod.gpu_status == "error" and pod.gpu_error:
        return (f"{pod.name}: GPU: {pod.gpu_error}", "failed")
    parts = [pod.name, pod.host]
    if pod.spend_since is not None and pod.spend_from == "provider":
        # the instance's run time, from the clock its spend counts on (sessions/providers/spend.py)
        parts.append(f"up {humanize.duration(max(0.0, time.time() - pod.spend_since))}")
    elif pod.uptime_s is not None:  # the machine's: in a container, the host's boot
        parts.append(f"host up {humanize.duration(pod.uptime_s)}")
    if pod.disk and pod.disk.used_pct is not None:
        parts.append(f"disk {pod.disk.used_pct:.0f}%")
    if paused:
        parts.append(PAUSED_WORDS)
    return (" · ".join(parts), "")


# ------------------------------------------------------------------ filter and sort


def matches(pod: PodSnapshot, needle: str) -> bool:
    """Case-insensitive substring over name, host, state, GPU model and sessions."""
    if not needle:
        return True
    hay = " ".join([pod.name, pod.host, pod.state, gpu_model(pod), *(s.name for s in pod.sessions)])
    return needle.lower() in hay.lower()


_STATE_ORDER = {PodState.PREEMPTED: 0, PodState.OFFLINE: 1, PodState.RECONNECTING: 2, PodState.CONNECTING: 3,
                PodState.STOPPED: 4, PodState.TERMINATED: 5, PodState.ONLINE: 6}


def _eta(pod: PodSnapshot) -> float | None:
    s = main_session(pod)
    return s.progress.eta_s if s and s.progress else None


SORTS: dict[str, tuple[str, Callable[[PodSnapshot], object], bool]] = {
    # key: (label, value, descending). None values always sort last.
    "config": ("config order", lambda p: None, False),
    "name": ("name", lambda p: p.name.lower(), False),
    "state": ("state (trouble first)", lambda p: _STATE_ORDER.get(p.state, 9), False),
    "temp": ("hottest GPU", hottest, True),
    "util": ("utilization", mean_util, True),
    "eta": ("ETA", _eta, False),
    "price": ("$/h", billed_price, True),
}
SORT_ORDER = tuple(SORTS)
SAMPLED_SORTS = frozenset({"temp", "util", "eta"})
"""Sorts by a sampled value, where a stale pod's last known one sorts after live ones."""

T = TypeVar("T")


def ordered(pods: Sequence[PodSnapshot], sort: str, reverse: bool = False) -> list[PodSnapshot]:
    """Pods in display order: stable; whatever the direction, a stale pod's values (it
    is not online: last known) come after live ones, and unknown values last."""
    return ordered_rows(pods, sort, reverse, SORTS[sort][1], lambda p: p.stale)


def ordered_rows(rows: Sequence[T], sort: str, reverse: bool, value: Callable[[T], object],
                 stale: Callable[[T], bool]) -> list[T]:
    """`ordered` for any rows given their `value` for `sort` and whether they are
    `stale`: the fleet table sorts a job's row among the pods' by the job's own value
    (`tui.job_rows.sort_value`) with this one rule."""
    if sort == "config":
        return list(reversed(rows)) if reverse else list(rows)
    descending = SORTS[sort][2]
    sampled = sort in SAMPLED_SORTS
    known = [(value(r), i, r) for i, r in enumerate(rows)]
    live = [k for k in known if k[0] is not None and not (sampled and stale(k[2]))]
    old = [k for k in known if k[0] is not None and sampled and stale(k[2])]
    missing = [k[2] for k in known if k[0] is None]
    for group in (live, old):
        group.sort(key=lambda k: k[1])
        group.sort(key=lambda k: k[0], reverse=descending != reverse)  # type: ignore[arg-type, return-value]
    return [k[2] for k in live] + [k[2] for k in old] + missing


def header_text(fleet: FleetSnapshot, *, sort: str, reverse: bool, filter_text: str, shown: int) -> str:
    """'2/3 pods online · 10 GPUs · $4.87/h · $31.20 spent   sorted by ETA · filter …':
    `gpuctl status`'s summary line, then how the view is sorted and filtered."""
    text = summary(fleet) if fleet.pods else "no pods in config"
    view = []
    if sort != "config" or reverse:
        view.append(f"sorted by {SORTS[sort][0]}{' (reversed)' if reverse else ''}")
    if filter_text:
        view.append(f"filter {filter_text!r}: {shown} shown")
    return text + ("   " + " · ".join(view) if view else "")
