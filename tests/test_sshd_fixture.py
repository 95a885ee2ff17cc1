"""The sshd fixture is a real OpenSSH server, and the helpers fail the way networks do."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from tests.support.procs import alive
from tests.support.sshd import FALLBACK_TOOLS, SshdError, SshdServer


async def _run(server: SshdServer, command: str, **connect: object) -> asyncssh.SSHCompletedProcess:
    async with asyncssh.connect(**server.connect_kwargs(**connect)) as conn:
        return await conn.run(command, timeout=20)


async def test_asyncssh_connects_with_client_key_and_pinned_host_key(sshd, known_hosts_file):
    result = await _run(sshd, "id -un", known_hosts=str(known_hosts_file))
    assert result.exit_status == 0, result.stderr
    assert result.stdout.strip() == sshd.user


async def test_a_different_host_key_is_rejected(sshd, sshd_fresh, tmp_path):
    # Another server's key under this server's address: the pin must bite.
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {sshd_fresh.host_public_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await _run(sshd, "true", known_hosts=str(wrong))


def test_known_hosts_line_and_pod_entry(sshd):
    assert re.fullmatch(
        rf"\[127\.0\.0\.1\]:{sshd.port} ssh-ed25519 AAAA[A-Za-z0-9+/=]+", sshd.known_hosts_line()
    )
    entry = sshd.pod_entry("a100-box", port=2222)
    assert entry == {
        "name": "a100-box",
        "host": "127.0.0.1",
        "port": 2222,
        "user": sshd.user,
        "identity": str(sshd.client_key),
        "host_key": "strict",
    }
    assert Path(entry["identity"]).is_file()


async def test_nvidia_smi_on_path_is_the_simulator(sshd):
    result = await _run(sshd, "nvidia-smi --query-gpu=name --format=csv,noheader")
    assert result.exit_status == 0, result.stderr
    assert result.stdout.splitlines() == ["NVIDIA A100-SXM4-80GB"] * 2


async def test_set_gpus_changes_what_nvidia_smi_reports(sshd_fresh):
    sshd_fresh.set_gpus([{"index": 0, "name": "NVIDIA H100 80GB HBM3", "temperature.gpu": "[N/A]"}])
    query = "nvidia-smi --query-gpu=index,name,temperature.gpu --format=csv,noheader"
    result = await _run(sshd_fresh, query)
    assert result.stdout.splitlines() == ["0, NVIDIA H100 80GB HBM3, [N/A]"]

    sshd_fresh.set_gpus([], fail="no-devices")
    result = await _run(sshd_fresh, query)
    assert result.exit_status != 0
    assert "No devices were found" in result.stdout + result.stderr


async def test_session_environment_is_controlled(sshd):
    """PATH is exactly the fixture's: no ~/.bashrc (pyenv, cargo...) got to prepend to it."""
    result = await _run(sshd, 'echo "$PATH"; echo "$GPUCTL_SIM_GPU_STATE"; command -v nvidia-smi')
    path, state, smi = result.stdout.splitlines()
    assert path == sshd.session_path
    assert path.split(":")[0] == str(sshd.bin_dir)
    assert state == str(sshd.gpu_state_path)
    assert smi == str(sshd.bin_dir / "nvidia-smi")
    assert (await _run(sshd, "command -v python3")).exit_status == 0


async def test_sftp_round_trip(sshd, tmp_path):
    local = tmp_path / "ckpt.bin"
    local.write_bytes(bytes(range(256)) * 1024)
    remote = f"{sshd.dir}/sftp-{time.monotonic_ns()}.bin"
    async with asyncssh.connect(**sshd.connect_kwargs()) as conn:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), remote)
            assert (await sftp.stat(remote)).size == local.stat().st_size
            await sftp.get(remote, str(tmp_path / "back.bin"))
            await sftp.remove(remote)
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


