"""Jobs: pods as the nodes of one training run (issue 18, part 1).

The end-to-end test runs three real sshd pods (three tmux servers), a stdlib trainer
per rank launched with the rank placeholders filled, rank 1 made slow and rank 2
frozen after a few steps; the Fleet follows them and the summary names the straggler
and the hung rank. The table test reads summaries of snapshots built directly.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.jobs import actions, summary
from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, PodState, SessionSnapshot
from tests.support.pinning import trust
from tests.support.sshd import SshdServer

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]

TRAINER = """\
import os, sys, time
rank, nnodes, master = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print("rank=%d nnodes=%d master=%s%s" % (rank, nnodes, master, "".join(" " + a for a in sys.argv[4:])),
      flush=True)
pause = {0: 0.05, 1: 0.25}.get(rank, 0.05)
for step in range(1, 100001):
    print("step %d/100000 loss %.4f" % (step, 2.0 / step ** 0.5), flush=True)
    if rank == 2 and step >= 5:
        time.sleep(3600)  # the hung rank: alive, silent
    time.sleep(pause)
"""
COMMAND = "python3 -u trainer.py {rank} {nnodes} {master_addr}:{master_port}"


def _job(name: str, pods: list[str], session: str = "train") -> dict:
    return {"name": name, "pods": pods, "session": session, "master_port": 29511}


def _pod(name: str, state: str, step: int | None, rate: float | None, *, stalled: bool = False,
         loss: float | None = 1.0, gpus: int = 8, spend: float | None = 1.5) -> PodSnapshot:
    progress = Progress(step=step, total=1000, rate=rate, loss=loss, eta_s=None if not rate else (1000 - step) / rate)
    return PodSnapshot(name=name, host=name, state=state, spend_usd=spend,
                       gpus=tuple(GpuSample(index=i, name="H100") for i in range(gpus)),
                       sessions=(SessionSnapshot(name="train", state="running", progress=progress,
                                                 stalled=stalled),))


@pytest.mark.parametrize("rates, stalled, flags", [
    ((2.0, 2.0, 2.0, 2.0), (), {}),
    ((2.0, 2.1, 1.5, 2.0), (), {2: summary.STRAGGLER}),          # 1.5 < 0.8 x 2.0
    ((2.0, 2.1, 1.7, 2.0), (), {}),                               # 1.7 >= 1.6: not yet
    ((2.0, 2.0, 2.0, None), (3,), {3: summary.HUNG}),
    ((2.0, 0.5, 2.0, 2.0), (2,), {1: summary.STRAGGLER, 2: summary.HUNG}),
])
def test_stragglers_and_hung_ranks_are_named(rates, stalled, flags):
    config_job = parse_config(yaml.safe_dump({
        "pods": [{"name": f"n{i}", "host": f"h{i}", "sessions": [{"name": "train", "command": "run"}]}
                 for i in range(4)],
        "jobs": [_job("big", [f"n{i}" for i in range(4)])]}), Path("c.yaml")).jobs[0]
    pods = tuple(_pod(f"n{i}", PodState.ONLINE, 100 + i * 10, r, stalled=i in stalled) for i, r in enumerate(rates))
    s = summary.summarize(config_job, FleetSnapshot(pods=pods))
    assert {r.rank: r.flag for r in s.findings} == flags
    assert (s.nodes_online, s.gpus, s.step_skew, s.spend_usd) == (4, 32, 30, 6.0)
    moving = [r for i, r in enumerate(rates) if r is not None and i not in stalled]
    assert s.pace == (0.0 if summary.HUNG in flags.values() else min(moving))
    assert all(f["pod"] == f"n{f['rank']}" and f["gpus"] == 8 for f in s.to_json()["findings"])


def test_one_rank_alone_is_never_a_straggler():
    config = parse_config(yaml.safe_dump({
        "pods": [{"name": "n0", "host": "h0", "sessions": [{"name": "train", "command": "run"}]}],
        "jobs": [_job("one", ["n0"])]}), Path("c.yaml"))
    s = summary.summarize(config.jobs[0], FleetSnapshot(pods=(_pod("n0", PodState.OFFLINE, 5, 0.1),)))
    assert s.findings == () and s.nodes_online == 0 and s.step_skew is None


def test_summary_is_read_again_when_a_rank_changes_not_another_pod():
    """The summary is kept per job with its ranks' snapshots (the Fleet publishes one per
    pod's news): another pod's news gives the same summary, a rank's news a new one."""
    config = parse_config(yaml.safe_dump({
        "pods": [{"name": n, "host": n, "sessions": [{"name": "train", "command": "run"}]} for n in ("n0", "n1", "x")],
        "jobs": [_job("two", ["n0", "n1"])]}), Path("c.yaml"))
    job = config.jobs[0]
    n0, n1 = _pod("n0", PodState.ONLINE, 100, 2.0), _pod("n1", PodState.ONLINE, 100, 2.0)
    first = summary.summarize(job, FleetSnapshot(pods=(n0, n1, _pod("x", PodState.ONLINE, 5, 1.0))))
    other_news = summary.summarize(job, FleetSnapshot(pods=(n0, n1, _pod("x", PodState.ONLINE, 6, 1.0))))
    assert other_news is first
    slow = summary.summarize(job, FleetSnapshot(pods=(n0, _pod("n1", PodState.ONLINE, 90, 1.0))))
    assert (slow.pace, slow.step_skew, slow.ranks[1].flag) == (1.0, 10, summary.STRAGGLER)
    gone = summary.summarize(job, FleetSnapshot(pods=(n0,)))
    assert (gone.nodes_online, gone.ranks[1].online) == (1, False)


