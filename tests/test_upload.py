"""`gpuctl upload` over the real loopback sshd and through the RunPod-style shell-only
proxy: files and folders byte-identical, resumed after kill -9, a damaged range on
the pod sent again, path traversal and existing files refused without --force.

Sizes are 2-40 MiB, not 200: enough for many ranges over several channels (4 MiB
ranges at these sizes), small enough to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from backends import range_state
from sessions.checkpoints import upload as up
from tests.support.files import put
from tests.test_download import MB, DropAt, Pod, fake_ssh, tree_bytes
from tests.test_download_proxied import EVERY_BYTE, ProxiedPod
from tests.support.shell_only_sshd import ShellOnlyServer
from tests.support.procs import end


@pytest.fixture(autouse=True)
def isolated(isolated_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_home


@pytest.fixture
def pod(sshd, tmp_path) -> Pod:
    return Pod(sshd, tmp_path)


async def send(pod, local, remote=None, **kwargs) -> up.UploadResult:
    return await up.upload(pod.config, "p", local, remote, **kwargs)


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith((".part", range_state.SUFFIX))]


def test_a_big_file_goes_up_in_parallel_identical_and_is_never_overwritten(pod, tmp_path, capsys):
    data = os.urandom(40 * MB + 99)
    local = put(tmp_path / "here" / "train.bin", data)
    seen = []
    result = asyncio.run(send(pod, local, progress=lambda d, t: seen.append(d)))  # default: the workdir
    remote = pod.workdir / "train.bin"
    assert (result.method, result.remote_path, result.transferred) == ("parallel", str(remote), len(data))
    assert remote.read_bytes() == data and no_leftovers(pod.workdir) and seen[-1] == len(data)
    # Already there: refused (exit 2) without --force, replaced with it.
    assert pod.cli("upload", "p", str(local)) == 2
    assert "already exists on pod 'p'; pass --force" in capsys.readouterr().err
    local.write_bytes(data[::-1])
    assert pod.cli("upload", "p", str(local), "--force") == 0
    captured = capsys.readouterr()
    assert "sha256 verified -> p:" in captured.out
    assert f"p <- {local}: train.bin (40M) landed" in captured.err.splitlines()  # a plain line per file
    assert remote.read_bytes() == data[::-1] and no_leftovers(pod.workdir)


async def test_a_folder_goes_up_identical_under_its_own_name(pod, tmp_path):
    files = {f"shard-{i:03d}.arrow": os.urandom(3 * MB + i) for i in range(3)}
    files.update({f"meta/{i}.json": b"{}" * i for i in range(20)})
    files.update({"empty": b"", "deep/er/x.txt": b"x"})
    src = tmp_path / "dataset"
    for rel, data in files.items():
        put(src / rel, data)
    dest = pod.workdir / "data"
    dest.mkdir()
    result = await send(pod, src, str(dest))
    assert result.remote_path == str(dest / "dataset") and result.files == len(files)
    assert tree_bytes(dest / "dataset") == files and no_leftovers(dest)
    # A new name where nothing is: the folder is renamed to it.
    again = await send(pod, src, str(dest / "copy"))
    assert tree_bytes(dest / "copy") == files and again.remote_path == str(dest / "copy")
    (tmp_path / "nothing").mkdir()  # an empty folder is a folder there too
    empty = await send(pod, tmp_path / "nothing", str(dest))
    assert (empty.files, list((dest / "nothing").iterdir())) == (0, [])


def test_traversal_is_refused(pod, tmp_path, capsys):
    src = tmp_path / "src"
    put(src / "ok.txt", b"ok")
    with pytest.raises(up.UploadRefused, match="path traversal"):
        asyncio.run(send(pod, src, str(pod.workdir / ".." / "elsewhere")))
    secret = put(tmp_path / "secret.txt", b"not for the pod")
    (src / "innocent.txt").symlink_to(secret)
    with pytest.raises(up.UploadRefused, match="leading outside"):
        asyncio.run(send(pod, src))
    assert not (pod.workdir / "src").exists()
    assert pod.cli("upload", "p", str(tmp_path / "missing")) == 2
    assert "does not exist" in capsys.readouterr().err
    # A symlink planted on the pod where the .part would go is not written through.
    (src / "innocent.txt").unlink()
    target = put(tmp_path / "pod-secret.txt", b"keep me")
    (pod.workdir / "src.part").mkdir()
    (pod.workdir / "src.part" / "ok.txt").symlink_to(target)
    with pytest.raises(up.UploadError, match="symlink"):
        asyncio.run(send(pod, src))
    assert target.read_bytes() == b"keep me"


def _upload_in_a_child(pod: Pod, local: Path, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "--config", str(pod.config_path), "upload", "p",
                             str(local)], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _recorded(part: Path) -> int:
    state = range_state.RangeState.load(part)
    return len(state.done) if state is not None else 0


async def test_kill_9_then_resume_sends_only_the_rest(pod, tmp_path):
    data = os.urandom(32 * MB)
    local = put(tmp_path / "here" / "big.bin", data)
    part = pod.workdir / "big.bin.part"
    rng = random.Random(15)
    for _ in range(3):
        wanted = rng.randrange(3)
        child = _upload_in_a_child(pod, local, tmp_path)
        try:
            deadline = time.monotonic() + 60  # a hang guard, not a speed test
            while _recorded(part) <= wanted and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.02))
            child.send_signal(signal.SIGKILL)
            child.communicate()
        finally:
            end(child)
        assert not (pod.workdir / "big.bin").exists(), "finished before the kill"
    kept = _recorded(part)
    assert kept > 0
    result = await send(pod, local)
    assert (pod.workdir / "big.bin").read_bytes() == data and no_leftovers(pod.workdir)
    assert result.resumed_from > 0 and result.resumed_from + result.transferred == len(data)


async def test_a_damaged_range_on_the_pod_is_sent_again(pod, tmp_path):
    data = os.urandom(24 * MB)
    local = put(tmp_path / "here" / "big.bin", data)
    drop = DropAt(12 * MB)
    from sessions.link.pod_link import open_transport

    async with open_transport(pod.config.pod("p"), pod.config.defaults) as runner:
        drop.runner = runner
        with pytest.raises(up.UploadError, match="run the same command again to resume"):
            await up.upload(pod.config, "p", local, progress=drop, runner=runner)
    part = pod.workdir / "big.bin.part"
    state = range_state.RangeState.load(part)
    assert state is not None and state.done
    victim = min(state.done)
    with open(part, "r+b") as fh:
        fh.seek(victim + 5)
        fh.write(b"\x00\xff")
    result = await send(pod, local)
    # Kept, the damaged range would have failed the file's SHA-256; the rest was kept
    # (ranges still in flight at the drop may have landed since the record was read).
    assert (pod.workdir / "big.bin").read_bytes() == data
    assert result.resumed_from > 0 and result.resumed_from + result.transferred == len(data)
    assert result.transferred >= state.length(victim)


@pytest.mark.requires_tools("ssh")
@pytest.mark.parametrize("ssh_works", [True, False])
async def test_on_a_near_link_a_big_file_goes_through_the_openssh_client(pod, tmp_path, monkeypatch, ssh_works):
    """Near (forced here: a busy machine can make loopback look far), a big file goes
    through the OpenSSH client; when that client fails, the channels carry it all.
    Either way the file is never held in memory here: the CRC-32 checks of what the pod
    answered, and the channels, read a MiB at a time (they once kept every range's
    bytes, the whole file, until the stream ended)."""
    import backends.transfer as transfer

    monkeypatch.setattr(transfer, "NEAR_RTT_S", 60.0)
    marker = tmp_path / "ssh-ran"
    body = f'echo ran >> "{marker}"\n' + ('exec "$REAL_SSH" "$@"' if ssh_works else "exit 255")
    fake_ssh(tmp_path, monkeypatch, body)
    data = os.urandom(33 * MB)
    local = put(tmp_path / "here" / "w.bin", data)
    tracemalloc.start()
    try:
        result = await send(pod, local)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Bounded by the channels (8 x a MiB read, and encrypted awaiting the socket), not
    # by the file: 17.5 MB here against 34.7 (ssh) and 40.6 (channels) before.
    assert peak < len(data) * 2 // 3
    assert marker.exists() and (pod.workdir / "w.bin").read_bytes() == data and no_leftovers(pod.workdir)
    assert result.transferred == len(data)


# ------------------------------------------------------------- RunPod's proxy


@pytest.fixture
async def proxied(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        yield ProxiedPod(server, tmp_path)
        assert server.exec_attempts == []  # through the shell only


async def test_through_a_shell_only_proxy_a_file_and_a_folder_go_up(proxied, tmp_path):
    data = os.urandom(MB + 5) + EVERY_BYTE  # two ranges through the shell
    local = put(tmp_path / "here" / "w.bin", data)
    result = await up.upload(proxied.config, "p", local)
    assert result.method == "pty" and (proxied.workdir / "w.bin").read_bytes() == data
    files = {"a.txt": b"a", "sub/b.bin": os.urandom(300_000), "odd name\n.txt": b"n"}
    for rel, body in files.items():
        put(tmp_path / "ds" / rel, body)
    await up.upload(proxied.config, "p", tmp_path / "ds")
    assert tree_bytes(proxied.workdir / "ds") == files and no_leftovers(proxied.workdir)
    with pytest.raises(up.UploadRefused, match="already exists"):
        await up.upload(proxied.config, "p", local)


async def test_a_pod_without_python3_is_told_plainly(sshd_nopython, tmp_path):
    pod = Pod(sshd_nopython, tmp_path)
    local = put(tmp_path / "here" / "x.bin", b"x")
    with pytest.raises(up.UploadError, match="no python3 on the pod"):
        await send(pod, local)


async def test_the_pod_hashes_while_ranges_land_and_a_wrong_early_hash_is_checked_again(pod, tmp_path, monkeypatch):
    """The pod's follower hashes each `.part` as its landed prefix grows, so no hash
    pass runs after the transfer; a digest taken on the way that differs (as when a
    range sent again after the follower read it) is hashed afresh, not called bad."""
    from backends import upload_transfer

    asked = []
    real_command = up.sha256_command
    monkeypatch.setattr(up, "sha256_command", lambda root, rels: asked.append(list(rels)) or real_command(root, rels))
    files = {f"part-{i}.bin": os.urandom(3 * MB + i) for i in range(3)}
    for rel, data in files.items():
        put(tmp_path / "here" / "ds" / rel, data)
    result = await send(pod, tmp_path / "here" / "ds")
    assert result.method == "parallel" and tree_bytes(pod.workdir / "ds") == files
    assert asked == []  # every digest came from the follower

    real_followed = upload_transfer.ParallelSender._followed

    async def one_wrong(proc, jobs):
        await real_followed(proc, jobs)
        jobs[1].pod_sha256 = "0" * 64

    monkeypatch.setattr(upload_transfer.ParallelSender, "_followed", staticmethod(one_wrong))
    result = await send(pod, tmp_path / "here" / "ds", force=True)
    assert tree_bytes(pod.workdir / "ds") == files and len(asked) == 1 and len(asked[0]) == 1
