"""A real 2-node torchrun job read as one unit (issue 18, "Tests (real parts)").

torch cannot be installed where the suite runs (the CPU wheel lives off PyPI, PyPI's is
gigabytes), so the 2-node run is a checked-in capture: tests/data/runs/make_runs.py's
`torchrun_2node`, two torchrun agents as nodes 0 and 1 of one gloo job (two ranks each,
`--tee 3`), each node's pane captured with when each chunk arrived, and the truth
written from inside each rank (its steps and their times, which rank turned slow and
when). Nothing here imports torch.

Each node's capture is replayed into the pod's `SessionBook` as the agent's `log`
messages, batched at the agent's follow interval and stamped with their arrival times
(what the monitor does with a live pod's log), the pod snapshots are built from the
book's view, and `sessions.jobs.summary` reads the job from them, as the Fleet does. It
is checked against the truth: each rank's last step, the job's pace (the slowest rank's
rate), the straggler's node and its local rank, and the loss from rank 0; and, followed
look by look, that the straggler is named soon after its recorded slowdown (by its rate
now, `Progress.recent_rate`), no rank before it, and in the words that say which rank it
is (torchrun's prefix counts ranks per node).
"""

from __future__ import annotations

import codecs
import json
import statistics
from pathlib import Path

import pytest
import yaml

from backends.pod_agent.logs import FOLLOW_INTERVAL_S
from sessions.config.loader import parse_config
from sessions.fleet.session_book import SessionBook
from sessions.jobs import summary
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, PodState
from tui.job_rows import finding_text, rank_tag

RUNS = Path(__file__).resolve().parent / "data" / "runs"
NAME = "torchrun_2node"
TRUTH = json.loads((RUNS / f"{NAME}.truth.json").read_text())
NODES = ("node0", "node1")
PER_NODE = TRUTH["nproc_per_node"]

RATE_TOLERANCE = 0.40
"""As tests/test_progress_runs.py: a rate within 40 % of the run's true average, first
step to last (the rate gpuctl shows is the run's pace, `rate.PaceClock.pace`)."""


def _config():
    return parse_config(yaml.safe_dump({
        "pods": [{"name": n, "host": n, "sessions": [{"name": "train", "command": "torchrun train.py"}]}
                 for n in NODES],
        "jobs": [{"name": "ddp", "pods": list(NODES), "session": "train"}]}), Path("c.yaml"))


def _looks(node: int) -> list[tuple[float, str]]:
    """The node's capture as the agent sends it: what landed since its last look, every
    FOLLOW_INTERVAL_S, stamped with the time of the look."""
    data = (RUNS / f"{NAME}.node{node}.log").read_bytes()
    times = json.loads((RUNS / f"{NAME}.node{node}.times.json").read_text())
    decode = codecs.getincrementaldecoder("utf-8")("replace")
    looks: list[tuple[float, str]] = []
    start = 0
    for t, end in times:
        at = (int(t / FOLLOW_INTERVAL_S) + 1) * FOLLOW_INTERVAL_S
        text = decode.decode(data[start:end])
        start = end
        if looks and looks[-1][0] == at:
            looks[-1] = (at, looks[-1][1] + text)
        else:
            looks.append((at, text))
    return looks


NAMED_WITHIN_S = 2.0
"""How soon after its recorded slowdown rank 3 must be named: four of its lines once slow
(one every 0.5 s). The rule before (each node's whole-run rate against the nodes' median)
named it 3.6 s after, about as long as the run had gone well (3 s); the recent window
still spans most of those 3 s here, so the case of 10 good hours is tests/test_jobs.py's."""


def _timeline():
    """`(time, summary)` at each of the agent's looks at either node, both nodes' books fed
    look by look as the monitor feeds them (one replay, not one per look)."""
    config = _config()
    books = []
    for pod in config.pods:
        book = SessionBook(pod, config)
        book.on_tmux([{"name": "train", "state": "running"}])
        books.append(book)
    looks = [_looks(n) for n in range(len(NODES))]
    fed, offsets = [0] * len(NODES), [0] * len(NODES)
    for now in sorted({at for node in looks for at, _ in node}):
        for n, book in enumerate(books):
            while fed[n] < len(looks[n]) and looks[n][fed[n]][0] <= now:
                at, text = looks[n][fed[n]]
                offsets[n] += len(text.encode())
                book.on_log({"id": "train", "data": text, "offset": offsets[n]}, at)
                fed[n] += 1
        pods = tuple(PodSnapshot(name=pod.name, host=pod.name, state=PodState.ONLINE,
                                 gpus=tuple(GpuSample(index=i, name="cpu") for i in range(PER_NODE)),
                                 sessions=book.view(now)) for pod, book in zip(config.pods, books))
        yield now, summary.summarize(config.jobs[0], FleetSnapshot(pods=pods))


def _replay(until: float) -> tuple[summary.JobSummary, tuple[PodSnapshot, ...]]:
    """The job summary, and the pod snapshots it was read from, as both nodes' logs
    stood at `until` (the capture's clock)."""
    config = _config()
    pods = []
    for node, pod in enumerate(config.pods):
        book = SessionBook(pod, config)
        book.on_tmux([{"name": "train", "state": "running"}])
        offset = 0
        for at, text in _looks(node):
            if at > until:
                break
            offset += len(text.encode())
            book.on_log({"id": "train", "data": text, "offset": offset}, at)
        pods.append(PodSnapshot(name=pod.name, host=pod.name, state=PodState.ONLINE,
                                gpus=tuple(GpuSample(index=i, name="cpu") for i in range(PER_NODE)),
                                sessions=book.view(until)))
    return summary.summarize(config.jobs[0], FleetSnapshot(pods=tuple(pods))), tuple(pods)