async def test_three_ranks_launched_in_order_straggler_and_hung_named(sshd, sshd_fresh, tmp_path_factory, tmp_path):
    with SshdServer(env={"HOME": str(tmp_path_factory.mktemp("pod-home"))}) as third:
        servers = [sshd, sshd_fresh, third]
        for server in servers:
            trust(server)
            (Path(server.session_env["HOME"]) / "trainer.py").write_text(TRAINER)
        pods = [s.pod_entry(f"node{i}", sessions=[{"name": "train", "command": COMMAND,
                                                   "workdir": s.session_env["HOME"]}])
                for i, s in enumerate(servers)]
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("llm", ["node0", "node1", "node2"])],
                                        "policies": {"alerts": {"stall_minutes": 0.05}}}, sort_keys=False))
        config = parse_config(path.read_text(), path)
        job = config.jobs[0]
        async with Fleet(config) as fleet:
            try:
                launched = await actions.launch(job, config, fleet.borrow)
                assert [r.pod for r in launched] == ["node0", "node1", "node2"]
                for rank in range(len(servers)):
                    first = await _first_line(fleet, f"node{rank}", launched[rank].log_path)
                    assert first == f"rank={rank} nnodes=3 master=127.0.0.1:29511"

                found = await _until_named(fleet, job)
                assert {r.rank: r.flag for r in found.findings} == {1: summary.STRAGGLER, 2: summary.HUNG}
                assert (found.slowest_rank, found.pace) == (2, 0.0), "a hung rank holds the job"
                assert found.nodes_online == 3 and found.gpus == 6
                assert found.ranks[1].rate < summary.STRAGGLER_RATIO * found.ranks[0].rate
                doc = found.to_json()
                assert json.loads(json.dumps(doc))["findings"][1] == {"rank": 2, "pod": "node2",
                                                                       "flag": "hung rank", "gpus": 2,
                                                                       "local_rank": None, "global_rank": None}
            finally:
                killed = await actions.kill(job, fleet.borrow)
        assert [(pod, k.existed) for pod, k in killed] == [("node2", True), ("node1", True), ("node0", True)]


