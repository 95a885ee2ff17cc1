"""Checkpoint downloads from a pod behind RunPod's shell-only SSH proxy.

The pod is `tests.support.shell_only_sshd`: a real SSH server that gives a real
interactive `bash -i` on a PTY and refuses exec and SFTP, counting every attempt. So
each test also proves gpuctl never tried either. "Killing the transfer" closes the SSH
connection from the progress callback, as a dropped link would.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from backends.pty_shell import PtyShell
from backends.transport import PtyTransport
from backends.ssh import SshFailure, connect
from sessions.checkpoints import index
from sessions.checkpoints import download as dl
from sessions.link import pods
from sessions.checkpoints.listing import list_checkpoints
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from tests.support.shell_only_sshd import ShellOnlyServer
from tests.support.files import age_tree, put

pytestmark = pytest.mark.requires_tools("bash", "base64")

MB = 1024 * 1024
EVERY_BYTE = bytes(range(256)) * 64  # NUL, \r, \n, ^C, ^D, DEL, 0xff: nothing may be lost


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class ProxiedPod:
    """A pod config that reaches the shell-only server as a RunPod proxied pod."""

    def __init__(self, server: ShellOnlyServer, tmp_path: Path):
        self.server = server
        self.workdir = tmp_path / "pod run"
        self.workdir.mkdir()
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": [{
            "name": "p", "host": "127.0.0.1", "port": server.port, "user": "pod1-64410abc",
            "host_key": "accept-new", "provider": {"type": "runpod", "id": "pod1", "ssh_proxy": True},
            "sessions": [{"name": "train", "workdir": str(self.workdir)}],
        }]}))
        self.config = parse_config(path.read_text(), path)
        self.local = tmp_path / "checkpoints" / "p" / "train"

    async def download(self, name=None, progress=None, **kwargs) -> dl.DownloadResult:
        return await dl.download_checkpoint(self.config, "p", "train", name, None, progress, **kwargs)

    async def shell(self) -> PtyTransport:
        """A shell transport on a connection of its own (the caller closes `shell._conn`)."""
        conn = await connect(pods.ssh_target(self.config.pod("p"), self.config.defaults))
        return await PtyTransport.open(conn)


@pytest.fixture
async def pod(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh of the person running the tests
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        yield ProxiedPod(server, tmp_path)
        assert server.exec_attempts == []  # every test: not one exec, not one SFTP


async def test_a_file_comes_down_byte_identical_verified_and_indexed(pod):
    data = os.urandom(3 * MB + 17) + EVERY_BYTE
    put(pod.workdir / "step_10.pt", b"older")
    put(pod.workdir / "step_20.pt", data)
    seen: list[tuple[int, int]] = []
    result = await pod.download(progress=lambda d, t: seen.append((d, t)))
    local = pod.local / "step_20.pt"
    assert result.local_path == local and local.read_bytes() == data
    assert (result.method, result.transferred, result.resumed_from) == ("pty", len(data), 0)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (len(data), len(data)) and len(seen) > 3
    assert not local.with_name("step_20.pt.part").exists()
    [entry] = index.load().values()
    assert (entry.size, entry.local_path, entry.sha256) == (len(data), str(local), result.sha256)
    again = await pod.download()
    assert (again.skipped, again.transferred) == (True, 0)


async def test_a_folder_with_odd_names_comes_down_identical(pod):
    ck = pod.workdir / "output" / "checkpoint-40"
    files = {
        "model.safetensors": os.urandom(MB + 3) + EVERY_BYTE,
        "trainer_state.json": b'{"global_step": 40}',
        "global_step40/mp rank 00.pt": os.urandom(70_000),
        "new\nline.bin": b"n" * 100,
        "carriage\rreturn\x03ctrl.bin": b"c" * 57,  # typed raw, \r would become \n and ^C kill the shell
        "empty.txt": b"",
    }
    for rel, data in files.items():
        put(ck / rel, data)
    (ck / "link.safetensors").symlink_to("model.safetensors")
    age_tree(ck)
    result = await pod.download()
    local = pod.local / "output" / "checkpoint-40"
    expected = {**files, "link.safetensors": files["model.safetensors"]}
    assert result.local_path == local and tree_bytes(local) == expected
    assert (result.files, result.size, result.method) == (len(expected), sum(map(len, expected.values())), "pty")
    assert not local.with_name("checkpoint-40.part").exists()


async def test_the_listing_survives_the_terminal(pod):
    """NUL-separated records, tabs, newlines and \\r in names: a PTY without output
    processing passes every byte, and gpuctl's typed commands never carry a raw one."""
    names = ["step_1.pt", "step_2 sp ace.pt", "step_3 new\nline.pt", "step_4\ttab.pt", "step_5\rcr.pt"]
    for i, name in enumerate(names):
        put(pod.workdir / name, bytes([i]) * (i + 1))
    async with open_transport(pod.config.pod("p"), pod.config.defaults) as runner:
        assert runner.kind == "pty"
        found = await list_checkpoints(runner, pod.config.pod("p"), "train", settle=0)
    assert sorted((c.name, c.size) for c in found) == sorted((n, i + 1) for i, n in enumerate(names))
    result = await pod.download("step_5\rcr.pt")
    assert result.local_path.read_bytes() == bytes([4]) * 5


