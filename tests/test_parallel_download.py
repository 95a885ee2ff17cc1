"""Parallel downloads (`backends.parallel_transfer`) over the real loopback sshd: byte
ranges of a big file and the files of a folder over several channels of one
connection, resumed per range after kill -9 or a dropped link, a damaged range found
and fetched again, a full disk named as such, the fallback without python3.

Sizes are 24-48 MiB, not the 200 MiB of the issue: enough for many ranges (4 MiB
each at these sizes, `chunk_for`) over every channel, small enough to keep the suite
fast. On loopback "auto" streams a big file through the OpenSSH client (the link is
near: `backends.transfer.NEAR_RTT_S`), so these tests ask for "parallel" by name.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends import range_state
from backends.parallel_transfer import chunk_for
from backends.transfer import FetchJob, TransferFailed
from sessions.checkpoints import index
from sessions.checkpoints import download as dl
from sessions.link.pod_link import open_transport
from tests.support.files import age_tree, put
from tests.test_download import MB, DropAt, Pod, tree_bytes
from tests.test_transfer_hardening import small_disk  # noqa: F401 - a fixture
from tests.support.procs import end


@pytest.fixture(autouse=True)
def isolated(isolated_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
    return isolated_home


@pytest.fixture
def pod(sshd, tmp_path) -> Pod:
    return Pod(sshd, tmp_path)


def part_of(tmp_path: Path, name: str) -> Path:
    return tmp_path / "checkpoints" / "p" / "train" / f"{name}.part"


def recorded(part: Path) -> dict[int, int]:
    """The ranges the record beside `part` holds ({} when there is none)."""
    state = range_state.RangeState.load(part)
    return state.done if state is not None else {}


async def test_a_big_file_moves_as_ranges_and_lands_identical(pod, tmp_path):
    data = os.urandom(40 * MB + 12345)
    put(pod.workdir / "step_100.pt", data)
    seen = []
    result = await pod.download(method="parallel", progress=lambda d, t: seen.append(d))
    assert (result.method, result.transferred, result.local_path.read_bytes() == data) == (
        "parallel", len(data), True)
    part = part_of(tmp_path, "step_100.pt")
    assert not part.exists() and not range_state.sidecar(part).exists()
    assert seen[-1] == len(data) and len(seen) > 10  # progress while the ranges land
    [entry] = index.load().values()
    assert entry.local_path == str(result.local_path)
    assert (await pod.download(method="parallel")).skipped


async def test_an_hf_style_folder_of_many_files_moves_concurrently(pod, tmp_path):
    ck = pod.workdir / "output" / "checkpoint-500"
    files = {f"model-{i:05d}-of-00003.safetensors": os.urandom(7 * MB + i) for i in range(3)}
    files.update({f"rng_state_{i}.pth": os.urandom(14_000 + i) for i in range(24)})
    files.update({"trainer_state.json": b'{"global_step": 500}', "config.json": b"{}",
                  "tokenizer/vocab.txt": b"a\nb\n", "empty": b""})
    for rel, data in files.items():
        put(ck / rel, data)
    age_tree(ck)
    result = await pod.download()  # no file is big: auto moves them all in parallel
    assert result.method == "parallel"
    assert tree_bytes(result.local_path) == files
    assert (result.files, result.transferred) == (len(files), sum(len(d) for d in files.values()))
    assert not list(result.local_path.rglob("*" + range_state.SUFFIX))


def _download_in_a_child(pod: Pod, tmp_path: Path) -> subprocess.Popen:
    code = ("import asyncio, sys; from sessions.config.loader import load_config; "
            "from sessions.checkpoints.download import download_checkpoint; "
            f"c = load_config({str(pod.config_path)!r}); "
            "asyncio.run(download_checkpoint(c, 'p', 'train', method='parallel'))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(check, proc: subprocess.Popen, limit: float = 60.0) -> bool:
    """Poll until `check()` or the child ends; a hang guard, not a speed test."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    pytest.fail("the download neither started nor ended")


