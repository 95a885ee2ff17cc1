"""Stall diagnosis in watch: a new stall is diagnosed once and told (`stall_diagnosis`,
with the evidence, in watch --json too); with auto_resume.on_hang_minutes a run whose
step froze while its process spins is killed and resumed from its newest checkpoint;
without the policy (the default) a hung run is left alone."""

from __future__ import annotations

import shlex

from tests.test_watch import Run, checkpoint, config_for, poll, tmux_cleanup, wait_state  # noqa: F401

SPIN = ("import time\nfor i in range(1, 4):\n    print(f'step {i}/1000 | loss 2.0', flush=True)\n"
        "    time.sleep(0.1)\nwhile True:\n    pass\n")
RESUME = ("sh -c 'echo \"$0\" > resumed_from; i=201; while :; do echo \"step $i/1000 | loss 1.5\"; "
          "i=$((i+1)); sleep 0.1; done' {checkpoint}")


async def test_a_hung_session_is_diagnosed_killed_and_resumed(sshd, tmp_path, tmux_cleanup):  # noqa: F811
    work = tmp_path / "work"
    work.mkdir()
    newest = checkpoint(work, "step_200.pt")
    config = config_for(sshd, tmp_path, {"command": f"python3 -c {shlex.quote(SPIN)}", "resume": RESUME},
                        {"auto_resume": {"max_restarts": 2, "backoff_s": 0.1, "on_hang_minutes": 0.02},
                         "alerts": {"stall_minutes": 0.01}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await wait_state(run, "running")
        hung = (await run.wait_for("alert", alert="hung", timeout=60))[0]
        assert hung.session == "train"
        assert "the process runs on the CPU while the step does not move" in hung.extra["evidence"]
        assert hung.extra["py_spy"] == "py-spy is not installed on the pod (pip install py-spy)"
        resumed = (await run.wait_for("resumed", timeout=60))[0]
        assert resumed.extra["checkpoint"] == str(newest)
        assert resumed.extra["reason"] == "a hang of 0.02 min"
        await poll(lambda: (work / "resumed_from").exists())


async def test_without_the_policy_a_hung_session_is_left_alone(sshd, tmp_path, tmux_cleanup):  # noqa: F811
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_200.pt")
    config = config_for(sshd, tmp_path, {"command": f"python3 -c {shlex.quote(SPIN)}", "resume": RESUME},
                        {"auto_resume": {"max_restarts": 2, "backoff_s": 0.1}, "alerts": {"stall_minutes": 0.01}})
    async with Run(config, tmp_path) as run:
        await run.fleet.launch("p", "train")
        await wait_state(run, "running")
        await run.wait_for("alert", alert="stall_minutes", timeout=60)
        told = (await run.wait_for("alert", alert="stall_diagnosis", timeout=60))[0]  # said whatever the policy
        assert told.extra["value"] == "hung" and told.message.startswith("stalled: hung: pid ")
        assert told.extra["evidence"][-1] == "the process runs on the CPU while the step does not move"
        await poll(lambda: any(s.stalled for s in run.fleet.snapshot().pod("p").sessions))
        assert not run.kinds("alert", alert="hung") and not run.kinds("resumed")
        assert not (work / "resumed_from").exists()
