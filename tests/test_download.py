"""Checkpoint downloads over the real loopback sshd: files, folders, interrupted and
resumed transfers, corrupted `.part` files, refused names, the index, the CLI.

Checkpoints are a few MB of random bytes with mtimes an hour old (so the freshness
rule never decides by accident); "killing the transfer" closes the SSH connection
from the progress callback, as a dropped link would.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from backends.transfer import (LocalHasher, PartWriter, parse_sha256, sha256_command, sha256_file,
                               stream_command)
from sessions.checkpoints import index
from sessions.checkpoints import download as dl
from sessions.checkpoints.listing import UnsafeName, list_checkpoints
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from tui.cli import main
from tests.support.pinning import trust
from tests.support.files import OLD, age_tree, put

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)  # every MiB reaches the callback
    return home


class Pod:
    """The pod side of a test: its workdir and a config that reaches it."""

    def __init__(self, server, tmp_path: Path, **session):
        self.workdir = tmp_path / "pod run"
        self.workdir.mkdir()
        trust(server)
        entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(self.workdir), **session}])
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(yaml.safe_dump({"pods": [entry]}))
        self.config = parse_config(self.config_path.read_text(), self.config_path)

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config_path), *args])

    async def download(self, name=None, dest=None, progress=None, **kwargs) -> dl.DownloadResult:
        return await dl.download_checkpoint(self.config, "p", "train", name, dest, progress, **kwargs)

    async def listed(self):
        pod = self.config.pod("p")
        async with open_transport(pod, self.config.defaults) as runner:
            return await list_checkpoints(runner, pod, "train", settle=0)


@pytest.fixture
def pod(sshd, tmp_path) -> Pod:
    return Pod(sshd, tmp_path)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------- files


@pytest.mark.parametrize("method", [pytest.param("ssh", marks=pytest.mark.requires_tools("ssh")), "stream", "sftp"])
async def test_download_a_file_verified_then_skipped(pod, tmp_path, method):
    data = os.urandom(3 * MB + 123)
    put(pod.workdir / "step_10.pt", os.urandom(1000))
    put(pod.workdir / "step_20.pt", data)
    seen = []
    result = await pod.download(progress=lambda d, t: seen.append((d, t)), method=method)
    local = tmp_path / "checkpoints" / "p" / "train" / "step_20.pt"
    assert result.local_path == local and local.read_bytes() == data
    assert not local.with_name("step_20.pt.part").exists()
    assert (result.skipped, result.size, result.transferred, result.resumed_from, result.method) == (
        False, len(data), len(data), 0, method)
    import hashlib
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (len(data), len(data)) and all(t == len(data) for _, t in seen)
    [entry] = index.load().values()
    assert (entry.remote_path, entry.size, entry.local_path) == (
        f"{os.path.realpath(pod.workdir)}/step_20.pt", len(data), str(local))
    again = await pod.download(method=method)
    assert (again.skipped, again.transferred, again.local_path) == (True, 0, local)
    listed = index.mark_verified(await pod.listed(), index.host_identity(pod.config.pod("p"), pod.config.defaults))
    assert [(c.name, c.verified_local) for c in listed] == [("step_20.pt", True), ("step_10.pt", False)]


async def test_download_a_named_checkpoint_into_dest(pod, tmp_path):
    put(pod.workdir / "step_10.pt", b"ten")
    put(pod.workdir / "step_20.pt", b"twenty")
    result = await pod.download("step_10.pt", dest=tmp_path / "here")
    assert result.local_path == tmp_path / "here" / "step_10.pt"
    assert result.local_path.read_bytes() == b"ten"


# -------------------------------------------------------------------- folders


async def test_download_a_folder_with_nested_files_and_an_inner_symlink(pod, tmp_path):
    ck = pod.workdir / "output" / "checkpoint-40"
    files = {
        "model.safetensors": os.urandom(2 * MB + 7),
        "optimizer.pt": os.urandom(MB),
        "trainer_state.json": b'{"global_step": 40}',
        "global_step40/mp_rank_00_model_states.pt": os.urandom(300_000),
        "global_step40/deep/er/zero_pp_rank_0.pt": os.urandom(5000),
        "empty.txt": b"",
    }
    for rel, data in files.items():
        put(ck / rel, data)
    (ck / "model-link.safetensors").symlink_to("model.safetensors")
    (ck / "inner-dir-link").symlink_to("global_step40")
    age_tree(ck)
    result = await pod.download()
    local = tmp_path / "checkpoints" / "p" / "train" / "output" / "checkpoint-40"
    assert result.local_path == local
    expected = {**files, "model-link.safetensors": files["model.safetensors"]}
    assert tree_bytes(local) == expected
    assert not local.is_symlink() and not (local / "model-link.safetensors").is_symlink()
    assert (result.files, result.size) == (len(expected), sum(len(d) for d in expected.values()))
    assert not local.with_name("checkpoint-40.part").exists()
    assert (await pod.download()).skipped


async def test_a_folder_with_a_symlink_leading_outside_is_refused(pod, tmp_path):
    ck = pod.workdir / "checkpoint-1"
    put(ck / "trainer_state.json", b"{}")
    secret = put(tmp_path / "secret.txt", b"not yours")
    (ck / "innocent.bin").symlink_to(secret)
    age_tree(ck)
    with pytest.raises(dl.UnsafeCheckpoint, match="points outside the checkpoint"):
        await pod.download()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").rglob("*.bin"))


# ------------------------------------------------------------ interrupt, resume


class DropAt:
    """A progress callback that closes the SSH connection once `limit` bytes landed."""

    def __init__(self, limit: int):
        self.limit = limit
        self.runner = None
        self.dropped_at = None

    def __call__(self, done: int, total: int) -> None:
        if self.dropped_at is None and done >= self.limit:
            self.dropped_at = done
            self.runner.conn.close()


@pytest.mark.parametrize("method", ["stream", "sftp"])
async def test_a_dropped_connection_resumes_from_the_part_and_ends_identical(pod, tmp_path, method):
    data = os.urandom(6 * MB + 4321)
    put(pod.workdir / "step_5.pt", data)
    pod_cfg = pod.config.pod("p")
    drop = DropAt(2 * MB)
    async with open_transport(pod_cfg, pod.config.defaults) as runner:
        drop.runner = runner
        with pytest.raises(dl.TransferInterrupted, match="run the same command again to resume"):
            await pod.download(progress=drop, runner=runner, method=method)
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    kept = part.stat().st_size
    assert 2 * MB <= kept < len(data)
    assert part.read_bytes() == data[:kept]  # in order, no holes
    assert not part.with_name("step_5.pt").exists() and index.load() == {}
    result = await pod.download(method=method)
    assert (result.resumed_from, result.transferred) == (kept, len(data) - kept)
    assert result.local_path.read_bytes() == data and not part.exists()


def fake_ssh(tmp_path: Path, monkeypatch, body: str) -> None:
    """Put an `ssh` first on PATH that runs `body` (the real one is "$REAL_SSH")."""
    import shutil

    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(f"#!/bin/sh\nREAL_SSH={shutil.which('ssh')}\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.requires_tools("ssh")
async def test_when_the_openssh_client_dies_the_connection_we_have_carries_on(pod, tmp_path, monkeypatch):
    """ssh exits 255 (its own failure: a dropped link, a refused key) after 2 MiB + 3:
    the rest comes over asyncssh's exec stream, from where the .part ends."""
    data = os.urandom(5 * MB + 77)
    put(pod.workdir / "step_5.pt", data)
    fake_ssh(tmp_path, monkeypatch, f'"$REAL_SSH" "$@" | head -c {2 * MB + 3}\nexit 255')
    result = await pod.download(method="ssh")
    assert (result.method, result.transferred, result.resumed_from) == ("ssh+stream", len(data), 0)
    assert result.local_path.read_bytes() == data