async def _first_line(fleet: Fleet, pod: str, log_path: str) -> str:
    async with asyncio.timeout(30):
        while True:
            async with fleet.borrow(pod) as t:
                result = await t.run(f"head -n 1 {log_path} 2>/dev/null")
            if result.stdout.strip():
                return result.stdout.strip()
            await asyncio.sleep(0.2)


async def _until_named(fleet: Fleet, job) -> summary.JobSummary:
    """The first summary naming both a straggler and a hung rank (the Fleet decides when)."""
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(60):
            async for snap in sub:
                found = summary.summarize(job, snap)
                if {r.flag for r in found.findings} == {summary.STRAGGLER, summary.HUNG}:
                    return found
    finally:
        sub.close()
    raise AssertionError("unreachable")


def test_status_json_lists_the_job_as_one_unit(sshd, tmp_path, capsys):
    from tui.cli import main

    trust(sshd)
    # A session name no other test uses on the shared pod: no log of theirs is read here.
    pods = [sshd.pod_entry(f"n{i}", sessions=[{"name": "pair-status", "command": COMMAND}]) for i in range(2)]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("pair", ["n0", "n1"], "pair-status")]},
                                   sort_keys=False))
    assert main(["--config", str(path), "status", "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (job["kind"], job["name"], job["nodes"], job["nodes_online"], job["gpus"]) == ("job", "pair", 2, 2, 4)
    assert [r["pod"] for r in job["ranks"]] == ["n0", "n1"] and job["findings"] == []


def test_teardown_of_a_job_waits_for_the_guard_on_every_node(sshd, tmp_path, capsys, monkeypatch):
    from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
    from tui.cli import main

    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    trust(sshd)
    fake = FakeRunPod({f"pod{i}": runpod_pod(f"pod{i}") for i in range(3)}, settle=0)
    with ProviderServer(fake) as server:
        pods = []
        for i in range(3):
            workdir = tmp_path / f"node{i}"
            (workdir / "ckpt").mkdir(parents=True)
            pods.append(sshd.pod_entry(f"n{i}", sessions=[{"name": "train", "command": COMMAND, "workdir": str(workdir),
                                                           "checkpoints": ["ckpt/*.pt"]}],
                                       provider={"type": "runpod", "id": f"pod{i}", "api_url": server.url}))
        (tmp_path / "node2" / "ckpt" / "step_5.pt").write_bytes(b"weights")  # never downloaded
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("trio", ["n0", "n1", "n2"])]}, sort_keys=False))
        assert main(["--config", str(path), "jobs", "teardown", "trio", "--yes"]) == 1
        err = capsys.readouterr().err
        assert "not tearing down job 'trio': n2:" in err and "n0:" not in err
        assert [r for r in server.requests if r.method == "DELETE"] == [], "no node goes while one is refused"

        (tmp_path / "node2" / "ckpt" / "step_5.pt").unlink()
        assert main(["--config", str(path), "jobs", "teardown", "trio", "--yes"]) == 0
        assert "job 'trio' torn down: n0, n1, n2" in capsys.readouterr().out
        assert [r.path for r in server.requests if r.method == "DELETE"] == ["/v2/pods/pod0", "/v2/pods/pod1",
                                                                           "/v2/pods/pod2"]