class DropAt:
    """A progress callback that closes the SSH connection once `limit` bytes landed."""

    def __init__(self, limit: int, shell: PtyTransport):
        self.limit = limit
        self.shell = shell
        self.dropped_at: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.dropped_at is None and done >= self.limit:
            self.dropped_at = done
            self.shell._conn.close()


async def test_a_dropped_connection_resumes_from_the_part_and_ends_identical(pod):
    data = os.urandom(6 * MB + 4321)
    put(pod.workdir / "step_5.pt", data)
    shell = await pod.shell()
    drop = DropAt(2 * MB, shell)
    with pytest.raises(dl.TransferInterrupted, match="run the same command again to resume"):
        await pod.download(progress=drop, runner=shell)
    with pytest.raises(SshFailure):  # the shell knows it is gone
        await shell.run("true")
    part = pod.local / "step_5.pt.part"
    kept = part.stat().st_size
    assert drop.dropped_at is not None and 2 * MB <= kept < len(data)
    assert part.read_bytes() == data[:kept]  # in order, no holes, no half-decoded line
    assert index.load() == {}
    result = await pod.download()
    assert (result.resumed_from, result.transferred, result.method) == (kept, len(data) - kept, "pty")
    assert result.local_path.read_bytes() == data and not part.exists()


async def test_a_preseeded_part_is_resumed_and_the_whole_file_verified(pod):
    data = os.urandom(2 * MB + 999)
    put(pod.workdir / "step_7.pt", data)
    part = put(pod.local / "step_7.pt.part", data[:MB + 5])
    result = await pod.download()
    assert (result.resumed_from, result.transferred) == (MB + 5, len(data) - MB - 5)
    assert result.local_path.read_bytes() == data and not part.exists()
    assert result.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_corrupted_part_is_caught_and_deleted_then_fetched_afresh(pod):
    data = os.urandom(2 * MB)
    put(pod.workdir / "step_5.pt", data)
    bad = bytearray(data[:MB])
    bad[12345] ^= 0xFF
    part = put(pod.local / "step_5.pt.part", bytes(bad))
    with pytest.raises(dl.VerificationFailed, match="SHA-256 mismatch.*was deleted"):
        await pod.download()
    assert not part.exists() and not (pod.local / "step_5.pt").exists()
    result = await pod.download()
    assert (result.resumed_from, result.local_path.read_bytes()) == (0, data)


async def test_refusals_hold_through_the_shell(pod, tmp_path):
    with pytest.raises(dl.DownloadUsageError, match="refusing checkpoint name"):
        await pod.download("../../etc/passwd")
    ck = pod.workdir / "checkpoint-1"
    put(ck / "trainer_state.json", b"{}")
    secret = put(tmp_path / "secret.txt", b"not yours")
    (ck / "innocent.bin").symlink_to(secret)
    age_tree(ck)
    with pytest.raises(dl.UnsafeCheckpoint, match="points outside the checkpoint"):
        await pod.download()
    assert not any(pod.local.rglob("*.bin")) if pod.local.exists() else True
    put(pod.workdir / "step_9.pt", b"nine")
    with pytest.raises(dl.DownloadUsageError, match="shell-only proxy"):
        await pod.download("step_9.pt", method="sftp")


async def test_without_a_second_shell_the_hash_runs_after_the_transfer(pod, monkeypatch):
    async def refused(self, *, timeout=20.0):
        raise SshFailure("lost", "administratively prohibited")

    monkeypatch.setattr(PtyShell, "sibling", refused)
    data = os.urandom(MB + 1)
    put(pod.workdir / "step_3.pt", data)
    result = await pod.download()
    assert result.local_path.read_bytes() == data and result.sha256 == hashlib.sha256(data).hexdigest()