@pytest.mark.requires_tools("ssh")
async def test_without_a_working_openssh_client_auto_streams_over_asyncssh(pod, tmp_path, monkeypatch):
    data = os.urandom(3 * MB)
    put(pod.workdir / "step_5.pt", data)
    import backends.transfer as transfer

    monkeypatch.setattr(transfer, "STREAM_MIN_SIZE", MB)
    monkeypatch.setattr(transfer, "NEAR_RTT_S", 60.0)  # a near link, however busy this machine is
    fake_ssh(tmp_path, monkeypatch, "echo 'Permission denied (publickey).' >&2\nexit 255")
    result = await pod.download()
    assert (result.method, result.local_path.read_bytes()) == ("stream", data)


@pytest.mark.requires_tools("ssh")
async def test_a_part_resumes_through_the_openssh_client(pod, tmp_path):
    data = os.urandom(3 * MB + 11)
    put(pod.workdir / "step_5.pt", data)
    put(tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part", data[:MB + 5])
    result = await pod.download(method="ssh")
    assert (result.method, result.resumed_from, result.transferred) == ("ssh", MB + 5, len(data) - MB - 5)
    assert result.local_path.read_bytes() == data


def _ssh_children() -> list[int]:
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "ssh":
                pids.append(int(child))
    return pids


@pytest.mark.requires_tools("ssh")
async def test_stopping_an_openssh_download_ends_ssh_and_keeps_a_clean_prefix(pod, tmp_path):
    data = os.urandom(40 * MB)
    put(pod.workdir / "step_5.pt", data)

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done >= 2 * MB:
            raise Stop

    with pytest.raises(Stop):
        await pod.download(progress=stop, method="ssh")
    assert _ssh_children() == []
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    kept = part.stat().st_size
    assert 2 * MB <= kept <= len(data) and part.read_bytes() == data[:kept]
    result = await pod.download(method="ssh")
    assert result.resumed_from == kept and result.local_path.read_bytes() == data


@pytest.mark.parametrize("python", [True, False])  # sendfile into the pipe; cat (and dd to seek)
def test_the_stream_command_starts_at_any_offset(tmp_path, python):
    import shutil
    import subprocess

    data = os.urandom(3 * MB + 1234)
    path = put(tmp_path / "-odd name 'q'.pt", data)
    env = None
    if not python:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for tool in ("sh", "cat", "dd"):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        env = {"PATH": str(bin_dir)}
    for offset in (0, 1, MB - 1, MB, MB + 1, 2 * MB + 17, len(data) - 1, len(data)):
        for into in ("pipe", "file"):  # sshd reads a pipe; sendfile into a file works too
            sink = subprocess.PIPE if into == "pipe" else open(tmp_path / "out", "wb")
            out = subprocess.run(["sh", "-c", stream_command(str(path), offset)], stdout=sink,
                                 stderr=subprocess.PIPE, env=env, check=True)
            got = out.stdout if into == "pipe" else (sink.close(), (tmp_path / "out").read_bytes())[1]
            assert got == data[offset:], (offset, into)
    missing = subprocess.run(["sh", "-c", stream_command(str(tmp_path / "gone.pt"), 5)],
                             capture_output=True, env=env)
    assert missing.returncode != 0 and missing.stdout == b"" and b"gone.pt" in missing.stderr


def test_a_corrupted_part_is_caught_by_the_checksum_and_deleted(pod, tmp_path, capsys):
    """A `.part` with no range record (a sequential run's prefix) is trusted range by
    whole range, so its damage shows in the file's SHA-256 at the end."""
    data = os.urandom(9 * MB)
    put(pod.workdir / "step_5.pt", data)
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    bad = bytearray(data[: 8 * MB])
    bad[12345] ^= 0xFF
    part.parent.mkdir(parents=True)
    part.write_bytes(bad)
    assert pod.cli("download", "p", "train") == 1
    err = capsys.readouterr().err
    assert "SHA-256 mismatch" in err and "was deleted" in err
    assert not part.exists() and not part.with_name("step_5.pt").exists()
    assert pod.cli("download", "p", "train") == 0
    assert part.with_name("step_5.pt").read_bytes() == data
    assert "sha256 verified" in capsys.readouterr().out


async def test_a_corrupted_file_in_a_folder_part_is_the_only_one_fetched_again(pod, tmp_path):
    ck = pod.workdir / "checkpoint-9"
    files = {"trainer_state.json": b"{}", "model.safetensors": os.urandom(2 * MB), "sub/opt.pt": os.urandom(MB)}
    for rel, data in files.items():
        put(ck / rel, data)
    age_tree(ck)
    part = tmp_path / "checkpoints" / "p" / "train" / "checkpoint-9.part"
    for rel, data in files.items():
        put(part / rel, data)
    broken = bytearray(files["sub/opt.pt"])
    broken[-1] ^= 1
    (part / "sub" / "opt.pt").write_bytes(broken)
    with pytest.raises(dl.VerificationFailed, match=r"sub/opt.pt: pod .* The bad file in .* was deleted"):
        await pod.download()
    assert sorted(tree_bytes(part)) == ["model.safetensors", "trainer_state.json"]
    result = await pod.download()
    assert (result.transferred, result.resumed_from) == (MB, 2 * MB + 2)
    assert tree_bytes(result.local_path) == files


async def test_a_part_longer_than_the_remote_file_starts_over(pod, tmp_path):
    data = os.urandom(MB)
    put(pod.workdir / "step_5.pt", data)
    part = tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(os.urandom(2 * MB))
    result = await pod.download()
    assert (result.resumed_from, result.transferred) == (0, MB)
    assert result.local_path.read_bytes() == data


# ------------------------------------------------------------------- refusals


async def test_checkpoints_being_written_are_not_offered(pod):
    put(pod.workdir / "step_5.pt", b"new", mtime=time.time())
    put(pod.workdir / "checkpoint-7" / "model.safetensors", b"m")  # no trainer_state.json
    age_tree(pod.workdir / "checkpoint-7")
    with pytest.raises(dl.NoCompleteCheckpoint, match="2 found, all still being written"):
        await pod.download()
    with pytest.raises(dl.CheckpointWriting, match="still being written"):
        await pod.download("checkpoint-7")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../b"])
def test_traversal_names_are_refused_before_connecting(pod, capsys, name):
    assert pod.cli("download", "p", "train", name) == 2
    assert "refusing checkpoint name" in capsys.readouterr().err


def test_local_paths_cannot_escape_dest_through_symlinks(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "out").symlink_to(tmp_path)
    assert dl.local_target(dest, "a/b.pt") == dest / "a" / "b.pt"
    with pytest.raises(UnsafeName, match="outside"):
        dl.local_target(dest, "out/b.pt")
    with pytest.raises(UnsafeName):
        dl.local_target(dest, "../b.pt")


async def test_an_existing_local_file_gpuctl_did_not_write_is_left_alone(pod, tmp_path):
    put(pod.workdir / "best.pt", b"pod")
    mine = put(tmp_path / "checkpoints" / "p" / "train" / "best.pt", b"my own")
    with pytest.raises(dl.DownloadUsageError, match="not a copy gpuctl downloaded"):
        await pod.download()
    assert mine.read_bytes() == b"my own"


async def test_a_rewritten_checkpoint_replaces_the_older_copy_of_ours(pod, tmp_path):
    put(pod.workdir / "best.pt", b"first best")
    first = await pod.download()
    put(pod.workdir / "best.pt", b"a better best", mtime=OLD + 100)
    second = await pod.download()
    assert not second.skipped and second.local_path == first.local_path
    assert second.local_path.read_bytes() == b"a better best"
    assert len(index.load()) == 1


async def test_a_checkpoint_that_changes_during_the_download_is_dropped(pod, tmp_path):
    path = put(pod.workdir / "step_5.pt", os.urandom(3 * MB))

    def rewrite(done: int, total: int) -> None:
        if done >= MB and path.stat().st_mtime < OLD + 10:
            os.utime(path, (OLD + 20, OLD + 20))  # the trainer touched it mid-transfer

    with pytest.raises(dl.CheckpointWriting, match="changed while it was downloaded"):
        await pod.download(progress=rewrite)
    assert not (tmp_path / "checkpoints" / "p" / "train" / "step_5.pt.part").exists()


# ------------------------------------------------------------- teardown guard


async def test_newest_verified_for_the_teardown_guard(pod, tmp_path):
    put(pod.workdir / "step_1.pt", b"one")
    put(pod.workdir / "step_2.pt", b"two")
    listed = await pod.listed()
    assert dl.newest_verified(pod.config, "p", "train", listed) == (listed[0], False)
    result = await pod.download("step_1.pt")
    assert dl.newest_verified(pod.config, "p", "train", listed) == (listed[0], False)  # not the newest
    await pod.download()
    newest, ok = dl.newest_verified(pod.config, "p", "train", listed)
    assert (newest.name, ok) == ("step_2.pt", True)
    (result.local_path.parent / "step_2.pt").unlink()  # the copy is gone: not safe any more
    assert dl.newest_verified(pod.config, "p", "train", listed)[1] is False
    assert dl.newest_verified(pod.config, "p", "train", []) == (None, False)


# ------------------------------------------------------------------------ CLI


def test_download_command_output_and_exit_codes(pod, tmp_path, capsys):
    data = os.urandom(MB + 5)
    put(pod.workdir / "step_3.pt", data)
    assert pod.cli("download", "p", "train", "--dest", "out") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("step_3.pt: 1.0M in ")
    # the rate in the units of the size (tui.humanize), as the progress bar says it
    assert re.match(r"step_3\.pt: 1\.0M in \d+\.\ds \(\d+(\.\d)?[BKMGTP]/s\)", captured.out), captured.out
    assert captured.out.rstrip().endswith(f"sha256 verified -> {tmp_path / 'out' / 'step_3.pt'}")
    lines = captured.err.splitlines()  # plain progress lines: stderr is not a terminal
    assert lines[-1].startswith("p/train: 1.0M/1.0M (100%)") and len(lines) == len(set(lines))
    assert "p/train: step_3.pt (1.0M) landed" in lines  # and a line per file
    assert (tmp_path / "out" / "step_3.pt").read_bytes() == data
    assert pod.cli("download", "p", "train", "--dest", "out") == 0
    again = capsys.readouterr()
    assert "already downloaded and verified" in again.out
    assert not re.search(r"\d[BKMGTP]/s", again.err)  # nothing moved: no "0B/s"
    assert pod.cli("download", "p", "nope") == 2
    assert pod.cli("download", "p", "train", "step_99.pt") == 2
    assert "no checkpoint 'step_99.pt'" in capsys.readouterr().err


def test_an_explicit_dest_gets_the_file_from_a_verified_copy_elsewhere(pod, tmp_path, capsys):
    """`--dest NEWDIR` once said "already downloaded at OLDDIR" and left NEWDIR empty."""
    data = os.urandom(MB + 11)
    put(pod.workdir / "step_4.pt", data)
    put(pod.workdir / "output" / "checkpoint-9" / "model.bin", os.urandom(MB))
    put(pod.workdir / "output" / "checkpoint-9" / "trainer_state.json", b"{}")
    put(pod.workdir / "output" / "checkpoint-9" / "sub" / "rng.pt", b"rng")
    age_tree(pod.workdir / "output")
    assert pod.cli("download", "p", "train", "step_4.pt", "--dest", "old") == 0
    capsys.readouterr()
    assert pod.cli("download", "p", "train", "step_4.pt", "--dest", "new") == 0
    out = capsys.readouterr().out
    new = tmp_path / "new" / "step_4.pt"
    assert new.read_bytes() == data and (tmp_path / "old" / "step_4.pt").read_bytes() == data
    assert f"from the verified copy at {tmp_path / 'old' / 'step_4.pt'}" in out and str(new) in out
    assert not new.with_name("step_4.pt.part").exists()
    copies = sorted((e for e in index.load().values() if e.remote_path.endswith("step_4.pt")),
                    key=lambda e: e.local_path)
    # Both copies are known: the first stays where it was (keep_local manages a download
    # folder's), the one asked for last is an extra entry beside it.
    assert [(e.local_path, e.extra) for e in copies] == [(str(new), True), (str(tmp_path / "old" / "step_4.pt"), False)]
    assert pod.cli("download", "p", "train", "step_4.pt", "--dest", "new") == 0
    assert "already downloaded and verified" in capsys.readouterr().out
    # A folder; a copy elsewhere that no longer holds what was verified is not used.
    first = await_(pod.download("output/checkpoint-9", dest=tmp_path / "a"))
    second = await_(pod.download("output/checkpoint-9", dest=tmp_path / "b"))
    assert (second.transferred, second.copied_from, second.method) == (0, first.local_path, "link")
    assert tree_bytes(second.local_path) == tree_bytes(first.local_path)
    pod_bytes = tree_bytes(pod.workdir / "output" / "checkpoint-9")
    (second.local_path / "model.bin").write_bytes(os.urandom(MB))  # a hard link: both change
    third = await_(pod.download("output/checkpoint-9", dest=tmp_path / "c"))
    assert (third.copied_from, third.transferred > 0) == (None, True)  # from the pod, not the bad copy
    assert tree_bytes(third.local_path) == pod_bytes


def await_(coro):
    return asyncio.run(coro)


def test_download_from_an_unreachable_pod_is_exit_1(tmp_path, refused_port, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"pods": [{"name": "p", "host": "127.0.0.1", "port": refused_port,
                                                 "sessions": [{"name": "train"}]}]}))
    assert main(["--config", str(config), "download", "p", "train"]) == 1
    assert "refused" in capsys.readouterr().err


