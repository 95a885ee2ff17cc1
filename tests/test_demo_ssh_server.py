"""The demo pods' SSH server: loopback only, one key, commands as on a pod, PTYs, SFTP kept
inside the sandbox, and a stop that takes everything it started with it.

A real asyncssh client against the real server; tmux where tmux is used.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import asyncssh
import pytest

from backends.agent_command import build_agent_command
from backends.demo.gpu_sim import PodGpus
from backends.demo.sandbox import Sandbox, socket_path_fits
from backends.demo.ssh_server import PodSshServer
from tests.support.procs import alive

USER = getpass.getuser()


@pytest.fixture
async def pod(tmp_path):
    root = tmp_path / "demo"
    short = None
    if not socket_path_fits(root / "p" / "t"):
        short = Path(tempfile.mkdtemp(prefix="gpuctl-test-", dir="/tmp"))
    sandbox = Sandbox("p", root / "p", root, short)
    sandbox.create()
    PodGpus("p", "rtx4090", 1, sandbox.gpu_state, sandbox.heartbeat).tick()
    client = asyncssh.generate_private_key("ssh-ed25519")
    host = asyncssh.generate_private_key("ssh-ed25519")
    server = PodSshServer(sandbox, host, asyncssh.import_public_key(client.export_public_key()), USER)
    await server.start()
    try:
        yield SimpleNamespace(server=server, sandbox=sandbox, client=client, host=host)
    finally:
        await server.stop()
        sandbox.kill_tmux()
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


def known_hosts(pod) -> asyncssh.SSHKnownHosts:
    return asyncssh.import_known_hosts(
        f"[127.0.0.1]:{pod.server.port} {pod.host.export_public_key().decode().strip()}\n")


def connect(pod, **options):
    settings = dict(port=pod.server.port, username=USER, client_keys=[pod.client], known_hosts=known_hosts(pod),
                    agent_path=None)
    settings.update(options)
    return asyncssh.connect("127.0.0.1", **settings)


async def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)




async def test_it_listens_on_loopback_only(pod):
    assert {address[0] for address in pod.server.addresses} == {"127.0.0.1"}


@pytest.mark.parametrize("options", [
    {"client_keys": [asyncssh.generate_private_key("ssh-ed25519")]},  # any other key
    {"username": "not-" + USER},                                       # the demo key, another user
    {"client_keys": None, "password": "hunter2"},                      # no password logins at all
])
async def test_only_the_demo_key_of_the_local_user_gets_in(pod, options):
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(pod, **options)


async def test_commands_run_in_the_pods_environment(pod):
    sandbox = pod.sandbox
    async with connect(pod) as conn:
        result = await conn.run('pwd; echo "$HOME|$TMUX_TMPDIR|$GPUCTL_SIM_GPU_STATE"; command -v nvidia-smi; '
                                "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; exit 7")
        assert result.exit_status == 7
        assert result.stdout.splitlines() == [
            str(sandbox.home), f"{sandbox.home}|{sandbox.tmux_dir}|{sandbox.gpu_state}",
            str(sandbox.bin / "nvidia-smi"), "NVIDIA GeForce RTX 4090, 24564 MiB",
        ]
        # No NVML on a demo pod, even where this machine has real GPUs: the agent must
        # read the simulated nvidia-smi.
        nvml = await conn.run("python3 -c 'import pynvml'")
        assert nvml.exit_status == 1 and "no NVIDIA driver libraries" in nvml.stderr
        echoed = await conn.run("cat; echo oops >&2", input="hello\n")
        assert (echoed.stdout, echoed.stderr, echoed.exit_status) == ("hello\n", "oops\n", 0)
        killed = await conn.run("kill -TERM $$")
        assert killed.exit_signal[0] == "TERM"


async def test_gpuctls_agent_runs_there_and_reads_the_simulated_gpus(pod):
    async with connect(pod) as conn:
        process = await conn.create_process(build_agent_command({"interval": 0.2, "tmux": False}))
        hello = json.loads(await asyncio.wait_for(process.stdout.readline(), 15))
        sample = json.loads(await asyncio.wait_for(process.stdout.readline(), 15))
        process.close()
    assert hello["kind"] == "hello" and hello["gpu_source"] != "nvml"
    assert [g["name"] for g in sample["gpus"]] == ["NVIDIA GeForce RTX 4090"]


async def test_closing_the_channel_ends_the_command(pod):
    async with connect(pod) as conn:
        process = await conn.create_process("echo $$; exec sleep 300")
        pid = int(await asyncio.wait_for(process.stdout.readline(), 10))
        assert alive(pid)
        process.close()
        await until(lambda: not alive(pid), 10, "the command to end with its channel")


async def test_a_terminal_is_a_real_pty_that_follows_window_changes(pod):
    async with connect(pod) as conn:
        process = await conn.create_process('tty; echo "$TERM"; stty size; read line; stty size',
                                            term_type="xterm-256color", term_size=(100, 30))
        lines = [(await asyncio.wait_for(process.stdout.readline(), 10)).strip() for _ in range(3)]
        assert lines[0].startswith("/dev/") and lines[1:] == ["xterm-256color", "30 100"]
        process.change_terminal_size(120, 40)
        await asyncio.sleep(0.2)
        process.stdin.write("\n")
        output = await asyncio.wait_for(process.stdout.read(), 10)
        assert output.split()[-2:] == ["40", "120"]
        result = await process.wait()
        assert result.exit_status == 0


async def test_sftp_serves_the_sandbox_and_refuses_the_rest(pod, tmp_path):
    home = pod.sandbox.home
    (home / "inside.txt").write_text("checkpoint bytes")
    (home / "escape").symlink_to("/etc")
    async with connect(pod) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == str(home)
        await sftp.get("inside.txt", str(tmp_path / "got.txt"))
        await sftp.get(str(home / "inside.txt"), str(tmp_path / "abs.txt"))
        assert (tmp_path / "got.txt").read_text() == (tmp_path / "abs.txt").read_text() == "checkpoint bytes"
        await sftp.put(str(tmp_path / "got.txt"), "uploaded.txt")
        assert (home / "uploaded.txt").read_text() == "checkpoint bytes"
        for outside in ("/etc/passwd", "../../../..", "escape/hostname"):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.stat(outside)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.symlink("/etc/passwd", "link")


async def test_stop_drops_connections_and_start_comes_back_on_the_same_port_and_key(pod):
    conn = await connect(pod)
    port = pod.server.port
    await pod.server.stop()
    await asyncio.wait_for(conn.wait_closed(), 10)
    with pytest.raises(OSError):
        await connect(pod)
    assert await pod.server.start() == port
    async with connect(pod) as again:  # the same pinned host key still verifies
        assert (await again.run("echo back")).stdout == "back\n"


@pytest.mark.requires_tools("tmux")
async def test_a_tmux_server_outlives_its_command_until_the_pod_ends_it(pod):
    async with connect(pod) as conn:
        started = await conn.run("tmux new-session -d -s train 'sleep 300'")
        assert started.exit_status == 0, started.stderr
        listed = await conn.run("tmux list-sessions -F '#{session_name}'")
        assert listed.stdout == "train\n"
    assert pod.sandbox.tmux_sockets()
    pod.sandbox.kill_tmux()
    async with connect(pod) as conn:
        assert (await conn.run("tmux list-sessions")).exit_status != 0
