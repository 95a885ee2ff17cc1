"""A job as one unit on the fleet screen: its row's cells and its line (pure).

The fleet table draws each `jobs:` entry as one row (`job_cells`: nodes online, GPUs,
pace = its slowest rank, step skew, loss from rank 0, ETA, spend) with its nodes'
rows folded under it (`node_mark`), and names a straggler, hung rank or rank not
running in the row and, with the rank's pod and GPUs, in the line under the table
(`job_line`, `finding_line`), since that pod is where to look next. The figures come
from `sessions.jobs.summary`, the same reading `gpuctl jobs` and `status --json` print,
and are worded here for all of them (`pace_text`, `finding_text`). The row sorts among
the pods' by its own value for the table's sort key (`sort_value`).

A `kind: slurm` pod's running jobs (the Fleet's `slurm` poller) are rows under the
login node's row (`slurm_cells`): Slurm's id and state, GPUs, name, progress, ETA, cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sessions.jobs.summary import HUNG, NOT_RUNNING, STRAGGLER, JobSummary, RankView
from sessions.snapshot import PodSnapshot
from tui import fleet_rows
from tui.fleet_rows import step_span
from tui.humanize import duration
from tui.sessions_table import per_step_text, rate_text
from tui.status_table import billed_price

if TYPE_CHECKING:  # sessions.slurm.jobs imports asyncssh: not before the first frame
    from sessions.slurm.jobs import JobView

Cell = tuple[tuple[str, str], ...]
"""As `fleet_rows.Cell`: (text, tone) spans."""

EXPANDED, COLLAPSED = "▾ ", "▸ "
"""The job row's fold mark: its nodes are shown under it, or folded away."""


def pace_text(pace: float | None) -> str:
    """A job's pace (or one rank's rate) in a pod's RATE words (`sessions_table.per_step_text`:
    `2.31 it/s`, `4.00 s/it`), wherever it is shown: the fleet row, the job line, the
    job screen's ranks and `gpuctl jobs`. A hung rank holds the job at `0 it/s`."""
    if pace is None:
        return "-"
    if pace == 0:
        return "0 it/s"
    return per_step_text(pace)


def job_line(s: JobSummary) -> str:
    """`llm  3/3 nodes · 24 GPUs · pace 2.31 it/s · skew 40 · loss 1.234 · ETA 2h05m · $41.20`."""
    parts = [f"{s.nodes_online}/{len(s.ranks)} nodes", f"{s.gpus} GPUs"]
    if s.pace is not None:
        parts.append(f"pace {pace_text(s.pace)}")
    if s.step_skew is not None:
        parts.append(f"skew {s.step_skew}")
    if s.loss is not None:
        parts.append(f"loss {s.loss:.4g}")
    if s.eta_s is not None:
        parts.append(f"ETA {duration(s.eta_s)}")
    if s.spend_usd is not None:
        parts.append(f"${s.spend_usd:.2f}")
    return f"job {s.name}  " + " · ".join(parts)


def finding_text(r: RankView) -> str:
    """`hung rank: rank 2 on node2 (8 GPUs)`; a rank not running says its session's state
    (`not running (exited): ...`), as that is what to look at on its pod.

    Where the node's log has per-rank lines (several ranks under one launcher), the rank
    is named on its node, as torchrun's prefix counts it: `straggler: node1 local rank 1
    (rank 3, 2 GPUs)`, the job-wide rank only where `summary` knows it (`RankView.global_rank`),
    `straggler: node1 rank 3 (...)` where the prefixes count job-wide ranks. A hung node
    or one not running is named as the node, whose rank is the config's node index:
    `hung rank: node1, node 1 of the job (2 ranks, 2 GPUs)`."""
    flag = f"{r.flag} ({r.session_state})" if r.flag == NOT_RUNNING and r.session_state else r.flag
    if r.local_rank is not None:
        whole = f"rank {r.global_rank}, " if r.global_rank is not None else ""
        return f"{flag}: {r.pod} local rank {r.local_rank} ({whole}{r.gpus} GPUs)"
    if r.global_rank is not None:
        return f"{flag}: {r.pod} rank {r.global_rank} ({r.gpus} GPUs)"
    if r.local_ranks:
        return f"{flag}: {r.pod}, node {r.rank} of the job ({r.local_ranks} ranks, {r.gpus} GPUs)"
    return f"{flag}: rank {r.rank} on {r.pod} ({r.gpus} GPUs)"


def rank_tag(r: RankView) -> str:
    """The rank in the SESSION cell's few columns: `r3` (the job-wide rank where known,
    else the node's index where the node runs one rank), `n1` (a node of several ranks,
    which one named in the line under the table)."""
    if r.global_rank is not None:
        return f"r{r.global_rank}"
    return f"n{r.rank}" if r.local_ranks else f"r{r.rank}"


def finding_line(s: JobSummary) -> str:
    """`  straggler: rank 1 on node1 (8 GPUs) · hung rank: rank 2 on node2 (8 GPUs)`, or ""."""
    return "  " + " · ".join(finding_text(r) for r in s.findings) if s.findings else ""


def _short_flag(r: RankView) -> str:
    """The SESSION cell's word for a finding (12 columns): `hung`, `straggler`, `exited`..."""
    if r.flag == HUNG:
        return "hung"
    if r.flag == NOT_RUNNING:
        return r.session_state or "stopped"
    return r.flag or ""


