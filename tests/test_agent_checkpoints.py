"""The agent's checkpoint watch: stats while nothing changes, gpuctl's own listing when
something did, and a new complete checkpoint reported within a few checks.

In-process tests drive `CheckpointWatch` with explicit monotonic times (no sleeping);
the listing they run is the real one, built by `sessions.checkpoints.listing` and read
back by its parser and judge. The process test runs the real agent as a pod runs it and
counts the listing execs through a counter the command line itself appends to.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends import agent_command
from backends.pod_agent.checkpoints import CheckpointWatch
from sessions.checkpoints import agent_watch
from sessions.checkpoints.listing import DEFAULT_PATTERNS, listing_command
from sessions.config.model import SessionConfig

pytestmark = pytest.mark.requires_tools("find")

OLD = time.time() - 3600


def old(path: Path) -> Path:
    """Backdate a path, as if written a while ago (the listing's "just modified" rule
    then does not apply, whatever the test machine's speed)."""
    os.utime(path, (OLD, OLD))
    return path


def watch_for(work: Path, patterns=DEFAULT_PATTERNS, **kwargs) -> CheckpointWatch:
    return CheckpointWatch("train", str(work), list(patterns), listing_command(str(work), patterns), **kwargs)


def finish(watch: CheckpointWatch) -> dict:
    """Read the running listing to its end (blocking: the test has nothing else to do)."""
    assert watch.fileno() is not None, "no listing is running"
    while True:
        message = watch.pump()
        if message is not None:
            return message


def names(message: dict) -> dict[str, str]:
    checkpoints = agent_watch.read_report(message)
    assert checkpoints is not None, message
    return {c.name: c.state for c in checkpoints}


def test_nothing_changing_costs_no_listing_and_a_new_checkpoint_is_listed_once_settled(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    watch = watch_for(work, every_s=1.0, quiet_s=2.5, busy_s=4.0)
    watch.check(100.0)
    assert names(finish(watch)) == {}, "the first look is listed: gpuctl's starting view"
    for tick in range(1, 30):  # half a minute of checks with nothing changing
        assert watch.check(100.0 + tick) is None
        assert watch.fileno() is None
    assert watch.listings == 1

    (work / "step_100.pt").write_bytes(b"x" * 1000)
    old(work / "step_100.pt")
    watch.check(130.0)
    assert watch.fileno() is None, "a change is listed once it has settled, not at once"
    watch.check(131.0)
    watch.check(132.0)
    assert watch.fileno() is None
    watch.check(133.0)  # 3 s still: past quiet_s
    assert names(finish(watch)) == {"step_100.pt": "complete"}
    for tick in range(134, 160):
        watch.check(float(tick))
    assert watch.listings == 2, "listed once for the one change"


def test_a_hugging_face_folder_is_reported_complete_when_its_marker_lands(tmp_path):
    work = tmp_path / "work"
    (work / "output").mkdir(parents=True)
    watch = watch_for(work, every_s=1.0, quiet_s=2.0)
    watch.check(0.0)
    finish(watch)
    folder = work / "output" / "checkpoint-500"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 4096)
    for t in (1.0, 2.0, 3.0):
        watch.check(t)
    assert names(finish(watch)) == {"output/checkpoint-500": "writing"}, "no trainer_state.json yet"
    (folder / "trainer_state.json").write_text("{}")
    for path in (folder / "model.safetensors", folder / "trainer_state.json", folder):
        old(path)
    watch.check(4.0)
    assert watch.fileno() is None
    watch.check(5.0)
    watch.check(6.0)
    assert names(finish(watch)) == {"output/checkpoint-500": "complete"}
    assert watch.listings == 3


def test_a_long_write_is_listed_every_busy_s_and_once_more_when_it_stops(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    watch = watch_for(work, ["*.pt"], every_s=1.0, quiet_s=2.0, busy_s=5.0)
    watch.check(0.0)
    finish(watch)
    growing = work / "final.pt"
    with growing.open("wb") as out:
        for t in range(1, 11):  # a byte more every check: the stats never settle
            out.write(b"x")
            out.flush()
            os.utime(growing, (OLD + t, OLD + t))
            watch.check(float(t))
            if watch.fileno() is not None:
                assert t == 6, "busy_s after the stats first differed from the last listing's"
                finish(watch)
    assert watch.listings == 2
    watch.check(11.0)
    assert watch.fileno() is None
    watch.check(12.0)  # settled for quiet_s
    assert names(finish(watch)) == {"final.pt": "complete"}
    assert growing.stat().st_size == 10


def test_the_report_keeps_a_name_that_is_not_utf8_byte_for_byte(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    raw = os.fsencode(str(work)) + b"/step_7_\xff.pt"
    with open(raw, "wb") as out:
        out.write(b"x")
    os.utime(raw, (OLD, OLD))
    watch = watch_for(work, ["*.pt"])
    watch.check(0.0)
    message = json.loads(json.dumps(finish(watch)))  # as it travels
    (checkpoint,) = agent_watch.read_report(message)
    assert os.fsencode(checkpoint.path) == raw


def test_a_failed_or_cut_listing_reports_nothing_rather_than_less(tmp_path):
    watch = CheckpointWatch("train", str(tmp_path), ["*.pt"], "printf 'W\\t/x\\0T\\t1\\0'")
    watch.check(0.0)
    message = finish(watch)
    assert message["exit_status"] == 0 and agent_watch.read_report(message) is None
    missing = CheckpointWatch("train", str(tmp_path / "nope"), ["*.pt"], listing_command(str(tmp_path / "nope"), ["*.pt"]))
    missing.check(0.0)
    message = finish(missing)
    assert message["exit_status"] == 3 and agent_watch.read_report(message) is None


def test_the_watch_command_carries_the_one_listing_command():
    session = SessionConfig(name="train", command="python train.py", workdir="runs/a",
                            checkpoints=("ckpt/*.pt",))
    command = agent_watch.watch_command(session)
    assert command == {
        "cmd": "checkpoints", "id": "train", "root": "~/runs/a", "patterns": ["ckpt/*.pt"],
        "command": listing_command("runs/a", ("ckpt/*.pt",)), "quiet_s": 2.5,
    }


# ------------------------------------------------------------------ the real process


def test_the_agent_reports_a_new_checkpoint_within_a_few_ticks_and_lists_only_on_change(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    count = tmp_path / "listings"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text("#!/bin/sh\nexec %s -S \"$@\"\n" % shlex.quote(sys.executable))
    python.chmod(0o755)
    command = agent_command.build_agent_command({"interval": 0.1, "tmux": False, "gpu_loop": False},
                                                python=str(python))
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"PATH": "%s:/usr/bin:/bin" % bin_dir, "HOME": str(tmp_path)},
                            start_new_session=True)
    listing = "echo >> %s; %s" % (shlex.quote(str(count)), listing_command(str(work), ["step_*.pt"]))

    def messages():
        for line in proc.stdout:
            yield json.loads(line)

    stream = messages()
    try:
        assert next(stream)["kind"] == "hello"
        proc.stdin.write((json.dumps({
            "cmd": "checkpoints", "id": "train", "root": str(work), "patterns": ["step_*.pt"],
            "command": listing, "every_s": 0.1, "quiet_s": 0.3}) + "\n").encode())
        proc.stdin.flush()
        first = next(m for m in stream if m["kind"] in ("checkpoints", "error"))
        assert names(first) == {}
        samples = 0
        for message in stream:  # 3 s of ticks with nothing changing
            samples += message["kind"] == "sample"
            assert message["kind"] != "checkpoints"
            if samples == 30:
                break
        assert count.read_text().count("\n") == 1, "no listing exec while nothing changes"

        (work / "step_100.pt").write_bytes(b"x" * 1000)
        old(work / "step_100.pt")
        ticks = 0
        for message in stream:
            ticks += message["kind"] == "sample"
            assert ticks < 30, "no report within 30 ticks (3 s)"
            if message["kind"] == "checkpoints":
                break
        assert names(message) == {"step_100.pt": "complete"}
        assert count.read_text().count("\n") == 2
    finally:
        proc.stdin.close()
        assert proc.wait(10) == 0
        proc.stdout.close()


def test_files_no_glob_matches_cost_a_rescan_but_never_a_listing(tmp_path):
    work = tmp_path / "work"
    (work / "samples").mkdir(parents=True)
    watch = watch_for(work, every_s=1.0, quiet_s=1.0, busy_s=2.0)  # the defaults look one level down
    watch.check(0.0)
    finish(watch)
    for t in range(1, 20):  # a trainer dumping an image every second
        (work / "samples" / f"step_{t}.png").write_bytes(b"png")
        watch.check(float(t))
        assert watch.fileno() is None
    assert watch.listings == 1
