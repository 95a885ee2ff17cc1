"""A job as one unit, read from the pods' snapshots (pure: no I/O, no clock of its own).

A job runs as fast as its slowest rank and ends when its last rank does, so its pace
is the lowest step rate among its running ranks (0 while one is hung), its ETA the
longest, and its loss rank 0's (the one most trainers log). A rank whose session is not
running (exited, absent, or `unknown` on a pod that is not online) has no pace: its last
known rate would pass for the job's, so it is left out of pace, ETA and the median and
named instead. While a rank is hung the job has no ETA: it finishes when the rank comes
back, which no rate says, so `eta_s` is None for every view (the fleet row, the job
screen, `gpuctl jobs`, `status --json`) rather than each deciding. Three things a
per-pod view hides are named:

* **straggler**: a rank whose step rate now is under `STRAGGLER_RATIO` (0.8) of the
  ranks' median: the whole job waits for it at every collective. "Now" is the recent
  rate (`Progress.recent_rate`: the last few advances, pauses for evaluation or saving
  left out), not the whole run's pace the job's pace and ETA use: a rank that halves its
  speed after 10 good hours is named within minutes, not ~20 h later. Where a node's log
  carries per-rank lines (torchrun `--tee`: several ranks under one launcher), each of
  its ranks is compared with every other rank of the job, and the finding names the one;
* **hung rank**: a rank whose log stopped moving (the session's `stalled` flag, from
  the one stall threshold `policies.alerts.stall_minutes`) while another rank's did not;
* **not running**: a rank whose session is not running while another rank's is (the
  others will wait for it at the next collective, or are already stuck there).

Each finding carries the rank's pod and its GPUs, as the user's next step is to look there.
A job's `pods:` are its nodes (`RankView.rank` is the node's index, torchrun's node rank);
the rank a per-rank line names is found by `_numbering`: torchrun prefixes a worker's
LOCAL rank (`[default1]:` on every node), so a straggler is `local_rank` 1 on its node, and
its `global_rank` (node index x ranks per node + local rank) is given only when every node
shows the same ranks 0..n-1; where the nodes' rank sets are disjoint the prefix already
counts global ranks (OpenMPI), and otherwise the global rank is not known (None).

`summarize` runs on every snapshot the Fleet publishes (the TUI's job row), and most of
those are another pod's news: a job's summary is kept with the pod snapshots it was read
from and given again while they are the same objects (snapshots are frozen, each change
a new one), so following a 16-node job beside 100 pods costs a lookup per snapshot
rather than a summary (bench/fleet_poll.py --job).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from sessions.config.model import JobConfig
from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, PodSnapshot, PodState, SessionSnapshot, SessionState

STRAGGLER_RATIO = 0.8
STRAGGLER = "straggler"
HUNG = "hung rank"
NOT_RUNNING = "not running"


@dataclass(frozen=True)
class RankView:
    """One rank: its pod, its session's progress, and what (if anything) is wrong."""

    rank: int
    pod: str
    online: bool
    session_state: str | None = None
    step: int | None = None
    rate: float | None = None
    loss: float | None = None
    eta_s: float | None = None
    stalled: bool = False
    gpus: int = 0
    flag: str | None = None
    """None, `STRAGGLER`, `HUNG` or `NOT_RUNNING`."""
    recent_rate: float | None = None
    """The rate a straggler is judged by: `Progress.recent_rate` where known, else `rate`;
    where the node's log has per-rank lines, that of its slowest rank now."""
    local_ranks: int = 0
    """How many ranks the node's log has per-rank lines for (0: none seen)."""
    local_rank: int | None = None
    """Which of them `recent_rate` is: the one a straggler finding names. None for a node
    named hung or not running (the finding is the node's: which rank froze no line says)."""
    global_rank: int | None = None
    """That rank's number in the whole job, where the prefixes tell it (see the module doc)."""

    @property
    def running(self) -> bool:
        """Its session runs now (a session on a pod that is not online is `unknown`)."""
        return self.session_state == SessionState.RUNNING

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("rank", "pod", "online", "session_state", "step", "rate", "loss",
                                              "eta_s", "stalled", "gpus", "flag", "recent_rate", "local_ranks",
                                              "local_rank", "global_rank")}


