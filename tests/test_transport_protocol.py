"""One test-suite for the `Transport` protocol, run against every implementation.

ssh: exec channels on the real OpenSSH sshd fixture; pty: the shell-only server that
behaves like RunPod's proxy (tests/support/shell_only_sshd.py); local: `sh -c` here.
All three run as this user, so a temporary folder is the same place for each.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import asyncssh
import pytest

from backends.ssh import FailureKind, SshFailure
from backends.transfer import LocalHasher
from backends.transport import (LocalTransport, PtyTransport, SshTransport, Transport,
                                TransportUnsupported)
from tests.support.shell_only_sshd import ShellOnlyServer

KINDS = ("ssh", "pty", "local")


@pytest.fixture(params=KINDS)
async def transport(request, tmp_path):
    kind = request.param
    if kind == "local":
        yield LocalTransport()
        return
    if kind == "ssh":
        sshd = request.getfixturevalue("sshd")
        async with asyncssh.connect(**sshd.connect_kwargs()) as conn:
            t = SshTransport(conn)
            yield t
            t.close()
        return
    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        async with asyncssh.connect("127.0.0.1", server.port, username="pod1-64410abc", known_hosts=None,
                                    client_keys=None, agent_path=None, password=None, config=None) as conn:
            t = await PtyTransport.open(conn)
            yield t
            t.close()
        assert server.exec_attempts == []  # the PTY transport never asks for exec


async def test_it_is_a_transport(transport):
    assert isinstance(transport, Transport)
    assert transport.kind in KINDS


async def test_run_returns_output_and_exit_status_without_raising(transport):
    ok = await transport.run("printf 'a\\nb\\n'")
    assert ok.ok and ok.stdout == "a\nb\n"
    failed = await transport.run("echo oops >&2; exit 3")
    assert failed.exit_status == 3 and not failed.ok
    assert "oops" in failed.stdout + failed.stderr  # a PTY has one stream for both


async def test_run_times_out_as_an_ssh_failure(transport):
    with pytest.raises(SshFailure) as caught:
        await transport.run("sleep 5", timeout=0.5)
    assert caught.value.kind in (FailureKind.TIMEOUT, FailureKind.LOST)


async def test_a_local_timeout_ends_what_the_command_started(tmp_path):
    """`host: local`: a command that times out is ended with what it started (its
    process group), so a child holding the pipes neither outlives it nor keeps the
    caller waiting past the limit (a `sleep 300` child kept `run` for its 300 s)."""
    pid_file = tmp_path / "pid"
    with pytest.raises(SshFailure) as caught:
        await LocalTransport().run(f"sleep 300 & echo $! > {shlex.quote(str(pid_file))}; wait", timeout=0.5)
    assert caught.value.kind == FailureKind.TIMEOUT
    pid = int(pid_file.read_text())
    for _ in range(100):  # the kernel delivers SIGKILL to the group; init reaps the orphan
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1][0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the command's child still runs")


async def test_a_non_utf8_name_survives_the_round_trip(transport, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    os.close(os.open(os.path.join(os.fsencode(folder), b"ck-\xff\x80.pt"), os.O_CREAT | os.O_WRONLY, 0o600))
    listed = await transport.run(f"ls {shlex.quote(str(folder))}")
    name = listed.stdout.strip()
    assert name.encode("utf-8", "surrogateescape") == b"ck-\xff\x80.pt"
    again = await transport.run(f"ls -- {shlex.quote(str(folder / name))}")
    assert again.ok, again


async def test_stream_yields_every_byte_in_order(transport, tmp_path):
    data = bytes(range(256)) * 64 + b"tail without newline"
    path = tmp_path / "blob"
    path.write_bytes(data)
    got = bytearray()
    async for chunk in transport.stream(f"cat {shlex.quote(str(path))}"):
        assert isinstance(chunk, bytes)
        got += chunk
    assert bytes(got) == data


async def test_stream_gives_output_as_it_comes_not_at_the_end(transport, tmp_path):
    """A follow (`gpuctl logs -f`) must show a line before the command ends."""
    gate = tmp_path / "gate"
    command = f"echo first; while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; echo second"
    stream = transport.stream(command)
    got = b""
    while b"first" not in got:  # the command is still waiting for the gate here
        got += await asyncio.wait_for(stream.__anext__(), 20)
    gate.touch()
    async for chunk in stream:
        got += chunk
    assert got == b"first\nsecond\n"


async def test_stream_of_a_failing_command_raises_after_its_output(transport):
    got = bytearray()
    with pytest.raises(SshFailure) as caught:
        async for chunk in transport.stream("printf partial; exit 4"):
            got += chunk
    assert caught.value.kind == FailureKind.COMMAND
    assert bytes(got) == b"partial"


async def test_read_file_reads_a_byte_range(transport, tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 8
    path.write_bytes(data)
    assert await transport.read_file(str(path)) == data
    assert await transport.read_file(str(path), 100, 50) == data[100:150]
    assert await transport.read_file(str(path), 2000) == data[2000:]


async def test_read_file_of_a_missing_file_is_a_command_failure(transport, tmp_path):
    with pytest.raises(SshFailure) as caught:
        await transport.read_file(str(tmp_path / "nope"))
    assert caught.value.kind == FailureKind.COMMAND and "nope" in caught.value.message


async def test_write_file_writes_bytes_and_mode(transport, tmp_path):
    path = tmp_path / "out dir" / "w.bin"
    path.parent.mkdir()
    data = bytes(range(256)) * 4
    await transport.write_file(str(path), data, mode=0o640)
    assert path.read_bytes() == data
    assert (path.stat().st_mode & 0o777) == 0o640
    assert await transport.read_file(str(path)) == data


async def test_write_file_where_it_cannot_is_a_command_failure(transport, tmp_path):
    with pytest.raises(SshFailure) as caught:
        await transport.write_file(str(tmp_path / "no-such-dir" / "x"), b"x")
    assert caught.value.kind == FailureKind.COMMAND


async def test_fetcher_moves_a_file_or_says_why_it_cannot(transport, tmp_path):
    source = tmp_path / "ckpt.pt"
    data = os.urandom(300_000)
    source.write_bytes(data)
    part = tmp_path / "here" / "ckpt.pt.part"
    part.parent.mkdir()
    if transport.kind == "local":
        with pytest.raises(TransportUnsupported):
            transport.fetcher()
        return
    hasher = LocalHasher(part).start()
    try:
        async with transport.fetcher() as fetcher:
            stats = await fetcher.fetch(str(source), part, len(data), hasher=hasher)
        digest = await hasher.result(len(data))
    finally:
        hasher.close()
    assert part.read_bytes() == data and stats.size == len(data)
    import hashlib
    assert digest == hashlib.sha256(data).hexdigest()


async def test_beside_runs_a_second_command_while_a_stream_holds_this_one(transport, tmp_path):
    gate = tmp_path / "gate"
    stream = transport.stream(f"echo go; while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done")
    assert (await asyncio.wait_for(stream.__anext__(), 20)).startswith(b"g")
    async with transport.beside() as other:
        result = await asyncio.wait_for(other.run("echo beside"), 20)
    assert result.stdout.strip() == "beside"
    gate.touch()
    async for _ in stream:
        pass


async def test_open_pty_gives_a_terminal_where_there_is_one(transport):
    if transport.kind == "local":
        with pytest.raises(TransportUnsupported):
            await transport.open_pty("true")
        return
    process = await transport.open_pty("tty; echo done-$((20+22))")
    out = b""
    while b"done-42" not in out:
        chunk = await asyncio.wait_for(process.stdout.read(4096), 20)
        if not chunk:
            break
        out += chunk
    process.close()
    assert b"/dev/" in out and b"done-42" in out
