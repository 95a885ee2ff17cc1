"""Sessions as the Fleet sees them: live progress from followed logs, stall, adoption.

Real sshd, real tmux, the real agent following real files.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from tests.support.pinning import trust

pytestmark = pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")


@pytest.fixture(autouse=True)
def isolated_home(isolated_home, tmp_path, monkeypatch):
    # A local pod lists and adopts this machine's tmux sessions: keep the tests away
    # from the real user's tmux server.
    (tmp_path / "tmux").mkdir()
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path / "tmux"))
    return isolated_home


def fleet_for(server, tmp_path: Path, *, configured: bool = True, **session) -> Fleet:
    trust(server)
    entry = server.pod_entry("p")
    if configured:
        entry["sessions"] = [{"name": "train", "workdir": str(tmp_path), "log": "train.log", **session}]
    return Fleet(parse_config(yaml.safe_dump({"pods": [entry]}), tmp_path / "c.yaml"))


async def session_where(fleet: Fleet, name: str, predicate, timeout: float = 20.0):
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for snap in sub:
                for s in snap.pod("p").sessions:
                    if s.name == name and predicate(s):
                        return s
    finally:
        sub.close()


def pod_tmux(server, *args: str) -> None:
    command = " ".join(__import__("shlex").quote(a) for a in ("tmux", *args))
    subprocess.run(server.ssh_argv(command), check=True, env={**os.environ, **server.session_env})


async def test_progress_follows_a_live_log(sshd, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i}/1000 | loss {3 - i / 100:.3f} | tok/s 12,345\n" for i in range(1, 11)))
    async with fleet_for(sshd, tmp_path) as fleet:
        first = await session_where(fleet, "train", lambda s: s.progress and s.progress.step == 10)
        assert first.state == "absent" and first.configured and first.log == str(log)
        assert (first.progress.total, first.progress.format, first.progress.tokens_per_s) == (1000, "torchrun", 12345)
        with log.open("a") as fh:
            fh.write("step 11/1000 | loss 2.880 | tok/s 12,400\n")
        later = await session_where(fleet, "train", lambda s: s.progress and s.progress.step == 11)
        assert later.progress.loss == pytest.approx(2.88)


async def test_a_running_session_whose_step_stops_is_stalled(sshd, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step 1/100 | loss 2.0\n")
    pod_tmux(sshd, "new-session", "-d", "-s", "train", "sleep 120")
    try:
        # 0.02 minutes = 1.2 s without a new step.
        async with fleet_for(sshd, tmp_path, stall_minutes=0.02) as fleet:
            running = await session_where(fleet, "train", lambda s: s.state == "running" and s.progress)
            assert not running.stalled
            with log.open("a") as fh:
                fh.write("step 2/100 | loss 1.9\n")
            await session_where(fleet, "train", lambda s: s.progress.step == 2)
            stalled = await session_where(fleet, "train", lambda s: s.stalled)
            assert stalled.progress.step == 2
    finally:
        sshd.kill_tmux_sessions("train")


async def test_a_session_started_by_hand_is_adopted_and_its_output_followed(sshd, tmp_path):
    script = tmp_path / "loop.sh"
    script.write_text("i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo \"step $i | loss 1.5\"; sleep 0.2; done\n")
    pod_tmux(sshd, "new-session", "-d", "-s", "byhand", f"sh {script}")
    try:
        async with fleet_for(sshd, tmp_path, configured=False) as fleet:
            adopted = await session_where(fleet, "byhand", lambda s: s.progress and s.progress.step)
            assert adopted.state == "running" and not adopted.configured
            assert adopted.log == "~/.gpuctl/logs/byhand.log"
            later = await session_where(fleet, "byhand", lambda s: s.progress.step > adopted.progress.step + 2)
            assert later.progress.format == "torchrun"
    finally:
        sshd.kill_tmux_sessions("byhand")


async def test_fleet_actions_launch_and_kill_show_up_in_snapshots(tmp_path):
    from tests.support.sshd import SshdServer

    (tmp_path / "pod-home").mkdir()
    with SshdServer(env={"HOME": str(tmp_path / "pod-home")}) as server:
        server.start()
        fleet = fleet_for(server, tmp_path, command="echo started; sleep 60")
        async with fleet:
            await session_where(fleet, "train", lambda s: s.state == "absent")
            result = await fleet.launch("p", "train")
            assert result.name == "train"
            await session_where(fleet, "train", lambda s: s.state == "running")
            await fleet.kill("p", "train")
            await session_where(fleet, "train", lambda s: s.state == "absent")
            argv = fleet.attach_argv("p", "train")
            assert argv[:2] == ["ssh", "-t"] and str(server.port) in argv


async def test_a_local_pod_follows_its_session_logs_too(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step 5/50 | loss 1.25\n")
    config = parse_config(yaml.safe_dump({"pods": [{
        "name": "here", "host": "local",
        "sessions": [{"name": "train", "workdir": str(tmp_path), "log": "train.log"}],
    }]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        sub = fleet.subscribe()
        try:
            async with asyncio.timeout(20):
                async for snap in sub:
                    session = next((s for s in snap.pod("here").sessions if s.name == "train"), None)
                    if session and session.progress and session.progress.step == 5:
                        break
            with log.open("a") as fh:
                fh.write("step 6/50 | loss 1.2\n")
            async with asyncio.timeout(20):
                async for snap in sub:
                    session = next(s for s in snap.pod("here").sessions if s.name == "train")
                    if session.progress.step == 6:
                        break
        finally:
            sub.close()
    assert session.log == str(log) and snap.pod("here").transport == "local"
