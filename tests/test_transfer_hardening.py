"""Downloads that never write through a link, never leave a child behind, and say
when the local disk is full (issue 19, items 4, 10 and 12), over the real loopback
sshd.

* A symlink at `DEST/<name>.part`, at `DEST/<name>`, or a `.part` folder that is a
  link is refused, and what it points to stays byte-identical.
* New files follow the user's umask (mode 0o666 & ~umask), never the pod's mode.
* kill -9, SIGTERM or SIGHUP of a running `gpuctl download` ends its OpenSSH child
  too, so the `.part` and its lock are free and a rerun resumes.
* A full local disk is reported as such, on every transfer method.
"""

from __future__ import annotations

import os
import signal
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.transfer import PartWriter, TransferFailed
from sessions.checkpoints import index
from sessions.checkpoints import download as dl
from tests.support.files import OLD, age_tree, put
from tests.support.procs import alive, descendants
from tests.test_download import MB, Pod


@pytest.fixture(autouse=True)
def isolated(isolated_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_home


@pytest.fixture
def pod(sshd, tmp_path) -> Pod:
    return Pod(sshd, tmp_path)


def outside_file(tmp_path: Path, size: int = 2 * MB) -> tuple[Path, bytes]:
    """A file outside every DEST, standing for the user's own data a link points at."""
    data = os.urandom(size)
    path = put(tmp_path / "elsewhere" / "precious.bin", data)
    return path, data


# ------------------------------------------------------------------ symlinks


def test_the_part_writer_refuses_a_symlinked_part_and_leaves_its_target_alone(tmp_path):
    target, data = outside_file(tmp_path)
    part = tmp_path / "dest" / "step_1.pt.part"
    part.parent.mkdir()
    part.symlink_to(target)
    with pytest.raises(TransferFailed, match="refusing to write through the symlink .*step_1.pt.part"):
        PartWriter(part, 1000)  # smaller than the target: the old code truncated it to 0
    assert target.read_bytes() == data

    dangling = tmp_path / "dest" / "step_2.pt.part"
    dangling.symlink_to(tmp_path / "elsewhere" / "new-file")
    with pytest.raises(TransferFailed, match="symlink"):
        PartWriter(dangling, 1000)
    assert not (tmp_path / "elsewhere" / "new-file").exists()  # O_CREAT did not follow the link


def test_the_part_writer_refuses_a_fifo_instead_of_hanging(tmp_path):
    part = tmp_path / "step_1.pt.part"
    os.mkfifo(part)
    with pytest.raises(TransferFailed, match="not a regular file"):
        PartWriter(part, 1000)


async def test_a_symlink_at_the_part_file_is_refused_and_its_target_untouched(pod, tmp_path):
    put(pod.workdir / "step_20.pt", os.urandom(MB))
    target, data = outside_file(tmp_path)
    dest = tmp_path / "checkpoints" / "p" / "train"
    dest.mkdir(parents=True)
    (dest / "step_20.pt.part").symlink_to(target)
    with pytest.raises(dl.UnsafeCheckpoint, match="refusing to write through the symlink .*step_20.pt.part"):
        await pod.download()
    assert target.read_bytes() == data
    assert (dest / "step_20.pt.part").is_symlink() and not (dest / "step_20.pt").exists()
    assert index.load() == {}


async def test_a_symlinked_part_folder_is_refused_and_nothing_lands_behind_it(pod, tmp_path):
    ck = pod.workdir / "checkpoint-40"
    put(ck / "model.safetensors", os.urandom(MB))
    put(ck / "trainer_state.json", b"{}")  # the marker of a finished folder
    age_tree(ck)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine = put(elsewhere / "model.safetensors", b"the user's own file")
    dest = tmp_path / "checkpoints" / "p" / "train"
    dest.mkdir(parents=True)
    (dest / "checkpoint-40.part").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(dl.UnsafeCheckpoint, match="symlink .*checkpoint-40.part"):
        await pod.download()
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["model.safetensors"]


async def test_a_symlink_replacing_a_verified_copy_is_refused_not_renamed_over(pod, tmp_path):
    """Our own earlier copy, swapped for a link (to a folder inside DEST: one outside
    is refused by the name check already): the next version of the checkpoint is
    neither written nor renamed through it (the old code's rename failed with ENOTDIR)."""
    ck = pod.workdir / "checkpoint-40"
    put(ck / "model.safetensors", os.urandom(MB))
    put(ck / "trainer_state.json", b"{}")
    age_tree(ck)
    first = await pod.download()
    shutil.rmtree(first.local_path)
    elsewhere = first.local_path.parent / "mine"
    mine = put(elsewhere / "model.safetensors", b"the user's own file")
    first.local_path.symlink_to(elsewhere, target_is_directory=True)
    put(ck / "model.safetensors", os.urandom(MB), mtime=OLD + 60)  # rewritten on the pod
    os.utime(ck, (OLD + 60, OLD + 60))
    with pytest.raises(dl.UnsafeCheckpoint, match=f"symlink {first.local_path}"):
        await pod.download()
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("umask, mode", [(0o077, 0o600), (0o002, 0o664)])
async def test_downloaded_files_follow_the_umask_not_the_pod_mode(pod, tmp_path, umask, mode):
    pod_file = put(pod.workdir / "step_20.pt", os.urandom(MB))
    pod_file.chmod(0o777)
    old = os.umask(umask)
    try:
        result = await pod.download()
    finally:
        os.umask(old)
    assert stat.S_IMODE(result.local_path.stat().st_mode) == mode


# --------------------------------------------------------- orphaned children


def _state(pid: int) -> str:
    """The process state letter from /proc (R, S, T, Z, ...), "" when gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return stat_line[stat_line.rfind(b")") + 2:][:1].decode()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for(what: str, check, proc: subprocess.Popen | None = None, limit: float = 60.0):
    """Poll `check()` until it returns something true; a hang guard, not a speed test."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"gpuctl exited ({proc.returncode}) before {what}: {err.decode(errors='replace')}")
        time.sleep(0.01)
    pytest.fail(f"still waiting for {what} after {limit:.0f} s")


@pytest.mark.requires_tools("ssh")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
async def test_a_killed_gpuctl_download_leaves_no_ssh_child_and_a_rerun_resumes(pod, tmp_path, sig):
    """The OpenSSH client is put on PATH behind a wrapper that stops itself before it
    becomes ssh, so the kill always lands mid-transfer, holding the `.part` open."""
    data = os.urandom(40 * MB)  # large enough for the OpenSSH client method
    put(pod.workdir / "step_5.pt", data)
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    put(part, data[:MB])  # an earlier run's prefix: the rerun must resume after it
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    ssh = wrappers / "ssh"
    ssh.write_text(f'#!/bin/sh\nkill -STOP $$\nexec {shutil.which("ssh")} "$@"\n')
    ssh.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}"}
    # The OpenSSH method by name: "auto" takes it only on a near link, and a busy machine
    # can make loopback look far (backends.transfer.NEAR_RTT_S).
    code = ("import asyncio; from sessions.config.loader import load_config; "
            "from sessions.checkpoints.download import download_checkpoint; "
            f"asyncio.run(download_checkpoint(load_config({str(pod.config_path)!r}), 'p', 'train', method='ssh'))")
    gpuctl = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = None
    try:
        child = _wait_for("its ssh child to start", lambda: next(
            (pid for pid in descendants(gpuctl.pid) if _comm(pid) == "ssh" and _state(pid) == "T"), None),
            gpuctl)
        os.kill(gpuctl.pid, sig)
        gpuctl.communicate()
        _wait_for("the ssh child to end with gpuctl", lambda: not alive(child))
    finally:
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)  # the old code's orphan: do not leak it
        if gpuctl.poll() is None:
            gpuctl.kill()
            gpuctl.communicate()
    result = await pod.download(method="ssh")
    assert (result.resumed_from, result.local_path.read_bytes() == data) == (MB, True)


# ------------------------------------------------------------- full local disk


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real full disk (needs root, as CI runs; elsewhere a skip)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot mount a 1 MiB tmpfs here (root needed): {done.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("method", [pytest.param("ssh", marks=pytest.mark.requires_tools("ssh")), "stream", "sftp"])
async def test_a_full_local_disk_is_named_as_such_and_keeps_a_clean_prefix(pod, small_disk, method):
    data = os.urandom(3 * MB)
    put(pod.workdir / "step_20.pt", data)
    with pytest.raises(dl.TransferInterrupted) as caught:
        await pod.download(dest=small_disk, method=method)
    message = str(caught.value)
    assert f"no space left on the local disk at {small_disk}" in message, message
    assert "needed " in message and "free " in message and "on the pod" not in message
    kept = (small_disk / "step_20.pt.part").read_bytes()
    assert 0 < len(kept) < len(data) and kept == data[:len(kept)]