async def test_nopython_pod_has_no_python_but_has_the_fallback_tools(sshd_nopython):
    assert (await _run(sshd_nopython, "command -v python3")).exit_status != 0
    assert (await _run(sshd_nopython, "command -v python")).exit_status != 0
    checks = " && ".join(f"command -v {tool} >/dev/null" for tool in FALLBACK_TOOLS)
    result = await _run(sshd_nopython, checks)
    assert result.exit_status == 0, result.stderr
    result = await _run(sshd_nopython, "nvidia-smi --query-gpu=index --format=csv,noheader")
    assert result.stdout.split() == ["0", "1"], result.stderr


async def test_nvidia_smi_false_means_none_on_path(tmp_path):
    with SshdServer(nvidia_smi=False) as server:
        assert (await _run(server, "command -v nvidia-smi")).exit_status != 0
        assert (await _run(server, "command -v python3")).exit_status == 0


async def test_stop_drops_connections_and_start_reuses_port(sshd_fresh):
    port = sshd_fresh.port
    conn = await asyncssh.connect(**sshd_fresh.connect_kwargs())
    try:
        sshd_fresh.stop()
        await asyncio.wait_for(conn.wait_closed(), 5)
    finally:
        conn.close()
    with pytest.raises(OSError):
        await _run(sshd_fresh, "true")
    sshd_fresh.start()
    assert sshd_fresh.port == port
    assert (await _run(sshd_fresh, "echo back")).stdout == "back\n"


async def test_stop_can_keep_connections_like_a_service_restart(sshd_fresh):
    async with asyncssh.connect(**sshd_fresh.connect_kwargs()) as conn:
        sshd_fresh.stop(drop_connections=False)
        assert (await conn.run("echo still here", timeout=10)).stdout == "still here\n"
    sshd_fresh.start()


@pytest.mark.requires_tools("tmux")
async def test_tmux_sessions_survive_restart_and_close_kills_them():
    with SshdServer() as server:
        start = await _run(server, "tmux new-session -d -s train 'sleep 600' && tmux display -p '#{pid}'")
        assert start.exit_status == 0, start.stderr
        tmux_pid = int(start.stdout)
        server.stop()
        server.start()
        assert (await _run(server, "tmux has-session -t train")).exit_status == 0
        local = subprocess.run(
            ["tmux", "ls", "-F", "#{session_name}"], env=server.tmux_env(), capture_output=True, text=True
        )
        assert local.stdout.split() == ["train"]
    deadline = time.monotonic() + 5
    while alive(tmux_pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(tmux_pid)
    assert not server.dir.exists()


async def test_many_concurrent_connections_and_sessions(sshd):
    # Beyond OpenSSH's defaults (MaxStartups 10:30:100, MaxSessions 10).
    conns = await asyncio.gather(*(asyncssh.connect(**sshd.connect_kwargs()) for _ in range(40)))
    try:
        results = await asyncio.gather(*(c.run("echo ok", timeout=20) for c in conns))
        assert [r.stdout for r in results] == ["ok\n"] * 40
        many = await asyncio.gather(*(conns[0].run(f"echo {i}", timeout=20) for i in range(20)))
        assert [r.stdout for r in many] == [f"{i}\n" for i in range(20)]
    finally:
        for c in conns:
            c.close()


@pytest.mark.requires_tools("ssh")
def test_openssh_client_reaches_it_too(sshd):
    done = subprocess.run(sshd.ssh_argv("echo", "hi"), capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr


def test_invalid_config_is_rejected_with_sshd_message():
    server = SshdServer(extra_config=["NoSuchOption yes"])
    try:
        with pytest.raises(SshdError, match="NoSuchOption"):
            server.start()
    finally:
        server.close()


async def test_silent_server_times_out_connect(silent_server):
    started = time.monotonic()
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        await asyncssh.connect(
            silent_server.host, silent_server.port, known_hosts=None, connect_timeout=1
        )
    assert time.monotonic() - started < 5
    assert silent_server.accepted >= 1


async def test_refused_port_refuses(refused_port):
    with pytest.raises(OSError):  # ConnectionRefusedError is one
        await asyncssh.connect("127.0.0.1", refused_port, known_hosts=None, connect_timeout=5)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", refused_port)
