"""Per-rank progress: lines a launcher prefixed with their rank are read per rank.

The real capture (a 2-process torchrun on CPU with `--tee 3`) is in the matrix of
tests/data/runs/; these are the prefixes of the other launchers and the cuts a stream
makes (a prefix split across chunks, a bar's `\\r` redraws inside one prefixed line).
"""

from __future__ import annotations

import json

import pytest

from sessions.progress.tracker import Progress, ProgressTracker, parse_log
from tests.support import progress_runs as runs


def lines(prefix: str, steps: range, total: int = 100) -> list[str]:
    return [f"{prefix}step {s}/{total} | loss {3 - s / 100:.4f} | lr 1e-4\n" for s in steps]


def interleave(*streams: list[str]) -> str:
    out = []
    for group in zip(*streams):
        out += group
    return "".join(out)


@pytest.mark.parametrize("fmt", ["[rank{}]:", "[default{}]:", "(worker{}, rank={}, pid=4242, ip=10.0.0.9) ",
                                 "[1,{}]<stdout>:"])
def test_each_rank_is_read_apart_and_the_slowest_sets_the_pace(fmt):
    p0, p1 = (fmt.format(r, r) for r in (0, 1))
    text = interleave(lines(p0, range(1, 41)), lines(p1, range(1, 81, 2)))
    p = parse_log(text)
    assert (p.step, p.total, p.slowest_rank) == (40, 100, "0")
    assert [(r, q.step) for r, q in p.ranks] == [("0", 40), ("1", 79)]
    doc = p.to_json()
    assert doc["slowest_rank"] == "0" and doc["ranks"]["1"]["step"] == 79
    assert Progress(**json.loads(json.dumps(doc))) == p  # the JSON round trip readers rely on


def test_a_prefix_cut_between_chunks_and_bar_redraws_inside_a_prefixed_line():
    bar = "\r{n:3d}%|#   | {n}/100 [00:01<00:05, 10.00it/s, loss=0.{n}]"
    text = ("[rank1]:" + "".join(bar.format(n=n) for n in range(1, 6)) + "\n"
            + "[rank0]:" + "".join(bar.format(n=n) for n in range(1, 9)) + "\n")
    for size in (1, 3, 7, 64):
        t = ProgressTracker()
        for i in range(0, len(text), size):
            t.feed(text[i:i + size], now=float(i))
        p = t.progress()
        assert (p.slowest_rank, p.step, p.loss) == ("1", 5, 0.5), size
        assert dict((r, q.step) for r, q in p.ranks) == {"0": 8, "1": 5}


def test_rank_words_inside_a_line_are_not_prefixes():
    text = "init: world_size=2, rank=0 [rank0] ready\n" + "".join(lines("", range(1, 6)))
    p = parse_log(text)
    assert (p.step, p.slowest_rank, p.ranks) == (5, None, None)


def test_a_hung_rank_makes_the_job_stalled():
    t = ProgressTracker()
    for k in range(1, 6):
        t.feed(f"[rank0]:step {k} | loss 1.0\n[rank1]:step {k} | loss 1.0\n", now=float(k))
    for k in range(6, 200):
        t.feed(f"[rank0]:step {k} | loss 1.0\n", now=float(k))
    assert t.stalled(now=200.0, after_s=60)
    assert t.progress().slowest_rank == "1"


@pytest.mark.parametrize("kind", runs.KINDS)
def test_real_torchrun_tee_capture_is_split_by_rank(kind):
    truth = runs.truth("torchrun_ddp", kind)
    p = parse_log(runs.text("torchrun_ddp", kind))
    assert p.slowest_rank == str(truth.slowest_rank)
    assert {r: q.step for r, q in p.ranks} == {r: t["final_step"] for r, t in truth.ranks.items()}
    assert {r: q.loss for r, q in p.ranks} == {r: pytest.approx(t["logged_loss"], abs=1e-4)
                                              for r, t in truth.ranks.items()}


def test_the_pod_screens_row_names_the_slowest_rank_and_each_ranks_step():
    from sessions.snapshot import SessionSnapshot, SessionState
    from tui.widgets.sessions_panel import numbers_text

    two = parse_log(interleave(lines("[rank0]:", range(1, 41)), lines("[rank1]:", range(1, 81, 2))))
    row = SessionSnapshot(name="ddp", state=SessionState.RUNNING, progress=two)
    assert numbers_text(row).startswith("   40/100") and " · slowest rank 0 (0: 40, 1: 79)" in numbers_text(row)
    eight = parse_log("".join(line for r in range(8) for line in lines(f"[rank{r}]:", range(1, 30 + r))))
    row = SessionSnapshot(name="ddp", state=SessionState.RUNNING, progress=eight)
    assert " · slowest rank 0 of 8, steps 29–36" in numbers_text(row)
    alone = SessionSnapshot(name="one", state=SessionState.RUNNING, progress=parse_log("".join(lines("", range(1, 9)))))
    assert "rank" not in numbers_text(alone)
