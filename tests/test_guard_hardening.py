"""The teardown guard and "already downloaded" judge content, and see checkpoints in progress.

Issue 19, items 2 and 7, against the real loopback `sshd` (the pod's files are written
by the test straight into a temp workdir):

* Item 7: "verified" used to mean (path, size, mtime). A pod file rewritten with the
  same size and its mtime set back, or a local copy overwritten with as many bytes of
  garbage, still counted: the guard let teardown destroy the only good copy, and
  `download` said "already downloaded". Now both compare SHA-256, re-hashing a side
  whenever its stat stamp (size, mtime, ctime, inode) moved.
* Item 2: the guard looked only at the newest *complete* checkpoint, so a newer one
  still being written (a Hugging Face `checkpoint-N/` without `trainer_state.json`)
  was silently lost. Now anything newer than the newest verified copy refuses, by name.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sessions.checkpoints import index
from sessions.checkpoints import verify as checkpoint_verify
from sessions.checkpoints import teardown_guard
from sessions.checkpoints import download as dl
from sessions.checkpoints.listing import list_checkpoints
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from tests.support.files import OLD, age_tree, put
from tests.support.pinning import trust
from tests.support.shell_only_sshd import ShellOnlyServer

pytestmark = pytest.mark.usefixtures("isolated_home")


class Pod:
    """A pod (the shared sshd) with one session `train` whose workdir the test fills."""

    def __init__(self, server, tmp_path: Path):
        self.workdir = tmp_path / "pod work"
        self.workdir.mkdir()
        trust(server)
        entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(self.workdir)}])
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": [entry]}))
        self.config = parse_config(path.read_text(), path)
        self.pod = self.config.pod("p")
        self.dest = tmp_path / "local"

    async def download(self, name: str | None = None) -> dl.DownloadResult:
        return await dl.download_checkpoint(self.config, "p", "train", name, self.dest)

    async def guard(self) -> tuple[bool, str]:
        return await teardown_guard.check(self.config, self.pod)


@pytest.fixture
def pod(sshd, tmp_path, monkeypatch) -> Pod:
    monkeypatch.chdir(tmp_path)
    return Pod(sshd, tmp_path)


def hf_checkpoint(root: Path, step: int, *, finished: bool = True) -> Path:
    """A Hugging Face Trainer folder, dated an hour back; unfinished: no trainer_state.json."""
    folder = root / f"checkpoint-{step}"
    put(folder / "model.safetensors", os.urandom(20_000))
    put(folder / "optimizer.pt", os.urandom(5_000))
    if finished:
        put(folder / "trainer_state.json", b'{"global_step": %d}' % step)
    age_tree(folder)
    return folder


# -------------------------------------------------------------- item 7: content


async def test_a_pod_file_rewritten_with_same_size_and_mtime_is_no_longer_verified(pod):
    put(pod.workdir / "step_400.pt", b"A" * 50_000)
    first = await pod.download()
    assert await pod.guard() == (True, f"session train: step_400.pt verified at {first.local_path}")

    put(pod.workdir / "step_400.pt", b"B" * 50_000, mtime=OLD)  # same size, mtime set back
    ok, note = await pod.guard()
    assert (ok, note) == (False, ("session train's newest checkpoint step_400.pt has no verified local copy "
                                 "(its content on the pod differs from the verified copy's)"))

    again = await pod.download()
    assert (again.skipped, again.transferred) == (False, 50_000)
    assert again.local_path.read_bytes() == b"B" * 50_000
    assert (await pod.guard())[0] is True


async def test_a_local_copy_overwritten_with_same_size_garbage_is_not_verified(pod):
    put(pod.workdir / "step_400.pt", os.urandom(50_000))
    local = (await pod.download()).local_path
    stat = local.stat()
    local.write_bytes(b"\0" * 50_000)
    os.utime(local, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the local mtime put back

    ok, note = await pod.guard()
    assert (ok, note) == (False, ("session train's newest checkpoint step_400.pt has no verified local copy "
                                 f"(its local copy {local} no longer holds what was verified)"))
    listed = index.mark_verified(await listed_now(pod), index.host_identity(pod.pod, pod.config.defaults))
    assert [c.verified_local for c in listed] == [False]  # the cheap view agrees

    again = await pod.download()
    assert again.skipped is False
    assert local.read_bytes() == (pod.workdir / "step_400.pt").read_bytes()
    assert (await pod.guard())[0] is True


async def test_a_folder_checkpoint_with_one_file_rewritten_on_the_pod_is_fetched_again(pod):
    folder = hf_checkpoint(pod.workdir, 400)
    await pod.download()
    assert (await pod.guard())[0] is True
    put(folder / "optimizer.pt", os.urandom(5_000))  # same size
    age_tree(folder)  # every mtime as before
    ok, note = await pod.guard()
    assert ok is False and "checkpoint-400 has no verified local copy (its content on the pod differs" in note
    again = await pod.download()
    assert again.skipped is False
    assert (again.local_path / "optimizer.pt").read_bytes() == (folder / "optimizer.pt").read_bytes()
    assert (await pod.guard())[0] is True


async def test_an_unchanged_copy_costs_one_stat_and_a_harmless_change_one_hash(pod):
    """The pod-side cache: stamp unchanged -> the recorded hash is trusted (one command,
    no hash); a chmod moves ctime -> one hash on the pod, which matches, and the
    refreshed stamp makes the next check cheap again."""
    put(pod.workdir / "step_400.pt", os.urandom(50_000))
    await pod.download()
    async with open_transport(pod.pod, pod.config.defaults) as real:
        spy = Spy(real)
        [checkpoint] = await list_checkpoints(real, pod.pod, "train", settle=0)
        host = index.host_identity(pod.pod, pod.config.defaults)

        async def confirm():
            spy.commands.clear()
            entry, why = await checkpoint_verify.confirm(spy, checkpoint, index.entry_for(host, checkpoint))
            return entry is not None, why, sum("hashlib" in c for c in spy.commands)

        assert await confirm() == (True, "", 0)
        assert len(spy.commands) == 1
        os.chmod(pod.workdir / "step_400.pt", 0o600)  # ctime moves, content does not
        assert await confirm() == (True, "", 1)
        assert await confirm() == (True, "", 0)


async def test_an_index_entry_from_before_stamps_is_hashed_once_then_trusted(pod):
    put(pod.workdir / "step_400.pt", os.urandom(50_000))
    result = await pod.download()
    [entry] = index.load().values()
    index.record(replace(entry, pod_stamp="", local_stamp=""))
    assert (await pod.guard())[0] is True
    [refreshed] = index.load().values()
    assert refreshed.pod_stamp and refreshed.local_stamp == index.local_stamp(result.local_path)


@pytest.mark.requires_tools("bash", "base64")
async def test_through_a_shell_only_proxy_content_is_checked_the_same_way(tmp_path, monkeypatch):
    """RunPod's proxy gives one PTY shell and no exec: the stamps and the hashes go
    through it too, and a rewritten file is caught there as well."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    (tmp_path / "pod-home").mkdir()
    workdir = tmp_path / "pod run"
    folder = hf_checkpoint(workdir, 400)
    async with ShellOnlyServer(tmp_path / "pod-home") as server:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": [{
            "name": "p", "host": "127.0.0.1", "port": server.port, "user": "pod1-64410abc",
            "host_key": "accept-new", "provider": {"type": "runpod", "id": "pod1", "ssh_proxy": True},
            "sessions": [{"name": "train", "workdir": str(workdir)}]}]}))
        config = parse_config(path.read_text(), path)
        await dl.download_checkpoint(config, "p", "train")
        assert (await teardown_guard.check(config, config.pod("p")))[0] is True
        put(folder / "optimizer.pt", os.urandom(5_000))
        age_tree(folder)
        ok, note = await teardown_guard.check(config, config.pod("p"))
        assert ok is False and "(its content on the pod differs from the verified copy's)" in note
        assert server.exec_attempts == []


