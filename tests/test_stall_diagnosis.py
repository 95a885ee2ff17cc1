"""Stall diagnosis on real processes: one that sleeps (idle), one that spins on the CPU
while its step is frozen (hung), a shell whose program is gone and a killed process
(dead), a pinned GPU among idle ones (hung, a collective), a rate that drops (slow),
and the `py-spy dump` of a hung python process when py-spy is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from backends.pod_agent.health import py_spy_dump, read_processes
from sessions.health.stall import diagnose, slow

PY_SPY = shutil.which("py-spy", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
SPIN = "def spin():\n    while True:\n        pass\nspin()\n"


@pytest.fixture
def spawn():
    procs = []

    def start(argv, **kwargs):
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_sleeping_process_with_idle_gpus_is_idle(spawn):
    proc = spawn(["sleep", "60"])
    seen = read_processes(proc.pid, window_s=0.3)
    verdict = diagnose(seen, [0.0, 0.0])
    assert verdict.kind == "idle"
    assert verdict.evidence[0].startswith(f"pid {proc.pid} sleep 60: sleeping")
    assert verdict.evidence[-1] == "GPU utilization 0 %, 0 %"


def test_a_process_spinning_on_the_cpu_with_a_frozen_step_is_hung(spawn):
    proc = spawn([sys.executable, "-c", SPIN])
    seen = read_processes(proc.pid, window_s=0.5)
    verdict = diagnose(seen, [0.0])
    assert verdict.kind == "hung"
    assert "running" in verdict.evidence[0] and "% of a core" in verdict.evidence[0]
    assert verdict.evidence[-1] == "the process runs on the CPU while the step does not move"


def test_a_shell_without_its_program_and_a_killed_process_are_dead(spawn):
    shell = spawn(["sh", "-c", "read line"])  # the pane's shell, its program gone
    verdict = diagnose(read_processes(shell.pid, window_s=0.1), [0.0])
    assert verdict.kind == "dead" and "only its shell" in verdict.evidence[0]
    gone = spawn(["sleep", "60"])
    gone.kill()
    gone.wait()
    assert diagnose(read_processes(gone.pid, window_s=0.1), [0.0]) == diagnose(
        {"root_alive": False, "processes": []}, [0.0])
    assert diagnose({"root_alive": False, "processes": []}, [0.0]).kind == "dead"


def test_one_gpu_pinned_while_the_others_idle_is_a_collective_waiting():
    seen = {"root_alive": True, "processes": [
        {"pid": 7, "ppid": 1, "state": "S", "cpu_pct": 3.0, "wchan": "futex_wait_queue", "args": "python train.py"}]}
    verdict = diagnose(seen, [100.0, 0.0, 0.0, 0.0])
    assert verdict.kind == "hung"
    assert verdict.evidence[-1] == "GPU 0 pinned while the others are idle: a collective waiting for a peer"
    busy = diagnose(seen, [97.0, 98.0])
    assert busy.kind is None and busy.evidence[-1] == "the GPUs are busy: the run may be working without logging"


def test_a_rate_far_below_its_own_recent_rate_is_slow():
    assert slow(4.0, 10.0) is None  # 40 % of its usual pace: slower, not slow
    verdict = slow(2.5, 10.0)
    assert verdict is not None and verdict.kind == "slow"
    assert verdict.evidence == ("2.5 steps/s now against 10 steps/s before (25 %)",)
    assert slow(None, 10.0) is None and slow(1.0, None) is None


@pytest.mark.skipif(PY_SPY is None, reason="py-spy comes with the test extras (pyproject); not installed here")
def test_py_spy_dump_of_a_hung_python_process(spawn, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(PY_SPY) + os.pathsep + os.environ.get("PATH", ""))
    proc = spawn([sys.executable, "-c", SPIN])
    seen = read_processes(proc.pid, window_s=0.3)
    dump = py_spy_dump([proc.pid])
    assert dump["installed"] and dump["error"] is None
    verdict = diagnose(seen, [0.0], dump)
    assert verdict.kind == "hung"
    assert verdict.py_spy.startswith(f"--- py-spy dump --pid {proc.pid}\n")
    assert "spin (<string>:" in verdict.py_spy  # the frame of the spinning function


def test_without_py_spy_the_message_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    dump = py_spy_dump([1])
    assert dump == {"installed": False, "dumps": {}, "error": "py-spy is not installed on the pod (pip install py-spy)"}
    verdict = diagnose({"root_alive": True, "processes": [{"pid": 1, "state": "R", "cpu_pct": 99.0,
                                                          "args": "python train.py"}]}, [0.0], dump)
    assert verdict.py_spy == "py-spy is not installed on the pod (pip install py-spy)"


def test_a_run_whose_rate_falls_is_told_slow_once_and_again_after_it_recovered():
    from sessions.health.stall import SlowWatch

    watch = SlowWatch()
    told = []
    rates = [10.0] * 600 + [9.0, 1.0, 9.5] + [10.0] * 100  # one low reading (a save): not slow
    rates += [2.0] * 200 + [10.0] * 300 + [2.5] * 200  # slow, recovered, slow again
    for second, rate in enumerate(rates):
        verdict = watch.feed(float(second), rate)
        if verdict is not None:
            told.append((second, verdict.kind, verdict.evidence))
    assert [(kind, evidence) for _, kind, evidence in told] == [
        ("slow", ("2 steps/s now against 10 steps/s before (20 %)",)),
        ("slow", ("2.5 steps/s now against 10 steps/s before (25 %)",)),
    ]
    assert 703 + 60 <= told[0][0] <= 703 + 121  # after most of a two-minute window of low readings
    assert watch.feed(9999.0, None) is None


def test_ncclras_output_is_attached_when_the_pod_has_it(tmp_path, monkeypatch, spawn):
    """NCCL >= 2.24's RAS client, when on PATH and answering, goes with the verdict verbatim."""
    from backends.pod_agent.health import ncclras_dump

    monkeypatch.setenv("PATH", str(tmp_path))
    assert ncclras_dump() is None  # not installed
    tool = tmp_path / "ncclras"
    tool.write_text("#!/bin/sh\necho 'RAS: 1 job, 2 ranks; rank 1 missing from a collective'\n")
    tool.chmod(0o755)
    assert ncclras_dump() == "RAS: 1 job, 2 ranks; rank 1 missing from a collective\n"
    tool.write_text("#!/bin/sh\necho 'Failed to connect to the NCCL RAS service' >&2; exit 1\n")
    assert ncclras_dump() is None  # no NCCL job with RAS here: nothing attached


