"""A headless command opens exactly one connection per pod; a reconnect goes through the link.

Connections are counted where they are accepted: the sshd fixture logs one
"Accepted publickey" line per authenticated connection (as in tests/test_pod_link.py),
so each count is what the pod saw. Every command below takes several steps on the pod
(kill: look, then kill; resume: list, look, launch; teardown: list and hash for the
guard), and all of them ride one connection: the command's `Fleet.for_command` link.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.errors import SshFailure
from sessions.fleet.facade import Fleet
from tests.support.pinning import trust
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
from tests.test_pod_link import accepted, until
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "ssh", "tmux"),
              pytest.mark.usefixtures("isolated_home")]

SESSION = "onelink"  # its own tmux name on the shared sshd


@pytest.fixture
def pod(sshd, tmp_path, monkeypatch):
    """(config path, workdir) of one pod on the shared sshd, with a finished checkpoint,
    a log, a command and a resume template; its tmux session is gone afterwards."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.log").write_bytes(b"".join(b"step %d\n" % i for i in range(1, 21)))
    ckpt = work / "step_100.pt"
    ckpt.write_bytes(os.urandom(1 << 20))
    old = time.time() - 3600
    os.utime(ckpt, (old, old))
    trust(sshd)
    entry = sshd.pod_entry("a100", sessions=[{
        "name": SESSION, "workdir": str(work), "log": "train.log", "checkpoints": ["step_*.pt"],
        "command": "sleep 300", "resume": "echo {checkpoint}; sleep 300"}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}, sort_keys=False))
    yield path, work
    main(["kill", "a100", SESSION, "--yes", "--config", str(path)])


def one_connection(sshd, argv: list[str], capsys) -> str:
    """Run `gpuctl argv`, assert it succeeded on exactly one new connection; its stdout."""
    before = accepted(sshd)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert accepted(sshd) - before == 1, sshd.log_text(tail=20)
    return out


def test_checkpoints_and_logs_open_one_connection(sshd, pod, capsys):
    path, _ = pod
    assert "step_100.pt" in one_connection(sshd, ["checkpoints", "a100", SESSION, "--config", str(path)], capsys)
    assert one_connection(sshd, ["logs", "a100", SESSION, "-n", "2", "--config", str(path)],
                          capsys).splitlines() == ["step 19", "step 20"]


def test_resume_and_kill_open_one_connection_each(sshd, pod, capsys):
    path, _ = pod
    out = one_connection(sshd, ["resume", "a100", SESSION, "--config", str(path)], capsys)  # list, look, launch
    assert "from step_100.pt" in out
    out = one_connection(sshd, ["kill", "a100", SESSION, "--yes", "--config", str(path)], capsys)  # look, kill
    assert f"killed session {SESSION!r}" in out


def test_teardown_with_its_guard_opens_one_connection(sshd, pod, capsys, monkeypatch):
    path, _ = pod
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    one_connection(sshd, ["download", "a100", SESSION, "--config", str(path)], capsys)
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)
    with ProviderServer(fake) as server:
        config = yaml.safe_load(path.read_text())
        config["pods"][0]["provider"] = {"type": "runpod", "id": "pod1", "api_url": server.url}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        # The guard lists the session's checkpoints and hashes step_100.pt on the pod
        # (the verified copy must still match) before the provider is asked.
        out = one_connection(sshd, ["teardown", "a100", "--yes", "--config", str(path)], capsys)
    assert "is gone" in out and "step_100.pt verified" in out
    assert server.calls("DELETE")


async def test_a_reconnect_after_sshd_restarts_goes_through_the_link(sshd_fresh, tmp_path):
    trust(sshd_fresh)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [sshd_fresh.pod_entry("a100")]}))
    config = parse_config(path.read_text(), path)
    async with Fleet(config) as fleet:
        link = fleet.links["a100"]
        await until(lambda: fleet.snapshot().pod("a100").state == "online", "online")
        assert link.handshakes == 1
        await asyncio.to_thread(sshd_fresh.stop)
        await until(lambda: not link.connected, "the drop seen by the link")
        # An action while the pod is away fails at once, with the reason, not a hang.
        with pytest.raises(SshFailure) as refused:
            async with fleet.borrow("a100"):
                pass
        assert refused.value.kind == "refused" and refused.value.message
        await asyncio.to_thread(sshd_fresh.start)
        await until(lambda: fleet.snapshot().pod("a100").state == "online", "online again", timeout=90)
        assert link.handshakes == 2  # the monitor's connection came back through the link
        before = accepted(sshd_fresh)
        async with fleet.borrow("a100") as transport:  # and actions ride it again
            assert (await transport.run("echo back")).stdout == "back\n"
        assert accepted(sshd_fresh) == before


async def test_an_action_during_a_handshake_joins_it_and_fails_with_its_reason(silent_server, tmp_path):
    """A pod that accepts TCP but never answers: the monitor's handshake is in flight when
    an action borrows; the action waits for that one (no second connection) and fails
    with its timeout, bounded, instead of hanging or piling up handshakes."""
    from sessions.link.pod_link import PodLink

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [{"name": "slow", "host": silent_server.host, "port": silent_server.port,
                                              "host_key": "accept-new", "connect_timeout": 1}]}))
    config = parse_config(path.read_text(), path)
    link = PodLink(config.pod("slow"), config.defaults)
    monitor = asyncio.create_task(link.connect())
    await until(lambda: silent_server.accepted == 1, "the monitor's handshake under way")
    with pytest.raises(SshFailure) as failed:
        async with link.borrow():
            pass
    assert failed.value.kind == "timeout" and failed.value.message
    with pytest.raises(SshFailure):
        await monitor
    assert silent_server.accepted == 1 and link.handshakes == 0
    await link.aclose()