# --------------------------------------------------- item 2: newer, even unfinished


async def test_a_newer_checkpoint_still_being_written_refuses_and_is_named(pod):
    hf_checkpoint(pod.workdir, 400)
    await pod.download()
    assert (await pod.guard())[0] is True
    hf_checkpoint(pod.workdir, 500, finished=False)  # the Trainer writes trainer_state.json last
    assert await pod.guard() == (
        False, "session train: checkpoint-500 is still being written (newer than verified checkpoint-400)")


async def test_a_checkpoint_being_written_with_nothing_verified_refuses(pod):
    hf_checkpoint(pod.workdir, 100, finished=False)
    assert await pod.guard() == (False, "session train: checkpoint-100 is still being written")


async def test_an_abandoned_unfinished_checkpoint_older_than_the_verified_one_does_not_block(pod):
    hf_checkpoint(pod.workdir, 300, finished=False)  # a save that crashed long ago
    hf_checkpoint(pod.workdir, 400)
    local = (await pod.download()).local_path
    assert await pod.guard() == (True, f"session train: checkpoint-400 verified at {local}")


async def test_a_newer_complete_checkpoint_is_named_beside_the_verified_one(pod):
    put(pod.workdir / "step_400.pt", os.urandom(1000))
    await pod.download()
    put(pod.workdir / "step_500.pt", os.urandom(1000))
    hf_checkpoint(pod.workdir, 600, finished=False)
    assert await pod.guard() == (
        False, ("session train: checkpoint-600 is still being written (newer than verified step_400.pt); "
               "session train: step_500.pt is newer than the newest verified copy (step_400.pt)"))


# ------------------------------------------------------------------- helpers


class Spy:
    """A real runner that also notes every command it is asked to run."""

    def __init__(self, runner):
        self.runner = runner
        self.commands: list[str] = []

    async def run(self, command: str, *, timeout: float | None = None):
        self.commands.append(command)
        return await self.runner.run(command, timeout=timeout)


async def listed_now(pod: Pod):
    async with open_transport(pod.pod, pod.config.defaults) as runner:
        return await list_checkpoints(runner, pod.pod, "train", settle=0)