def test_a_long_run_that_halves_is_told_slow_by_its_recent_rate(tmp_path):
    """After ten hours at 10 steps/s, a run at 2 moves its whole-run average by a few
    per cent an hour: the watch judges the rate now (`Progress.rate_now`, the recent
    window), so `slow` comes within minutes, not a day later."""
    from sessions.progress.tracker import Progress
    from sessions.snapshot import SessionSnapshot, SessionState
    from sessions.watch.context import WatchContext
    from sessions.watch.resume import AutoResume
    from sessions.watch.state import WatchState

    told = []
    auto = AutoResume(WatchContext(fleet=None, state=WatchState(tmp_path / "state.json"), emit=told.append,
                                    start_dir=tmp_path))
    hours = 10 * 3600.0
    steps = 10 * hours
    for second in range(0, 900):
        now = hours + second
        recent = 10.0 if second < 300 else 2.0
        steps += recent
        whole = steps / now
        session = SessionSnapshot("train", SessionState.RUNNING, pid=7,
                                  progress=Progress(step=int(steps), rate=whole, recent_rate=recent))
        auto.consider_hang("p", session, now=now)
    assert [e.message for e in told] == ["slow: 2 steps/s now against 10 steps/s before (20 %)"]
    assert Progress(rate=3.0).rate_now == 3.0 and Progress(rate=3.0, recent_rate=1.0).rate_now == 1.0