def _end() -> float:
    """The agent's last look at either node: both whole logs are in."""
    return max(_looks(n)[-1][0] for n in range(len(NODES)))


def _true_rate(rank: str, until: float) -> float:
    """The rank's true steps per second from its first step to the last it printed by
    `until` (steps are printed every 5)."""
    steps = [(s, t) for s, t, _ in TRUTH["ranks"][rank]["steps"] if t <= until]
    (s0, t0), (s1, t1) = steps[0], [(s, t) for s, t in steps if s % 5 == 0][-1]
    return (s1 - s0) / (t1 - t0)


def _node_rates(until: float) -> list[float]:
    """Each node's true pace: its slowest rank's."""
    return [min(_true_rate(str(node * PER_NODE + local), until) for local in range(PER_NODE))
            for node in range(len(NODES))]


def test_the_capture_has_a_straggler_by_the_rule_and_none_before():
    """The truth alone (no parser): by the end, node 1's pace is under STRAGGLER_RATIO of
    the median, and before the slowdown it is not; else the test below proves nothing."""
    slow_from = TRUTH["straggler"]["slow_from"]
    end = _node_rates(_end())
    before = _node_rates(slow_from)
    assert end[1] < summary.STRAGGLER_RATIO * statistics.median(end)
    assert min(before) >= summary.STRAGGLER_RATIO * statistics.median(before)
    assert TRUTH["straggler"] == {"rank": 3, "node": 1, "local_rank": 1, "slow_from": slow_from}


def test_the_job_read_from_both_nodes_matches_the_truth():
    s, pods = _replay(_end())
    progress_of = [pod.sessions[0].progress for pod in pods]
    readings = {}
    for node, view in enumerate(s.ranks):
        assert view.pod == NODES[node] and view.running
        progress = progress_of[node]
        assert progress.ranks is not None and [r for r, _ in progress.ranks] == [str(i) for i in range(PER_NODE)]
        for local, reading in progress.ranks:
            readings[str(node * PER_NODE + int(local))] = reading
    assert {r: p.step for r, p in readings.items()} == {r: t["final_step"] for r, t in TRUTH["ranks"].items()}
    assert all(p.total == TRUTH["total"] for p in readings.values())

    straggler = TRUTH["straggler"]
    assert [(f.rank, f.pod, f.flag, f.gpus) for f in s.findings] == [
        (straggler["node"], NODES[straggler["node"]], summary.STRAGGLER, PER_NODE)]
    # named as torchrun numbers it: local rank 1 on node1, rank 3 of the job (both nodes show ranks 0, 1)
    (found,) = s.findings
    assert (found.local_rank, found.global_rank) == (straggler["local_rank"], straggler["rank"])
    assert finding_text(found) == f"straggler: node1 local rank 1 (rank 3, {PER_NODE} GPUs)"
    assert rank_tag(found) == "r3"
    assert s.to_json()["findings"] == [{"rank": 1, "pod": "node1", "flag": summary.STRAGGLER, "gpus": PER_NODE,
                                        "local_rank": 1, "global_rank": 3}]
    # its rate now is the slow part's (10 steps/s), where its whole-run rate still counts the fast start
    slow_steps = [(st, t) for st, t, _ in TRUTH["ranks"]["3"]["steps"] if t >= straggler["slow_from"]]
    slow_rate = (slow_steps[-1][0] - slow_steps[0][0]) / (slow_steps[-1][1] - slow_steps[0][1])
    assert found.recent_rate == pytest.approx(slow_rate, rel=0.2) and found.rate > 1.2 * slow_rate
    local = progress_of[straggler["node"]].slowest_rank  # torchrun's prefix counts local ranks
    assert local == str(straggler["local_rank"]) and straggler["node"] * PER_NODE + int(local) == straggler["rank"]
    assert s.slowest_rank == straggler["node"]
    true_pace = _true_rate(str(straggler["rank"]), _end())
    assert s.pace == pytest.approx(true_pace, rel=RATE_TOLERANCE)
    assert s.pace == min(r.rate for r in s.ranks if r.rate is not None)

    finals = [min(TRUTH["ranks"][str(n * PER_NODE + i)]["final_step"] for i in range(PER_NODE))
              for n in range(len(NODES))]
    assert s.step_skew == max(finals) - min(finals)
    # loss from rank 0, though node 0's reading is rank 1's (behind rank 0) with its own loss
    assert s.loss == pytest.approx(TRUTH["ranks"]["0"]["logged_loss"], rel=0.01, abs=5e-4)
    assert progress_of[0].slowest_rank == "1" and progress_of[0].loss != pytest.approx(s.loss, abs=5e-4)


def test_no_rank_is_named_before_the_slowdown():
    slow_from = TRUTH["straggler"]["slow_from"]
    s, _ = _replay(slow_from)
    assert s.findings == ()
    assert s.pace == pytest.approx(min(_node_rates(slow_from)), rel=RATE_TOLERANCE)



def test_the_straggler_is_named_soon_after_it_slowed_and_no_rank_before():
    slow_from = TRUTH["straggler"]["slow_from"]
    timeline = list(_timeline())
    named = [t for t, s in timeline if s.findings]
    assert named, "never named"
    assert slow_from < named[0] <= slow_from + NAMED_WITHIN_S, named[0] - slow_from
    # from then on to the end of the run: rank 3 alone, every look
    assert [(f.rank, f.flag, f.local_rank, f.global_rank) for t, s in timeline if t >= named[0]
            for f in s.findings] == [(1, summary.STRAGGLER, 1, 3)] * sum(t >= named[0] for t, _ in timeline)