# ------------------------------------------------------------ transfer pieces


@pytest.mark.parametrize("server", ["sshd", "sshd_nopython"])  # hashlib over mmap; openssl per file
async def test_pod_hash_command_handles_odd_names(request, tmp_path, server):
    import asyncssh

    sshd = request.getfixturevalue(server)
    root = tmp_path / "it's a dir"
    names = ["-dash.pt", "sp ace.pt", "new\nline.pt", "quote'\".pt", "empty.pt", "big.pt"]
    for i, n in enumerate(names[:4]):
        put(root / n, bytes([i]) * 1000)
    put(root / "empty.pt", b"")
    put(root / "big.pt", os.urandom(9 * MB + 1))  # more than one 4 MiB block
    async with asyncssh.connect(**sshd.connect_kwargs()) as conn:
        result = await conn.run(sha256_command(str(root), names))
        missing = await conn.run(sha256_command(str(root), ["sp ace.pt", "gone.pt"]))
    assert result.exit_status == 0, result.stderr
    assert parse_sha256(result.stdout, len(names)) == [sha256_file(root / n) for n in names]
    assert missing.exit_status != 0 and "gone.pt" in missing.stderr


async def test_one_part_file_takes_one_writer(tmp_path):
    """Two downloads into one .part would interleave their bytes (and a truncation by
    one would fault the other's mapped hash): the second is refused until the first ends."""
    from backends.transfer import TransferFailed

    first = PartWriter(tmp_path / "x.part", 10, sync=False)
    with pytest.raises(TransferFailed, match="being written by another download"):
        PartWriter(tmp_path / "x.part", 10, sync=False)
    await first.close()
    second = PartWriter(tmp_path / "x.part", 10, sync=False)
    await second.close()


