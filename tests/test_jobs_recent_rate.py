"""A job's straggler is judged by each rank's rate now, and named as the rank it is (issue 18).

A rank's whole-run pace (`Progress.rate`, the job's pace and ETA) forgets a slowdown only
as fast as the good hours before it are outweighed: a rank halved after 10 good hours
would be named ~20 h later. The findings read `Progress.recent_rate` instead
(`rate.PaceClock.recent`: the latest advances, pauses left out). These tests feed the real
parser (`ProgressTracker`) torchrun `--tee` lines with their arrival times, many hours of
them, as the monitor would, and read the job from those readings; the real 2-node capture
is tests/test_jobs_torchrun_capture.py's. Also here: how a rank on a node of several
ranks is worded, where its job-wide number is known and where it is not.
"""

from __future__ import annotations

import heapq
import statistics
from pathlib import Path

import yaml

from sessions.config.loader import parse_config
from sessions.jobs import summary
from sessions.progress.rate import PAUSE_BASIS, RECENT_ADVANCES, PaceClock
from sessions.progress.tracker import Progress, ProgressTracker
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, PodState, SessionSnapshot
from tui.job_rows import finding_text, rank_tag

NODES, PER_NODE = 2, 2
EVERY = 10
"""Steps between two lines a rank prints (1 step/s: a line every 10 s)."""
HOURS_GOOD = 10


def _job(nodes: int = NODES):
    return parse_config(yaml.safe_dump({
        "pods": [{"name": f"node{i}", "host": f"h{i}", "sessions": [{"name": "train", "command": "torchrun t.py"}]}
                 for i in range(nodes)],
        "jobs": [{"name": "ddp", "pods": [f"node{i}" for i in range(nodes)], "session": "train"}]}),
        Path("c.yaml")).jobs[0]


def _pod(node: int, progress: Progress | None, *, stalled: bool = False) -> PodSnapshot:
    return PodSnapshot(name=f"node{node}", host=f"h{node}", state=PodState.ONLINE,
                       gpus=tuple(GpuSample(index=i, name="H100") for i in range(PER_NODE)),
                       sessions=(SessionSnapshot(name="train", state="running", progress=progress, stalled=stalled),))


def _lines(seconds_per_step, until_s: float):
    """`(time, node, text)` of every rank's lines in time order: rank r's step s at the
    time `seconds_per_step(r, s)` says it took, one `[defaultL]:` line every EVERY steps."""
    def rank_lines(rank: int):
        t, step = 0.0, 0
        while t <= until_s:
            step += 1
            t += seconds_per_step(rank, step)
            if step % EVERY == 0:
                yield t, rank // PER_NODE, f"[default{rank % PER_NODE}]:step {step}/1000000 | loss 0.5000\n"
    return heapq.merge(*(rank_lines(r) for r in range(NODES * PER_NODE)))


def _follow(seconds_per_step, until_s: float, from_s: float):
    """Feed every line to its node's tracker at its time; from `from_s` on, yield
    `(time, summary)` after each line."""
    job = _job()
    trackers = [ProgressTracker() for _ in range(NODES)]
    for t, node, text in _lines(seconds_per_step, until_s):
        trackers[node].feed(text, t)
        if t >= from_s:
            pods = tuple(_pod(n, tr.progress(t)) for n, tr in enumerate(trackers))
            yield t, summary.summarize(job, FleetSnapshot(pods=pods))


def test_a_rank_halved_after_ten_good_hours_is_named_within_minutes():
    slow_at = HOURS_GOOD * 3600.0

    def per_step(rank: int, step: int) -> float:  # rank 3 (node1, local rank 1) halves after 10 h
        return 2.0 if rank == 3 and step > slow_at else 1.0

    named_at = None
    for t, s in _follow(per_step, slow_at + 3600, from_s=slow_at - 1800):
        if s.findings and named_at is None:
            named_at = t
            (found,) = s.findings
            assert (found.rank, found.local_rank, found.global_rank, found.flag) == (1, 1, 3, summary.STRAGGLER)
            # what the whole-run rate says at that moment: not a straggler (the rule before)
            assert found.rate > summary.STRAGGLER_RATIO * statistics.median(r.rate for r in s.ranks)
        assert t >= slow_at or not s.findings, f"named {slow_at - t:.0f} s before it slowed"
    assert named_at is not None, "never named"
    # within the window: RECENT_ADVANCES of its lines at the slow pace (EVERY x 2 s each)
    assert named_at - slow_at <= RECENT_ADVANCES * EVERY * 2.0, named_at - slow_at


