"""The fleet screen's job lines: each `jobs:` entry as one unit, above its pods' rows (pure).

One line per job (nodes online, GPUs, pace = its slowest rank, step skew, loss from
rank 0, ETA, spend), then one line per rank it names (straggler, hung rank) with the
rank's pod and GPUs, since that pod is where to look next. The figures come from
`sessions.jobs.summary`, the same reading `gpuctl jobs` and `status --json` print.
"""

from __future__ import annotations

from collections.abc import Sequence

from sessions.config.model import JobConfig
from sessions.jobs.summary import JobSummary, summarize
from sessions.snapshot import FleetSnapshot
from tui.humanize import duration


def job_line(s: JobSummary) -> str:
    """`llm  3/3 nodes · 24 GPUs · pace 2.31/s · skew 40 · loss 1.234 · ETA 2h05m · $41.20`."""
    parts = [f"{s.nodes_online}/{len(s.ranks)} nodes", f"{s.gpus} GPUs"]
    if s.pace is not None:
        parts.append(f"pace {s.pace:.3g}/s")
    if s.step_skew is not None:
        parts.append(f"skew {s.step_skew}")
    if s.loss is not None:
        parts.append(f"loss {s.loss:.4g}")
    if s.eta_s is not None and not any(r.flag == "hung rank" for r in s.ranks):
        parts.append(f"ETA {duration(s.eta_s)}")
    if s.spend_usd is not None:
        parts.append(f"${s.spend_usd:.2f}")
    return f"job {s.name}  " + " · ".join(parts)


def finding_line(s: JobSummary) -> str:
    """`  straggler: rank 1 on node1 (8 GPUs) · hung rank: rank 2 on node2 (8 GPUs)`, or ""."""
    return "  " + " · ".join(f"{r.flag}: rank {r.rank} on {r.pod} ({r.gpus} GPUs)" for r in s.findings) \
        if s.findings else ""


def jobs_text(jobs: Sequence[JobConfig], snapshot: FleetSnapshot) -> tuple[str, bool]:
    """(the lines for every job, whether any names a straggler or a hung rank)."""
    lines: list[str] = []
    flagged = False
    for job in jobs:
        s = summarize(job, snapshot)
        lines.append(job_line(s))
        if s.findings:
            flagged = True
            lines.append(finding_line(s))
    return "\n".join(lines), flagged
