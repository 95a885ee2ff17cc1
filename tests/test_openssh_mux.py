"""Big transfers on a far link as sessions of one OpenSSH ControlMaster
(`backends.openssh_mux`), over the real loopback sshd and the real `ssh` client:
downloads and uploads byte-identical through it, one more connection and no more,
no child or socket directory left behind (a kill -9 included), and asyncssh's
channels carrying everything when the master cannot log in.

Loopback is a near link, so the `far` fixture says every link is far
(`NEAR_RTT_S` = 0) and a transfer big from 8 MiB (`MUX_MIN_BYTES`): the path taken
is then exactly the one a 50 ms link takes, without a relay's time in the suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from backends import parallel_transfer, range_state, transfer
from sessions.checkpoints import upload as up
from tests.support.files import age_tree, put
from tests.test_download import MB, Pod, fake_ssh, tree_bytes
from tests.test_pod_link import accepted
from tests.support.procs import end

pytestmark = pytest.mark.requires_tools("ssh")


@pytest.fixture(autouse=True)
def isolated(isolated_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_home


@pytest.fixture
def far(monkeypatch):
    monkeypatch.setattr(transfer, "NEAR_RTT_S", 0.0)
    monkeypatch.setattr(parallel_transfer, "MUX_MIN_BYTES", 8 * MB)


@pytest.fixture
def pod(sshd, tmp_path) -> Pod:
    return Pod(sshd, tmp_path)


def mux_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"gpuctl-mux-{pid}-*"))


def ssh_children_of(pid: int) -> list[str]:
    """Command lines of running `ssh` processes that use `pid`'s socket directory."""
    mark = f"gpuctl-mux-{pid}-".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


async def test_a_far_download_goes_through_one_openssh_master_and_lands_identical(pod, tmp_path, sshd, far):
    big = os.urandom(20 * MB + 7)
    put(pod.workdir / "step_1.pt", os.urandom(100))
    put(pod.workdir / "step_2.pt", big)
    age_tree(pod.workdir)
    before = accepted(sshd)
    result = await pod.download()
    # One connection for gpuctl's link, one for the master: its sessions are channels of it.
    assert (result.method, result.local_path.read_bytes() == big) == ("parallel-ssh", True)
    assert accepted(sshd) - before == 2, sshd.log_text(tail=20)
    assert not ssh_children_of(os.getpid()) and not mux_dirs(os.getpid())
    assert not list(result.local_path.parent.glob("*" + range_state.SUFFIX))


async def test_a_far_folder_download_goes_through_the_master_too(pod, far):
    ck = pod.workdir / "output" / "checkpoint-9"
    files = {f"model-{i}.safetensors": os.urandom(4 * MB + i) for i in range(3)}
    files.update({f"rng_{i}.pth": os.urandom(9000 + i) for i in range(12)})
    files.update({"trainer_state.json": b'{"global_step": 9}', "config.json": b"{}", "empty": b""})
    for rel, data in files.items():
        put(ck / rel, data)
    age_tree(ck)
    result = await pod.download()
    assert result.method == "parallel-ssh" and tree_bytes(result.local_path) == files


async def test_a_far_upload_goes_through_the_master_and_lands_identical(pod, tmp_path, sshd, far):
    data = os.urandom(18 * MB + 5)
    local = put(tmp_path / "here" / "data.bin", data)
    before = accepted(sshd)
    result = await up.upload(pod.config, "p", local, None)
    assert (result.method, result.transferred) == ("parallel-ssh", len(data))
    assert (pod.workdir / "data.bin").read_bytes() == data
    assert accepted(sshd) - before == 2, sshd.log_text(tail=20)
    assert not [p for p in pod.workdir.rglob("*") if p.name.endswith((".part", range_state.SUFFIX))]
    assert not ssh_children_of(os.getpid()) and not mux_dirs(os.getpid())