def price(pods: Sequence[PodSnapshot]) -> float | None:
    """The job's $/h: its nodes' summed where each is billed now (`status_table.billed_price`,
    as a pod's $/H cell), None when none is."""
    prices = [p for p in (billed_price(pod) for pod in pods) if p is not None]
    return sum(prices) if prices else None


def sort_value(sort: str, s: JobSummary, pods: Sequence[PodSnapshot]) -> object:
    """The job's own value for the fleet table's sort key (`fleet_rows.SORTS`), so its row
    sorts among the pods': its name, its worst node's state, its hottest GPU, the mean
    utilization of all its GPUs, its ETA, its $/h summed. None sorts last."""
    if sort == "name":
        return s.name.lower()
    if sort == "eta":
        return s.eta_s
    if sort == "price":
        return price(pods)
    if sort == "util":
        utils = [g.util_pct for p in pods for g in p.gpus if g.util_pct is not None]
        return sum(utils) / len(utils) if utils else None
    value = fleet_rows.SORTS[sort][1]
    values = [v for v in (value(p) for p in pods) if v is not None]
    if not values:
        return None
    return min(values) if sort == "state" else max(values)  # type: ignore[type-var]


def _finding_tone(s: JobSummary) -> str:
    """A hung rank or one not running stops the job (failed); a straggler slows it."""
    return "reconnecting" if all(r.flag == STRAGGLER for r in s.findings) else "failed"


def job_cells(s: JobSummary, pods: Sequence[PodSnapshot], expanded: bool) -> dict[str, Cell]:
    """The job's row in the fleet table, column by column (`fleet_rows.COLUMNS`' keys).

    STATE says how many nodes are online (the warning tone when not all are), SESSION
    names the first straggler, hung rank or rank not running (else the job's session),
    STEP the skew, RATE the pace, $/H and SPENT the nodes' sums."""
    all_online = s.nodes_online == len(s.ranks)
    first = s.findings[0] if s.findings else None
    per_hour = price(pods)
    return {
        "pod": ((EXPANDED if expanded else COLLAPSED, "muted"), (s.name, "")),
        "state": ((f"{s.nodes_online}/{len(s.ranks)} nodes", "online" if all_online else "reconnecting"),),
        "gpus": ((f"{s.gpus} GPUs", ""),),
        "mem": (("", ""),),
        "session": ((f"{_short_flag(first)} {rank_tag(first)}", "stalled"),) if first
        else ((s.session or "-", ""),),
        "step": ((f"skew {s.step_skew}" if s.step_skew is not None else "-", ""),),
        "rate": ((pace_text(s.pace), "stalled" if s.hung else ""),),
        "loss": ((f"{s.loss:.4g}" if s.loss is not None else "-", ""),),
        "eta": ((duration(s.eta_s) if s.eta_s is not None else "-", ""),),
        "price": ((f"{per_hour:.2f}" if per_hour is not None else "-", ""),),
        "spent": ((f"${s.spend_usd:,.2f}" if s.spend_usd is not None else "-", ""),),
    }


def node_mark(last: bool) -> str:
    """The indent before a node's name under its expanded job row."""
    return " └ " if last else " ├ "


def detail_text(s: JobSummary) -> tuple[str, str]:
    """The line under the table for a highlighted job row: (text, tone)."""
    if s.findings:
        return finding_line(s).strip(), _finding_tone(s)
    return job_line(s), ""


SLURM_TONES = {"RUNNING": "online", "PENDING": "connecting", "CONFIGURING": "connecting", "COMPLETING": "muted",
               "SUSPENDED": "stopped", "PREEMPTED": "preempted"}
"""Slurm's JobState words in the fleet table's tones."""


def slurm_cells(v: JobView, last: bool) -> dict[str, Cell]:
    """A Slurm job's row under its login node's (`kind: slurm` pod) row."""
    job, progress = v.job, v.progress
    running = job.state == "RUNNING"
    loss = f"{progress.loss:.4g}" if progress and progress.loss is not None else "-"
    return {
        "pod": ((node_mark(last), "muted"), (f"#{job.job_id}", "")),
        "state": (((job.state or "?").lower(), SLURM_TONES.get(job.state or "", "")),),
        "gpus": ((f"{job.gpus} GPUs" if job.gpus is not None else "-", ""),
                 (f" {len(job.nodes)} node{'s' if len(job.nodes) != 1 else ''}" if job.nodes else "", "muted")),
        "mem": (("", ""),),
        "session": ((job.name or "-", ""),),
        "step": ((step_span(progress), ""),),
        "rate": ((rate_text(progress if running else None), ""),),
        "loss": ((loss, "failed" if loss in ("nan", "inf") else ""),),
        "eta": ((duration(progress.eta_s) if running and progress and progress.eta_s is not None else "-", ""),),
        "price": (("-", ""),),
        "spent": ((f"${v.cost_usd:,.2f}" if v.cost_usd is not None else "-", ""),),
    }


def slurm_detail(pod: str, v: JobView) -> str:
    """The line under the table for a highlighted Slurm job."""
    job = v.job
    parts = [f"Slurm job {job.job_id} on {pod}", job.user or "", ",".join(job.nodes) or "no nodes yet",
             f"log {job.stdout}" if job.stdout else ""]
    return " · ".join(p for p in parts if p)