@dataclass(frozen=True)
class JobSummary:
    """The job row: nodes online, GPUs, pace, skew, loss, ETA, spend, and its ranks."""

    name: str
    session: str | None
    ranks: tuple[RankView, ...]
    pace: float | None
    """Steps per second of the slowest running rank that reports a rate; 0 while a rank
    is hung (a real job waits for it at the next collective)."""
    step_skew: int | None
    """Steps between the furthest and the furthest-behind rank."""
    loss: float | None
    eta_s: float | None
    """The longest ETA among the running ranks; None while a rank is hung (see the module doc)."""
    spend_usd: float | None
    slowest_rank: int | None

    @property
    def nodes_online(self) -> int:
        return sum(r.online for r in self.ranks)

    @property
    def gpus(self) -> int:
        return sum(r.gpus for r in self.ranks)

    @property
    def findings(self) -> tuple[RankView, ...]:
        """The ranks named straggler, hung or not running, in rank order."""
        return tuple(r for r in self.ranks if r.flag)

    @property
    def hung(self) -> bool:
        """A rank is hung: the job is not moving (pace 0, no ETA)."""
        return any(r.flag == HUNG for r in self.ranks)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "job", "name": self.name, "session": self.session,
            "nodes": len(self.ranks), "nodes_online": self.nodes_online, "gpus": self.gpus,
            "pace": self.pace, "step_skew": self.step_skew, "loss": self.loss, "eta_s": self.eta_s,
            "spend_usd": self.spend_usd, "slowest_rank": self.slowest_rank,
            "ranks": [r.to_json() for r in self.ranks],
            "findings": [{"rank": r.rank, "pod": r.pod, "flag": r.flag, "gpus": r.gpus, "local_rank": r.local_rank,
                          "global_rank": r.global_rank} for r in self.findings],
        }


def _session(pod: PodSnapshot | None, name: str | None) -> SessionSnapshot | None:
    if pod is None:
        return None
    return next((s for s in pod.sessions if s.name == name), None)


def _progress(pod: PodSnapshot | None, name: str | None) -> Progress | None:
    session = _session(pod, name)
    return session.progress if session is not None else None


def _units(progress: Progress | None) -> list[tuple[int | None, float]]:
    """`(local rank or None, rate now)` of each rank the node's log shows that has a rate:
    one per rank where lines carry rank prefixes, else the node's one reading."""
    if progress is None:
        return []
    if progress.ranks:
        return [(int(r), rate) for r, p in progress.ranks if r.isdigit() and (rate := p.rate_now) is not None]
    rate = progress.rate_now
    return [(None, rate)] if rate is not None else []


def _rank(rank: int, pod_name: str, pod: PodSnapshot | None, session_name: str | None) -> RankView:
    session = _session(pod, session_name)
    progress = session.progress if session is not None else None
    units = _units(progress)
    local, now = min(units, key=lambda u: u[1]) if units else (None, None)
    return RankView(
        rank=rank, pod=pod_name, online=pod is not None and pod.state == PodState.ONLINE,
        session_state=session.state if session is not None else None,
        step=progress.step if progress else None, rate=progress.rate if progress else None,
        loss=progress.loss if progress else None, eta_s=progress.eta_s if progress else None,
        stalled=bool(session and session.stalled), gpus=len(pod.gpus) if pod is not None else 0,
        recent_rate=now, local_ranks=len(progress.ranks) if progress and progress.ranks else 0, local_rank=local)


def _numbering(pods: tuple[PodSnapshot | None, ...], session_name: str | None) -> str | None:
    """How the nodes' rank prefixes count: `local` (every node shows the same ranks
    0..n-1: torchrun's `[defaultN]`), `global` (two or more nodes, rank sets disjoint:
    OpenMPI's `[job,rank]`), else None (a node without per-rank lines yet, or sets that
    overlap unequally: the global rank is not known)."""
    sets = []
    for pod in pods:
        progress = _progress(pod, session_name)
        if progress is None or not progress.ranks:
            return None
        sets.append(frozenset(r for r, _ in progress.ranks))
    if not sets:
        return None
    if all(s == sets[0] for s in sets) and sets[0] == {str(i) for i in range(len(sets[0]))}:
        return "local"
    if len(sets) >= 2 and sum(map(len, sets)) == len(frozenset().union(*sets)):
        return "global"
    return None


def _global(view: RankView, numbering: str | None) -> RankView:
    """The view with its rank's number in the whole job, and `local_rank` only where the
    prefix counts local ranks."""
    if view.local_rank is None or numbering is None:
        return view
    if numbering == "global":
        return replace(view, global_rank=view.local_rank, local_rank=None)
    return replace(view, global_rank=view.rank * view.local_ranks + view.local_rank)