async def test_kill_9_at_random_points_then_resume_ends_identical(pod, tmp_path):
    data = os.urandom(48 * MB)
    put(pod.workdir / "step_7.pt", data)
    part = part_of(tmp_path, "step_7.pt")
    chunk = chunk_for(len(data))
    ranges = -(-len(data) // chunk)
    rng = random.Random(15)  # seeded: the same kill points every run
    kept = []
    for _ in range(5):
        # Kill once the record holds a random number of ranges, a random moment later.
        landed_before = rng.randrange(ranges // 2)
        child = _download_in_a_child(pod, tmp_path)
        try:
            if _wait_for(lambda n=landed_before: len(recorded(part)) > n, child):
                time.sleep(rng.uniform(0.0, 0.02))
                child.send_signal(signal.SIGKILL)
            child.communicate()
        finally:
            end(child)
        assert not (tmp_path / "checkpoints" / "p" / "train" / "step_7.pt").exists(), "finished before the kill"
        kept.append(len(recorded(part)))
    assert kept == sorted(kept) and kept[-1] > 0  # every run kept what the ones before it fetched
    result = await pod.download(method="parallel")
    assert result.local_path.read_bytes() == data
    assert not part.exists() and not range_state.sidecar(part).exists()
    assert result.resumed_from + result.transferred == len(data) and result.resumed_from > 0


async def test_a_damaged_range_is_found_and_only_it_fetched_again(pod, tmp_path):
    data = os.urandom(32 * MB)
    put(pod.workdir / "step_9.pt", data)
    drop = DropAt(16 * MB)
    async with open_transport(pod.config.pod("p"), pod.config.defaults) as runner:
        drop.runner = runner
        with pytest.raises(dl.TransferInterrupted, match="run the same command again to resume"):
            await pod.download(progress=drop, runner=runner, method="parallel")
    part = part_of(tmp_path, "step_9.pt")
    done = recorded(part)
    chunk = chunk_for(len(data))
    landed = sum(min(chunk, len(data) - off) for off in done)
    assert 0 < landed < len(data)  # some ranges kept, some not
    victim = min(done)
    with open(part, "r+b") as fh:  # one flipped byte inside a recorded range
        fh.seek(victim + 777)
        byte = fh.read(1)
        fh.seek(victim + 777)
        fh.write(bytes([byte[0] ^ 0x55]))
    result = await pod.download(method="parallel")
    assert result.local_path.read_bytes() == data
    victim_len = min(chunk, len(data) - victim)
    assert (result.resumed_from, result.transferred) == (landed - victim_len, len(data) - landed + victim_len)


async def test_a_sequential_method_resumes_a_ranged_part_at_its_landed_prefix(pod, tmp_path):
    data = os.urandom(24 * MB)
    put(pod.workdir / "step_3.pt", data)
    drop = DropAt(12 * MB)
    async with open_transport(pod.config.pod("p"), pod.config.defaults) as runner:
        drop.runner = runner
        with pytest.raises(dl.TransferInterrupted):
            await pod.download(progress=drop, runner=runner, method="parallel")
    result = await pod.download(method="stream")
    assert result.local_path.read_bytes() == data and result.resumed_from % chunk_for(len(data)) == 0


async def test_a_full_local_disk_is_named_and_the_landed_ranges_kept(pod, small_disk):  # noqa: F811
    data = os.urandom(3 * MB)
    put(pod.workdir / "step_20.pt", data)
    with pytest.raises(dl.TransferInterrupted) as caught:
        await pod.download(dest=small_disk, method="parallel")
    message = str(caught.value)
    assert f"no space left on the local disk at {small_disk}" in message, message
    assert "on the pod" not in message


async def test_without_python3_on_the_pod_auto_goes_file_by_file(sshd_nopython, tmp_path):
    pod = Pod(sshd_nopython, tmp_path)
    data = os.urandom(2 * MB)
    remote = put(pod.workdir / "step_1.pt", data)
    jobs = [FetchJob(str(remote), tmp_path / "here" / "a.part", len(data))]
    async with open_transport(pod.config.pod("p"), pod.config.defaults) as runner:
        async with runner.fetcher() as fetcher:
            [stats] = await fetcher.fetch_all(jobs)
        assert stats.method == "sftp" and (tmp_path / "here" / "a.part").read_bytes() == data
        assert stats.sha256 == hashlib.sha256(data).hexdigest()
        async with runner.fetcher(method="parallel") as fetcher:
            with pytest.raises(TransferFailed, match="no python3"):
                await fetcher.fetch_all([FetchJob(str(remote), tmp_path / "here" / "b.part", len(data))])


def test_channels_follow_the_round_trip_and_the_window_each_carries():
    """Enough windows in flight for 1 GB/s: asyncssh's 8 MiB channels need fewer than
    the OpenSSH master's 2 MiB sessions on the same link; never under 2 nor over 8."""
    from backends.parallel_transfer import OPENSSH_WINDOW, channels_for

    assert [channels_for(rtt) for rtt in (0.0005, 0.05, 0.07, None)] == [2, 6, 8, 8]
    assert [channels_for(rtt, OPENSSH_WINDOW) for rtt in (0.0005, 0.005, 0.01, 0.05)] == [2, 3, 5, 8]
