"""Two gpuctl processes on one config and one download folder, and a person's --dest copy.

Issue 15/12 QA on the demo: the TUI and `gpuctl watch` each kept a watch state of their
own and both auto-downloaded the same checkpoint, one of them alerting "is being
written by another download (another gpuctl?)" then "works again"; and `gpuctl
download --dest NEWDIR` moved the index entry away from the download folder's copy, so
`keep_local` never pruned it again. Real sshd, real Watchers, real files and hashes.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml

from sessions.checkpoints import index, target_lock
from sessions.checkpoints.download import download_checkpoint
from sessions.checkpoints.listing import Checkpoint
from sessions.config.loader import parse_config
from sessions.watch.state import default_state_path
from tests.test_watch import Run, checkpoint, config_for

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]


def entries_of(name: str) -> list[index.IndexEntry]:
    return sorted((e for e in index.load().values() if e.remote_path.endswith("/" + name)),
                  key=lambda e: e.local_path)


async def test_two_watchers_wanting_one_checkpoint_fetch_it_once_and_neither_alerts(sshd, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = checkpoint(work, "step_100.pt", size=2_000_000)
    config = config_for(sshd, tmp_path, {}, {
        "auto_download": "newest", "checkpoint_interval_s": 0.3, "download_dir": "dl"})
    final = tmp_path / "dl" / "step_100.pt"
    # Held here as a third gpuctl would while it fetches: both watchers reach the target
    # and queue behind it, so they really contend once it is let go.
    async with target_lock.hold(final) as waited:
        assert not waited
        a = await Run(config, tmp_path, tmp_path / "a.json").__aenter__()
        b = await Run(config, tmp_path, tmp_path / "b.json").__aenter__()
        try:
            await a.wait_for("checkpoint_found")
            await b.wait_for("checkpoint_found")
        except BaseException:
            await b.__aexit__(None, None, None)
            await a.__aexit__(None, None, None)
            raise
    try:
        for run in (a, b):
            await _poll_downloaded(run)
        downloads = a.kinds("checkpoint_downloaded") + b.kinds("checkpoint_downloaded")
        assert len(downloads) == 1, "fetched once: the other adopted the verified copy"
        assert final.read_bytes() == first.read_bytes()
        assert downloads[0].extra["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
        assert a.kinds("alert") == [] and b.kinds("alert") == []
        assert [e.local_path for e in entries_of("step_100.pt")] == [str(final)]
        assert not list((tmp_path / "dl").glob("*.part"))
    finally:
        await b.__aexit__(None, None, None)
        await a.__aexit__(None, None, None)


async def _poll_downloaded(run: Run) -> None:
    """Both watchers record the checkpoint as downloaded (the adopter's result is a skip)."""
    from tests.test_watch import poll

    await poll(lambda: "step_100.pt" in run.state.downloaded.get("p/train", []))


async def test_a_dest_copy_is_kept_while_keep_local_prunes_the_download_folder(sshd, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = checkpoint(work, "step_100.pt")
    config = config_for(sshd, tmp_path, {}, {
        "auto_download": "newest", "keep_local": 1, "checkpoint_interval_s": 0.3, "download_dir": "dl"})
    managed, mine = tmp_path / "dl" / "step_100.pt", tmp_path / "mine" / "step_100.pt"
    async with Run(config, tmp_path) as run:
        await run.wait_for("checkpoint_downloaded")
        copied = await download_checkpoint(config, "p", "train", "step_100.pt", dest=tmp_path / "mine")
        assert (copied.local_path, copied.method, copied.copied_from) == (mine, "link", managed)
        both = entries_of("step_100.pt")
        assert [(e.local_path, e.extra) for e in both] == [(str(managed), False), (str(mine), True)]
        assert all(index.untouched(e) for e in both), "the link moved the source's ctime: its stamp follows"
        again = await download_checkpoint(config, "p", "train", "step_100.pt", dest=tmp_path / "mine")
        assert again.skipped and again.local_path == mine

        second = checkpoint(work, "step_200.pt")
        pruned = (await run.wait_for("checkpoint_pruned"))[0]
        assert pruned.extra["local_path"] == str(managed)
        assert not managed.exists(), "the download folder's copy is managed by keep_local"
        assert mine.read_bytes() == first.read_bytes(), "the --dest copy is the person's"
        assert (tmp_path / "dl" / "step_200.pt").read_bytes() == second.read_bytes()
        assert [(e.local_path, e.extra) for e in entries_of("step_100.pt")] == [(str(mine), True)]
        assert [e.local_path for e in entries_of("step_200.pt")] == [str(tmp_path / "dl" / "step_200.pt")]
        kept = entries_of("step_100.pt")[0]
        assert index.untouched(kept), "unlinking the pruned copy moved only the ctime of the kept one"
        version = Checkpoint("step_100.pt", kept.remote_path, "file", 100, kept.size, kept.mtime)
        assert index.entry_for(kept.host, version) == kept, "the version is still known to be here"


def test_the_tui_and_watch_share_a_state_file_unless_the_start_dir_decides_the_downloads(tmp_path):
    def config(download_dir: str):
        text = yaml.safe_dump({"policies": {"download_dir": download_dir},
                               "pods": [{"name": "p", "host": "h", "sessions": [{"name": "t"}]}]})
        return parse_config(text, tmp_path / "c.yaml")

    here, there = tmp_path / "a", tmp_path / "b"
    absolute = config(str(tmp_path / "dl" / "{pod}"))
    assert default_state_path(absolute.path, here, absolute) == default_state_path(absolute.path, there, absolute)
    relative = config("dl/{pod}")
    assert default_state_path(relative.path, here, relative) != default_state_path(relative.path, there, relative)
    assert default_state_path(relative.path, here, relative) == default_state_path(relative.path, here)


async def test_all_with_keep_local_fetches_only_what_it_keeps_and_never_again(sshd, tmp_path):
    """`auto_download: all` with `keep_local: 1`: the older checkpoint would be pruned as
    soon as it landed, then (forgotten by the index) fetched again every round."""
    work = tmp_path / "work"
    work.mkdir()
    checkpoint(work, "step_100.pt")
    checkpoint(work, "step_200.pt")
    config = config_for(sshd, tmp_path, {}, {
        "auto_download": "all", "keep_local": 1, "checkpoint_interval_s": 0.2, "download_dir": "dl"})
    async with Run(config, tmp_path) as run:
        await run.wait_for("checkpoint_downloaded")
        await asyncio.sleep(1.0)  # several more listing rounds
        assert [e.extra["name"] for e in run.kinds("checkpoint_downloaded")] == ["step_200.pt"]
        assert run.kinds("checkpoint_pruned") == [] and run.kinds("alert") == []
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["step_200.pt"]
