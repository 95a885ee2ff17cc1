"""One pod link: actions ride the monitor's live connection, headless commands open one.

Connections are counted where they are accepted: the sshd fixture logs one
"Accepted publickey" line per authenticated connection (LogLevel INFO), so the counts
below are what the pod saw, not what gpuctl believes it did.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from tests.support.pinning import trust
from tests.support.shell_only_sshd import ShellOnlyServer
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "ssh"), pytest.mark.usefixtures("isolated_home")]


def accepted(server) -> int:
    return server.log_text().count("Accepted publickey")


def write_config(server, tmp_path: Path, work: Path) -> Path:
    trust(server)
    entry = server.pod_entry("a100", sessions=[{"name": "train", "workdir": str(work), "log": "train.log"}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}, sort_keys=False))
    return path


def checkpoint(work: Path, size: int) -> Path:
    work.mkdir(exist_ok=True)
    path = work / "step_100.pt"
    path.write_bytes(os.urandom(size))
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


async def until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_d_in_the_tui_while_connected_opens_no_new_connection(sshd, tmp_path, monkeypatch):
    from tui.app import make_app
    from tui.downloads import DONE
    from tui.screens.pod_screen import PodScreen
    from tui.widgets.checkpoint_list import CheckpointList

    monkeypatch.chdir(tmp_path)
    newest = checkpoint(tmp_path / "work", 3 << 20)
    config = parse_config((path := write_config(sshd, tmp_path, tmp_path / "work")).read_text(), path)
    before = accepted(sshd)
    app = make_app(config, state_file=tmp_path / "tui.json")
    async with app.run_test(size=(120, 36)) as pilot:
        await until(lambda: app.snapshot is not None and app.snapshot.pod("a100").state == "online", "pod online")
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, PodScreen), "pod screen")
        listing = app.screen.query_one(CheckpointList)
        await until(lambda: "step_100.pt" in str(listing.render()), "the checkpoint list")
        await pilot.press("d")
        await until(lambda: (s := app.actions.downloads.get(("a100", "train"))) and s.state == DONE,
                    "download done")
        handshakes = app.snapshot.pod("a100").attempts  # the monitor's (1, unless a slow machine made it reconnect)
    local = tmp_path / "checkpoints" / "a100" / "train" / "step_100.pt"
    assert local.read_bytes() == newest.read_bytes()
    # Listing and download went over channels of the monitor's connection: no handshake of their own.
    assert accepted(sshd) == before + handshakes, sshd.log_text(tail=20)


async def test_fleet_actions_borrow_the_live_connection_and_a_drop_waits_for_them(sshd, tmp_path):
    config = parse_config((path := write_config(sshd, tmp_path, tmp_path)).read_text(), path)
    before = accepted(sshd)
    async with Fleet(config) as fleet:
        await fleet.wait_settled(30)
        link = fleet.links["a100"]
        assert link.connected
        async with fleet.borrow("a100") as transport:
            live = link._live
            link.release(live)  # the monitor lets go (an agent restart) while an action runs
            assert (await transport.run("echo still here")).stdout.strip() == "still here"
        assert live.is_closed()  # closed once the action returned
    assert accepted(sshd) >= before + 1
    assert accepted(sshd) - before == fleet._monitors["a100"].snapshot.attempts


def test_headless_download_opens_exactly_one_connection(sshd, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    newest = checkpoint(tmp_path / "work", 2 << 20)  # small: SFTP on the same connection
    path = write_config(sshd, tmp_path, tmp_path / "work")
    before = accepted(sshd)
    assert main(["download", "a100", "train", "--config", str(path)]) == 0, capsys.readouterr()
    assert (tmp_path / "checkpoints" / "a100" / "train" / "step_100.pt").read_bytes() == newest.read_bytes()
    assert accepted(sshd) == before + 1


def test_a_large_headless_download_adds_only_the_openssh_client(sshd, tmp_path, monkeypatch, capsys):
    """Files of 32 MiB and more go through the OpenSSH client (`backends.transfer`: less
    client CPU per GiB), a second process and so a second connection, by design."""
    monkeypatch.chdir(tmp_path)
    newest = checkpoint(tmp_path / "work", 33 << 20)
    path = write_config(sshd, tmp_path, tmp_path / "work")
    before = accepted(sshd)
    assert main(["download", "a100", "train", "--config", str(path)]) == 0, capsys.readouterr()
    assert (tmp_path / "checkpoints" / "a100" / "train" / "step_100.pt").read_bytes() == newest.read_bytes()
    assert accepted(sshd) == before + 2


# ------------------------------------------------- logs on a shell-only proxied pod


@pytest.fixture
async def proxied(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    home = tmp_path / "pod-home"
    home.mkdir()
    work = tmp_path / "pod run"
    work.mkdir()
    async with ShellOnlyServer(home) as server:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": [{
            "name": "p", "host": "127.0.0.1", "port": server.port, "user": "pod1-64410abc",
            "host_key": "accept-new", "provider": {"type": "runpod", "id": "pod1", "ssh_proxy": True},
            "sessions": [{"name": "train", "workdir": str(work), "log": "train.log"}],
        }]}))
        yield server, path, work
        assert server.exec_attempts == []  # not one exec: the proxy offers none


@pytest.mark.requires_tools("bash")
async def test_logs_prints_the_last_lines_of_a_proxied_pod(proxied, capfd):
    server, path, work = proxied
    (work / "train.log").write_bytes(b"".join(b"step %d \xff\r\n" % i for i in range(1, 101)))
    status = await asyncio.to_thread(main, ["logs", "p", "train", "-n", "3", "--config", str(path)])
    out, err = capfd.readouterr()
    assert status == 0, err
    assert [line.split()[:2] for line in out.splitlines()] == [["step", "98"], ["step", "99"], ["step", "100"]]


@pytest.mark.requires_tools("bash")
async def test_logs_follow_on_a_proxied_pod_shows_appended_bytes(proxied):
    from sessions.tmux.log_stream import stream_log

    server, path, work = proxied
    log = work / "train.log"
    log.write_bytes(b"one\n")
    config = parse_config(path.read_text(), path)
    stream = stream_log(config.pod("p"), config.defaults, str(log), lines=5, follow=True)
    got = b""
    try:
        while b"one\n" not in got:
            got += await asyncio.wait_for(stream.__anext__(), 30)
        with log.open("ab") as fh:
            fh.write(b"two \x00\x1b[31m\n")
        while not got.endswith(b"two \x00\x1b[31m\n"):
            got += await asyncio.wait_for(stream.__anext__(), 30)
    finally:
        await stream.aclose()
    assert got == b"one\ntwo \x00\x1b[31m\n"