def test_one_ranks_pause_is_not_slowness():
    """A rank that stops for 5 minutes every 1000 steps (say rank 0 saving a checkpoint) is
    not a straggler: the pause is one long interval, left out of its rate now (counted in,
    its rate over the window would be a third of the others')."""
    def per_step(rank: int, step: int) -> float:
        return 301.0 if rank == 0 and step % 1000 == 0 else 1.0

    seen = 0
    for _, s in _follow(per_step, 6000.0, from_s=900.0):
        assert s.findings == ()
        seen += 1
    assert seen > 1000


def test_a_rank_five_times_slower_is_slow_not_pausing():
    """Past PAUSE_FACTOR a slower interval reads as a pause; PAUSE_BASIS of them in a row
    are the rank's new pace, or a rank that turned 5x slower would never be named."""
    clock = PaceClock(0.0, 0)
    t = 0.0
    for step in range(10, 1001, 10):
        t += 10.0
        clock.add(t, step)
    assert clock.recent() == 1.0
    for i in range(1, RECENT_ADVANCES + 1):
        t += 50.0
        clock.add(t, 1000 + 10 * i)
        if i < PAUSE_BASIS:
            assert clock.recent() == 1.0, "a single long interval is a pause"
    assert clock.recent() == 0.2 and clock.pace() > 3 * clock.recent()  # the run's pace still counts the fast part


def _ranked(steps: dict[str, float]) -> Progress:
    """A node's reading with per-rank lines: `{prefix rank: rate now}`."""
    ranks = tuple((r, Progress(step=100, total=1000, rate=2.0, recent_rate=rate)) for r, rate in steps.items())
    return Progress(step=100, total=1000, rate=2.0, recent_rate=min(steps.values()), ranks=ranks)


def test_a_rank_is_worded_as_the_prefixes_number_it():
    job = _job()
    # each node shows ranks 0 and 1: torchrun's local ranks; the job-wide one follows
    s = summary.summarize(job, FleetSnapshot(pods=(_pod(0, _ranked({"0": 2.0, "1": 2.0})),
                                                   _pod(1, _ranked({"0": 2.0, "1": 1.0})))))
    (found,) = s.findings
    assert (finding_text(found), rank_tag(found)) == ("straggler: node1 local rank 1 (rank 3, 2 GPUs)", "r3")
    # node1 has no per-rank lines yet: which job-wide rank is not known
    s = summary.summarize(job, FleetSnapshot(pods=(_pod(0, _ranked({"0": 2.0, "1": 1.0})),
                                                   _pod(1, Progress(step=100, total=1000, rate=2.0)))))
    (found,) = s.findings
    assert (found.local_rank, found.global_rank) == (1, None)
    assert (finding_text(found), rank_tag(found)) == ("straggler: node0 local rank 1 (2 GPUs)", "n0")
    # disjoint rank sets: the prefixes count job-wide ranks (OpenMPI's [job,rank])
    s = summary.summarize(job, FleetSnapshot(pods=(_pod(0, _ranked({"0": 2.0, "1": 2.0})),
                                                   _pod(1, _ranked({"2": 1.0, "3": 2.0})))))
    (found,) = s.findings
    assert (found.local_rank, found.global_rank) == (None, 2)
    assert finding_text(found) == "straggler: node1 rank 2 (2 GPUs)"
    assert s.to_json()["findings"][0]["global_rank"] == 2


def test_a_hung_node_of_several_ranks_is_named_as_the_node():
    """Which of its ranks froze no line says: the node is named, not one of its ranks."""
    s = summary.summarize(_job(), FleetSnapshot(pods=(_pod(0, _ranked({"0": 2.0, "1": 2.0})),
                                                      _pod(1, _ranked({"0": 2.0, "1": 2.0}), stalled=True))))
    (found,) = s.findings
    assert (found.flag, found.local_rank, found.global_rank) == (summary.HUNG, None, None)
    assert (finding_text(found), rank_tag(found)) == ("hung rank: node1, node 1 of the job (2 ranks, 2 GPUs)", "n1")


def test_a_slow_rank_on_a_one_node_job_is_named():
    """Ranks are compared rank with rank, not node with node: one node of 4 ranks has a median."""
    s = summary.summarize(_job(1), FleetSnapshot(pods=(_pod(0, _ranked({"0": 2.0, "1": 2.0, "2": 1.0, "3": 2.0})),)))
    (found,) = s.findings
    assert (found.local_rank, found.global_rank, finding_text(found)) == (
        2, 2, "straggler: node0 local rank 2 (rank 2, 2 GPUs)")
