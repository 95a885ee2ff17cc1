"""The teardown guard: each session's newest checkpoint must have a verified local copy."""

from __future__ import annotations

import hashlib
import os
import time

from backends.runner import LocalRunner
from sessions.checkpoints import index as checkpoint_index
from sessions.checkpoints import teardown_guard
from sessions.checkpoints.listing import list_checkpoints
from sessions.config.loader import parse_config


def setup(tmp_path, *names: str):
    work = tmp_path / "work"
    work.mkdir()
    old = time.time() - 300  # not "being written"
    for i, name in enumerate(names):
        (work / name).write_bytes(b"w" * (100 + i))
        os.utime(work / name, (old, old))
    config = parse_config(
        "pods:\n"
        f"  - {{name: here, host: local, sessions: [{{name: train, workdir: '{work}'}}, {{name: eval, workdir: '{work}',"
        " checkpoints: ['none_*.bin']}]}\n"
        "  - {name: bare, host: local}\n", tmp_path / "c.yaml")
    return config, config.pod("here")


async def record_copy(tmp_path, pod, name: str):
    found = await list_checkpoints(LocalRunner(), pod, "train", settle=0.0)
    newest = next(c for c in found if c.name == name)
    copy = tmp_path / "local" / name
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(b"w" * newest.size)
    checkpoint_index.record(checkpoint_index.IndexEntry(
        host="local", remote_path=newest.path, size=newest.size, mtime=newest.mtime,
        local_path=str(copy), sha256=hashlib.sha256(copy.read_bytes()).hexdigest(), pod="here", session="train"))
    return copy


async def test_refuses_until_the_newest_checkpoint_is_verified_locally(tmp_path):
    config, pod = setup(tmp_path, "step_100.pt", "step_200.pt")
    ok, note = await teardown_guard.check(config, pod)
    assert (ok, note) == (False, "session train's newest checkpoint step_200.pt has no verified local copy")
    await record_copy(tmp_path, pod, "step_100.pt")  # an older one does not count
    assert (await teardown_guard.check(config, pod))[0] is False
    copy = await record_copy(tmp_path, pod, "step_200.pt")
    ok, note = await teardown_guard.guard_for(config)(pod)
    assert ok is True
    assert note == f"session train: step_200.pt verified at {copy}; no checkpoints in session eval"
    copy.unlink()  # the download was deleted: no longer safe
    assert (await teardown_guard.check(config, pod))[0] is False


async def test_a_pod_without_sessions_has_nothing_known_to_keep(tmp_path):
    config, _ = setup(tmp_path)
    assert await teardown_guard.guard(config.pod("bare"), config) == (
        True, "no sessions are configured on it, so gpuctl knows of no checkpoints to keep")


async def test_an_unreachable_pod_cannot_be_checked(tmp_path, refused_port):
    config = parse_config(f"pods:\n  - {{name: p, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,"
                          " sessions: [{name: train}]}\n", tmp_path / "c.yaml")
    ok, note = await teardown_guard.check(config, config.pod("p"))
    assert ok is False and note.startswith("cannot check its checkpoints: ")
