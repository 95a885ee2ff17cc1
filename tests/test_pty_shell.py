"""gpuctl over a shell-only SSH server (RunPod's proxy): commands, files, the agent."""

from __future__ import annotations

import os
import shlex

import asyncssh
import pytest

from backends.pty_shell import PtyShell
from backends.ssh import SshFailure
from tests.support.shell_only_sshd import ShellOnlyServer

pytestmark = pytest.mark.requires_tools("bash")


@pytest.fixture
async def shell_server(tmp_path):
    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        yield server


async def connect(server: ShellOnlyServer) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", server.port, username="pod1-64410abc", known_hosts=None,
                                  client_keys=None, agent_path=None, password=None, config=None)


async def test_the_server_refuses_exec_like_runpods_proxy(shell_server):
    async with await connect(shell_server) as conn:
        result = await conn.run("echo hi", check=False)
    assert result.exit_status == 1 and shell_server.exec_attempts == ["echo hi"]


async def test_framed_commands_return_output_and_exit_status(shell_server):
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        ok = await shell.run("printf 'a\\nb\\n'; echo err >&2")
        failed = await shell.run("ls /nonexistent-dir-xyz")
        multi = await shell.run("for i in 1 2 3; do\n  echo line $i\ndone")
        quiet = await shell.run("true")
        stdin = await shell.run("cat")  # reads /dev/null, not gpuctl's next frame
        shell.close()
    assert (ok.exit_status, ok.stdout) == (0, "a\nb\nerr\n")
    assert failed.exit_status != 0 and "nonexistent-dir-xyz" in failed.stdout
    assert multi.stdout == "line 1\nline 2\nline 3\n"
    assert (quiet.exit_status, quiet.stdout) == (0, "")
    assert (stdin.exit_status, stdin.stdout) == (0, "")
    assert shell_server.exec_attempts == []


async def test_lines_too_long_for_a_terminal_are_refused_before_typing(shell_server):
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        with pytest.raises(ValueError):
            await shell.run("echo " + "x" * 5000)
        assert (await shell.run("echo still fine")).stdout == "still fine\n"


async def test_files_go_up_and_come_down_intact(shell_server):
    blob = os.urandom(300_000) + b"\r\n\x00\x1b[0m" * 10  # every byte value survives the PTY
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        await shell.put_file("ckpt.bin", blob)
        assert (await shell.run("stat -c %a ckpt.bin")).stdout == "600\n"
        got = bytearray()
        await shell.stream("cat ckpt.bin", got.extend)
    assert bytes(got) == blob and (shell_server.home / "ckpt.bin").read_bytes() == blob
    assert shell_server.exec_attempts == []


@pytest.mark.requires_tools("python3")
async def test_the_agent_streams_through_the_shell(shell_server):
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        agent = await shell.start_agent({"interval": 0.2, "disk_path": "~", "tmux": False})
        assert agent.hello["kind"] == "hello"
        kinds = []
        for _ in range(20):
            message = await agent.read()
            kinds.append(message.get("kind"))
            if message.get("kind") == "sample":
                break
        agent.send({"cmd": "interval", "seconds": 0.5})
        sample = message
        agent.close()
    assert "sample" in kinds
    assert sample.get("uptime_s") is not None
    assert shell_server.exec_attempts == []
    assert not list((shell_server.home).glob("*gpuctl-agent*"))


@pytest.mark.requires_tools("python3")
async def test_a_proxied_pod_is_monitored_without_a_single_exec(shell_server, tmp_path, monkeypatch):
    from sessions.config.loader import parse_config
    from sessions.fleet.facade import Fleet

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh of the person running the tests
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    config = parse_config(
        "pods:\n"
        f"  - {{name: proxied, host: 127.0.0.1, port: {shell_server.port}, user: pod1-64410abc,\n"
        "      host_key: accept-new, connect_timeout: 5,\n"
        "      provider: {type: runpod, id: pod1, ssh_proxy: true}}\n", tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        pod = (await fleet.wait_settled(timeout=30)).pod("proxied")
        runner = fleet._monitors["proxied"]._runner
        echoed = await runner.run("echo through the second shell") if runner else None
    assert (pod.state, pod.transport, pod.error) == ("online", "agent", None)
    assert pod.uptime_s is not None
    assert echoed is not None and echoed.stdout == "through the second shell\n"
    assert pod.provider_error.startswith("pod 'proxied': set RUNPOD_API_KEY to your RunPod API key")
    assert shell_server.exec_attempts == []


async def test_one_off_commands_on_a_proxied_pod_go_through_the_shell(shell_server, tmp_path, monkeypatch):
    """`gpuctl launch`/`kill` borrow the pod's link: on a proxied pod it must never try exec."""
    import yaml

    from sessions.config.loader import parse_config
    from sessions.link.pod_link import open_transport

    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config(yaml.safe_dump({"pods": [{
        "name": "proxied", "host": "127.0.0.1", "port": shell_server.port, "user": "pod1-64410abc",
        "host_key": "accept-new", "provider": {"type": "runpod", "id": "pod1", "ssh_proxy": True},
    }]}), tmp_path / "c.yaml")
    async with open_transport(config.pods[0], config.defaults) as runner:
        result = await runner.run("echo $((6 * 7))")
    assert (result.exit_status, result.stdout) == (0, "42\n")
    assert shell_server.exec_attempts == []


async def test_stream_hands_over_binary_output_intact_and_reports_failures(shell_server):
    blob = os.urandom(200_003) + bytes(range(256)) * 4
    (shell_server.home / "blob.bin").write_bytes(blob)
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        got = bytearray()
        assert await shell.stream("cat blob.bin", got.extend) == len(blob) and bytes(got) == blob
        tail = bytearray()
        await shell.stream("tail -c +100001 blob.bin", tail.extend)
        assert bytes(tail) == blob[100_000:]
        empty = bytearray()
        assert await shell.stream("true", empty.extend) == 0
        with pytest.raises(SshFailure, match="No such file") as failed:
            await shell.stream("cat missing.bin", got.extend)
        assert failed.value.kind == "command"
        assert (await shell.run("echo still usable")).stdout == "still usable\n"

        def full(data: bytes) -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            await shell.stream("cat blob.bin", full)
        with pytest.raises(SshFailure, match="closed"):  # the rest of the output was still coming
            await shell.run("true")
    assert shell_server.exec_attempts == []


async def test_commands_with_control_characters_are_typed_safely(shell_server):
    """^C typed raw would interrupt the shell, \\r would arrive as \\n, DEL would erase."""
    names = ["cr\rx", "ctl\x03x", "lnext\x16x", "del\x7fx", "eof\x04x"]
    for name in names:
        (shell_server.home / name).write_text(name)
    async with await connect(shell_server) as conn:
        shell = await PtyShell.open(conn)
        for name in names:
            result = await shell.run(f"cat -- {shlex.quote(name)}")
            assert (result.exit_status, result.stdout) == (0, name)
        # tools that check for a terminal print as over exec (GNU find escapes names on one)
        assert (await shell.run("find . -name 'cr*' -printf '%P'")).stdout == "cr\rx"
    assert shell_server.exec_attempts == []