async def test_a_master_that_cannot_log_in_leaves_it_to_asyncssh_channels(pod, tmp_path, monkeypatch, far):
    """A key only asyncssh can use, a client too old...: `ssh` fails, the transfer does
    not (the channels of gpuctl's own connection carry it, as before the master)."""
    marker = tmp_path / "ssh-ran"
    fake_ssh(tmp_path, monkeypatch, f'echo ran >> "{marker}"\necho "Permission denied (publickey)." >&2\nexit 255')
    data = os.urandom(12 * MB)
    put(pod.workdir / "step_3.pt", data)
    down = await pod.download()
    local = put(tmp_path / "here" / "up.bin", data[::-1])
    sent = await up.upload(pod.config, "p", local, None)
    assert marker.exists()  # the master was tried
    assert (down.method, down.local_path.read_bytes() == data) == ("parallel", True)
    assert (sent.method, (pod.workdir / "up.bin").read_bytes() == data[::-1]) == ("parallel", True)


def _download_in_a_child(pod: Pod, tmp_path: Path) -> subprocess.Popen:
    code = ("import asyncio; from backends import parallel_transfer, transfer; "
            "transfer.NEAR_RTT_S = 0.0; parallel_transfer.MUX_MIN_BYTES = 1; "
            "from sessions.config.loader import load_config; "
            "from sessions.checkpoints.download import download_checkpoint; "
            f"c = load_config({str(pod.config_path)!r}); "
            "asyncio.run(download_checkpoint(c, 'p', 'train'))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_kill_9_mid_transfer_leaves_no_ssh_and_the_rerun_finishes(pod, tmp_path, far):
    data = os.urandom(32 * MB)
    put(pod.workdir / "step_5.pt", data)
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    child = _download_in_a_child(pod, tmp_path)
    try:
        deadline = time.monotonic() + 60  # a hang guard, not a speed test
        while child.poll() is None and time.monotonic() < deadline:
            state = range_state.RangeState.load(part) if part.exists() else None
            if state is not None and len(state.done) >= 2 and ssh_children_of(child.pid):
                break
            await asyncio.sleep(0.005)
        assert child.poll() is None, child.communicate()[1].decode()[-2000:]
        assert ssh_children_of(child.pid), "the transfer did not go through the master"
        child.send_signal(signal.SIGKILL)
        child.communicate()
    finally:
        end(child)
    deadline = time.monotonic() + 10  # the kernel's SIGKILL to the children (PR_SET_PDEATHSIG)
    while ssh_children_of(child.pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not ssh_children_of(child.pid)
    assert mux_dirs(child.pid)  # nothing could remove it...
    result = await pod.download()
    assert not mux_dirs(child.pid)  # ...until the next transfer swept it
    assert result.local_path.read_bytes() == data and result.resumed_from > 0
    assert result.resumed_from + result.transferred == len(data)


@pytest.fixture
def two_session_pod(tmp_path_factory, tmp_path, monkeypatch):
    """A pod whose sshd allows two sessions per connection (`MaxSessions 2`), asked for
    eight (as a link of 70 ms and more would)."""
    from tests.conftest import _server

    monkeypatch.setattr(parallel_transfer, "channels_for", lambda rtt, window=0: parallel_transfer.MAX_CHANNELS)
    servers = _server(tmp_path_factory, extra_config=["MaxSessions 2"])
    server = next(servers)
    try:
        yield Pod(server, tmp_path)
    finally:
        servers.close()


async def test_sessions_the_pod_refuses_leave_their_ranges_to_the_others(two_session_pod, tmp_path, far):
    """A pod's sshd may allow fewer sessions per connection than the transfer opens
    (MaxSessions): a session the master is refused is opened by its `ssh` as a
    connection of its own (OpenSSH's own fallback; 5 channels here took 5 connections
    in all, gpuctl's link included), so the transfer still completes, both ways."""
    pod = two_session_pod
    data = os.urandom(16 * MB + 3)
    put(pod.workdir / "step_4.pt", data)
    down = await pod.download()
    assert (down.method, down.local_path.read_bytes() == data) == ("parallel-ssh", True)
    local = put(tmp_path / "here" / "up.bin", data[::-1])
    sent = await up.upload(pod.config, "p", local, None)
    assert (sent.method, (pod.workdir / "up.bin").read_bytes() == data[::-1]) == ("parallel-ssh", True)
