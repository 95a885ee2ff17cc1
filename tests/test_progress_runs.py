"""Progress against the ground truth of real runs (tests/data/runs/, make_runs.py).

Every capture of the matrix, through a terminal and redirected to a file, is parsed
whole and compared with what the run recorded from inside itself: the final step
(within one), the total, the last loss the framework printed, and the step rate
(within 40 % of the run's true average, pauses included). The captures under
tests/data/logs/ stay in tests/test_progress.py as extra cases.
"""

from __future__ import annotations

import pytest

from sessions.progress.tracker import parse_log
from tests.support import progress_runs as runs

CAPTURES = runs.captures()
IDS = [f"{n}.{k}" for n, k in CAPTURES]

UNKNOWN_TOTAL = {"nanogpt", "lightning_tqdm_narrow", "lightning_tqdm_wide", "lightning_maxsteps", "deepspeed"}
"""Runs whose output never states a total (nanoGPT and DeepSpeed print none; Lightning's tqdm bar
counts one epoch and never says how many): the reading must say None, not guess.
`gpuctl progress` then says to set `total_steps:` in config."""


def test_the_matrix_is_there():
    names = {n for n, _ in CAPTURES}
    assert len(CAPTURES) >= 30 and {"hf_default", "hf_notqdm", "trl_sft", "lightning_tqdm_narrow", "torchrun_ddp"} <= names


@pytest.mark.parametrize("name,kind", CAPTURES, ids=IDS)
def test_final_step_and_total(name, kind):
    truth, p = runs.truth(name, kind), parse_log(runs.text(name, kind))
    assert p.step is not None and abs(p.step - truth.final_step) <= 1, (p.step, truth.final_step)
    assert p.total == (None if name in UNKNOWN_TOTAL else truth.total)


@pytest.mark.parametrize("name,kind", CAPTURES, ids=IDS)
def test_last_logged_loss(name, kind):
    truth, p = runs.truth(name, kind), parse_log(runs.text(name, kind))
    assert truth.logged_loss is not None
    assert p.loss == pytest.approx(truth.logged_loss, rel=0.01, abs=5e-4)


RATE_ONLY_PRINTED = {("lightning_rich", "file"): 18.96}
"""Captures that hold too little to know the true average: Rich writes to a file only
the last epoch's final state (one line, its rate leaving validation out), so the
reading must be the rate it printed."""


NO_TIMING = {"torchrun_ddp"}
"""Runs whose lines carry no timing at all (`step N/T | loss X | lr Y`): a whole file
says the rate is unknown; followed live, the rate comes from when the lines arrived."""


@pytest.mark.parametrize("name,kind", CAPTURES, ids=IDS)
def test_rate_near_the_true_average(name, kind):
    truth, p = runs.truth(name, kind), parse_log(runs.text(name, kind))
    if name in NO_TIMING:
        assert p.rate is None
        if kind == "tty":  # the same run followed at its arrival times
            (_, _, live), = runs.replay(name, (truth.final_step / truth.total,))
            assert live.rate_unit == "derived" and 0.6 <= live.rate / truth.mean_rate <= 1.4
        return
    assert p.rate is not None
    if (name, kind) in RATE_ONLY_PRINTED:
        assert (p.rate, p.rate_unit) == (RATE_ONLY_PRINTED[name, kind], "it/s")
        return
    assert 0.6 <= p.rate / truth.mean_rate <= 1.4, (p.rate, truth.mean_rate)