def test_cli_launch_and_kill_a_job(sshd, sshd_fresh, tmp_path, capsys):
    from tui.cli import main

    for server in (sshd, sshd_fresh):
        trust(server)
        (Path(server.session_env["HOME"]) / "trainer.py").write_text(TRAINER)
    pods = [s.pod_entry(f"m{i}", sessions=[{"name": "train", "command": COMMAND, "workdir": s.session_env["HOME"]}])
            for i, s in enumerate((sshd, sshd_fresh))]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("duo", ["m0", "m1"])]}, sort_keys=False))
    try:
        assert main(["--config", str(path), "jobs", "launch", "duo"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line.split(" (log")[0] for line in out] == ["rank 0: launched 'train' on m0",
                                                           "rank 1: launched 'train' on m1"]
        for rank, server in enumerate((sshd, sshd_fresh)):
            _wait_line(server, out[rank].split(" (log ")[1].rstrip(")"))
        assert main(["--config", str(path), "jobs", "logs", "duo", "-n", "1"]) == 0
        merged = capsys.readouterr().out.splitlines()
        assert [line.split("] ")[0] for line in merged] == ["[rank 0", "[rank 1"]
        assert all(" step " in line or "nnodes=2" in line for line in merged), merged
    finally:
        assert main(["--config", str(path), "jobs", "kill", "duo", "--yes"]) == 0
    assert capsys.readouterr().out.splitlines() == ["killed 'train' on m1", "killed 'train' on m0"]
    assert main(["--config", str(path), "jobs", "kill", "duo"]) == 2, "no terminal, no --yes: refused"


def test_jobs_command_prints_the_row_and_json(sshd, tmp_path, capsys):
    from tui.cli import main

    trust(sshd)
    pods = [sshd.pod_entry(f"n{i}", sessions=[{"name": "pair-list", "command": COMMAND}]) for i in range(2)]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("pair", ["n0", "n1"], "pair-list")]},
                                   sort_keys=False))
    assert main(["--config", str(path), "jobs"]) == 0
    assert capsys.readouterr().out.startswith("pair: 2/2 nodes, 4 GPUs, pace ")
    assert main(["--config", str(path), "jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"][0]["nodes_online"] == 2


def test_cli_resume_a_job_from_rank_0s_newest_checkpoint(sshd, sshd_fresh, tmp_path, capsys):
    from tui.cli import main

    homes = []
    for server in (sshd, sshd_fresh):
        trust(server)
        home = Path(server.session_env["HOME"])
        (home / "trainer.py").write_text(TRAINER)
        (home / "tune-ckpt").mkdir(exist_ok=True)
        homes.append(home)
    import os
    import time

    (homes[0] / "tune-ckpt" / "step_000010.pt").write_bytes(b"rank 0 weights")
    (homes[1] / "tune-ckpt" / "step_000020.pt").write_bytes(b"rank 1 is ahead: not what rank 0 has")
    for home in homes:  # written a minute ago: complete, not "being written"
        for f in (home / "tune-ckpt").iterdir():
            os.utime(f, (time.time() - 60, time.time() - 60))
    session = {"name": "tune", "command": COMMAND, "resume": COMMAND + " --from {checkpoint}",
               "checkpoints": ["tune-ckpt/*.pt"]}
    pods = [s.pod_entry(f"m{i}", sessions=[{**session, "workdir": str(homes[i])}])
            for i, s in enumerate((sshd, sshd_fresh))]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods, "jobs": [_job("duo", ["m0", "m1"], "tune")]}, sort_keys=False))
    cli = ["--config", str(path), "jobs"]
    try:
        assert main([*cli, "resume", "duo"]) == 0
        out = capsys.readouterr().out
        ckpt = str(homes[0] / "tune-ckpt" / "step_000010.pt")
        assert out.startswith(f"job 'duo' resumed from {ckpt} (newest complete on rank 0)")
        for rank, server in enumerate((sshd, sshd_fresh)):
            log = out.split(f"rank {rank}: relaunched 'tune' on m{rank} (log ")[1].split(")")[0]
            first = _wait_line(server, log)
            assert first == f"rank={rank} nnodes=2 master=127.0.0.1:29511 --from {ckpt}"
        assert main([*cli, "resume", "duo"]) == 1
        assert "job 'duo' still runs on m0, m1" in capsys.readouterr().err
    finally:
        assert main([*cli, "kill", "duo", "--yes"]) == 0


def _wait_line(server, log: str) -> str:
    import subprocess
    import time

    path = log.replace("~", server.session_env["HOME"], 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = subprocess.run(["head", "-n", "1", path], capture_output=True, text=True)
        if done.stdout.strip():
            return done.stdout.strip()
        time.sleep(0.2)
    raise AssertionError(f"nothing in {path}")
