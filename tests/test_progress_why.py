"""`gpuctl progress FILE` says why a figure is missing; logs without timing get a rate
from arrival times while followed, and a finished file says its rate is unknown."""

from __future__ import annotations

import json

from sessions.progress.tracker import ProgressTracker, parse_log
from sessions.progress.explain import missing
from tests.support import progress_runs as runs
from tui.cli import main

BARE = "".join(f"step {s}/200 loss {3 - s / 100:.3f}\n" for s in range(1, 41))
"""A loop that prints no timing at all: no it/s, no time per step, no timestamps."""


def test_a_file_without_timing_says_the_rate_is_unknown(tmp_path, capsys):
    path = tmp_path / "bare.log"
    path.write_text(BARE)
    assert main(["progress", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["step"], doc["total"], doc["rate"], doc["eta_s"]) == (40, 200, None, None)
    assert "unknown" in doc["missing"]["rate"] and "no timing" in doc["missing"]["rate"]
    assert doc["missing"]["eta_s"] == "needs the rate"
    assert main(["progress", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # reasons are wrapped to 80 columns
    assert "a file has no arrival times" in out and "while gpuctl follows a session" in out


def test_the_same_log_followed_gets_a_live_rate_and_eta_from_arrival_times():
    t = ProgressTracker()
    for i, line in enumerate(BARE.splitlines(keepends=True)):
        t.feed(line, now=1000.0 + 0.5 * i)  # one step every half second, as the agent saw them
    p = t.progress()
    assert (p.step, p.rate_unit) == (40, "derived")
    assert p.rate == 2.0 and p.eta_s == (200 - 40) / 2.0
    assert missing(p, followed=True) == {}


def test_a_total_never_printed_is_explained_with_the_config_fix():
    p = parse_log("iter 10: loss 2.0, time 250.00ms, mfu 30.00%\n")
    why = missing(p)
    assert set(why) == {"total", "eta_s"} and "total_steps:" in why["total"]


def test_a_trainer_without_a_bar_explains_its_missing_step(capsys):
    text = runs.text("hf_notqdm", "tty")
    live = text[: text.index("train_runtime")].rsplit("\n", 1)[0] + "\n"  # the run before its summary
    p = parse_log(live)
    assert (p.format, p.step) == ("hf_trainer", None) and p.loss is not None
    assert "disable_tqdm" in missing(p)["step"]
    done = parse_log(text)  # its closing summary gives steps, total and rate
    truth = runs.truth("hf_notqdm", "tty")
    assert (done.step, done.total) == (truth.final_step, truth.total) and missing(done) == {}


def test_ranks_are_listed_in_the_report(tmp_path, capsys):
    path = tmp_path / "ddp.log"
    path.write_text("".join(f"[rank0]:step {s}/50 | loss 1.0 | dt 10ms\n[rank1]:step {s // 2}/50 | loss 2.0 | dt 20ms\n"
                            for s in range(2, 21)))
    assert main(["progress", str(path)]) == 0
    out = capsys.readouterr().out
    assert "slowest rank 1" in out and "rank 0    step 20/50" in out and "rank 1    step 10/50" in out