def _rank0_loss(pod: PodSnapshot | None, session_name: str | None) -> float | None:
    """The job's loss: rank 0's. Node 0's reading is its furthest-behind rank's
    (`ProgressTracker.progress`), which on a node running several ranks under one
    launcher (`[default1]:` lines beside `[default0]:`) need not be rank 0; the rank
    prefixed 0 on node 0 is global rank 0 whether the prefix counts local or global
    ranks. Without per-rank lines, or where rank 0 printed no loss, the node's reading."""
    progress = _progress(pod, session_name)
    if progress is None:
        return None
    first = dict(progress.ranks).get("0") if progress.ranks else None
    return first.loss if first is not None and first.loss is not None else progress.loss


def _moving(view: RankView) -> bool:
    return view.running and not view.stalled and view.step is not None


def _paced(view: RankView) -> bool:
    """The rank's rate is the job's now: running, not hung, with a rate."""
    return view.running and not view.stalled and view.rate is not None


def _flag(view: RankView, median_rate: float | None, others_moving: bool) -> str | None:
    if not view.running:
        # None: nothing seen of the session yet (the pod still connecting), not a finding
        return NOT_RUNNING if view.session_state is not None and others_moving else None
    if view.stalled and others_moving:
        return HUNG
    if (median_rate and view.recent_rate is not None and view.running and not view.stalled
            and view.recent_rate < STRAGGLER_RATIO * median_rate):
        return STRAGGLER
    return None


#: job -> (the rank pods' snapshots it was read from, its summary); see the module doc.
_LAST: dict[JobConfig, tuple[tuple[PodSnapshot | None, ...], JobSummary]] = {}
_LAST_MAX = 256
"""More jobs than any config holds; past it (configs reloaded many times) start over."""


def summarize(job: JobConfig, fleet: FleetSnapshot) -> JobSummary:
    """The job as one unit from the latest snapshot of each of its pods."""
    by_name = {p.name: p for p in fleet.pods}
    pods = tuple(by_name.get(name) for name in job.pods)
    last = _LAST.get(job)
    if last is not None and len(last[0]) == len(pods) and all(a is b for a, b in zip(last[0], pods)):
        return last[1]
    summary = _summarize(job, pods)
    if len(_LAST) >= _LAST_MAX:
        _LAST.clear()
    _LAST[job] = (pods, summary)
    return summary


def _summarize(job: JobConfig, pods: tuple[PodSnapshot | None, ...]) -> JobSummary:
    ranks = [_rank(i, name, pod, job.session) for i, (name, pod) in enumerate(zip(job.pods, pods))]
    # every rank's rate now, each rank of a node with per-rank lines on its own
    rates = [rate for r, pod in zip(ranks, pods) if r.running and not r.stalled
             for _, rate in _units(_progress(pod, job.session))]
    median = statistics.median(rates) if len(rates) >= 2 else None
    numbering = _numbering(pods, job.session)
    flagged = []
    moving = sum(_moving(r) for r in ranks)  # counted once: a rank's others are the rest (16 ranks: 16, not 256)
    for view in ranks:
        flag = _flag(view, median, moving - _moving(view) > 0)
        view = _global(view, numbering) if flag in (None, STRAGGLER) else replace(view, local_rank=None)
        flagged.append(view if flag is None else replace(view, flag=flag))
    steps = [r.step for r in flagged if r.step is not None]
    hung = [r for r in flagged if r.flag == HUNG]
    with_rate = [r for r in flagged if _paced(r)]
    slowest = hung[0] if hung else (min(with_rate, key=lambda r: r.rate or 0.0) if with_rate else None)
    etas = [r.eta_s for r in flagged if r.running and r.eta_s is not None]
    spends = [p.spend_usd for p in pods if p is not None and p.spend_usd is not None]
    return JobSummary(
        name=job.name, session=job.session, ranks=tuple(flagged),
        pace=0.0 if hung else (slowest.rate if slowest else None),
        step_skew=(max(steps) - min(steps)) if len(steps) >= 2 else None,
        loss=_rank0_loss(pods[0], job.session) if pods else None,
        eta_s=max(etas) if etas and not hung else None,
        spend_usd=round(sum(spends), 4) if spends else None,
        slowest_rank=slowest.rank if slowest else None,
    )