async def test_local_hasher_follows_a_growing_file(tmp_path):
    path = tmp_path / "f.part"
    chunks = [os.urandom(300_000) for _ in range(8)] + [os.urandom(70 * MB)]  # past one mapped window
    hasher = LocalHasher(path).start()
    writer = PartWriter(path, sum(map(len, chunks)), hasher=hasher, sync=False)
    for chunk in chunks:
        writer.add(chunk)
        await asyncio.sleep(0)
    await writer.finish()
    await writer.close()
    assert await hasher.result(writer.size) == sha256_file(path)


def test_without_dest_a_download_goes_where_the_download_dir_policy_says(sshd, tmp_path):
    """One answer for where checkpoints land: `gpuctl download` (and the TUI's `d`)
    follow `policies.download_dir`, as watch's auto-download does; the demo points it
    into its temp dir, so a manual download there no longer lands in the current
    directory."""
    p = Pod(sshd, tmp_path, policies={"download_dir": str(tmp_path / "kept" / "{pod}-{session}")})
    put(p.workdir / "step_1.pt", b"w" * 1000)
    assert p.cli("download", "p", "train") == 0
    assert (tmp_path / "kept" / "p-train" / "step_1.pt").read_bytes() == b"w" * 1000
    assert not (tmp_path / "checkpoints").exists()
