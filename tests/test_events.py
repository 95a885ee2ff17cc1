"""The one event stream (sessions/events.py): every subscriber told, and the JSON lines
`gpuctl watch --json` prints unchanged for the kinds scripts already match.

The events pinned here are made by the producers themselves (the Fleet's connection
news and the Watcher from snapshots, the download event builder from a
`DownloadResult`), so a key added or dropped on the way is caught where scripts would
see it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sessions.checkpoints.download import DownloadResult
from sessions.checkpoints.listing import Checkpoint
from sessions.config.loader import parse_config
from sessions.fleet.connection_news import ConnectionNews
from sessions.events import ALL_KINDS, EventKind, EventStream, WatchEvent
from sessions.progress.tracker import Progress
from sessions.snapshot import PodSnapshot, SessionSnapshot
from sessions.checkpoints.news import downloaded_event
from sessions.watch.state import open_state
from sessions.watch.watcher import Watcher


def test_every_subscriber_is_told_in_order_and_one_failing_does_not_silence_the_others():
    stream = EventStream()
    told: list[str] = []

    def broken(event: WatchEvent) -> None:
        told.append("broken")
        raise BrokenPipeError("stdout closed")

    stream.subscribe(lambda e: told.append(f"first {e.kind}"))
    stream.subscribe(broken)
    stop = stream.subscribe(lambda e: told.append(f"last {e.kind}"))
    with pytest.raises(BrokenPipeError):  # the producer still hears of it, as with a failing emit
        stream.publish(WatchEvent(EventKind.CONNECTED, "p", "connected over ssh"))
    assert told == ["first connected", "broken", "last connected"]
    stop()
    told.clear()
    with pytest.raises(BrokenPipeError):
        stream.publish(WatchEvent(EventKind.DISCONNECTED, "p", "connection lost"))
    assert told == ["first disconnected", "broken"]


def test_the_kinds_scripts_match_are_all_still_there():
    assert ALL_KINDS[:10] == ("connected", "disconnected", "session_exited", "preempted", "resumed",
                              "checkpoint_found", "checkpoint_downloaded", "alert", "alert_cleared",
                              "budget_action")
    assert "checkpoint_pruned" in ALL_KINDS


def keys(event: WatchEvent) -> list[str]:
    line = event.json_line()
    assert "before" not in line and "after" not in json.loads(line)  # in-process only
    return list(json.loads(line))


FIXED = ["ts", "pod", "session", "kind", "message"]


@pytest.fixture
async def watched(tmp_path):
    doc = {"pods": [{"name": "p", "host": "h", "sessions": [{"name": "train", "workdir": "/w"}]}]}
    config = parse_config(yaml.safe_dump(doc), tmp_path / "c.yaml")
    fleet = SimpleNamespace(config=config, events=EventStream(), recent_log=lambda _p, _s: "Traceback\nboom\n")
    state, _ = open_state(tmp_path / "state.json")
    events: list[WatchEvent] = []
    fleet.events.subscribe(events.append)
    watcher = Watcher(fleet, state, start_dir=tmp_path)
    yield watcher, events
    await watcher.aclose()
    state.close()


async def test_the_watchers_json_lines_keep_their_keys(watched):
    """Each snapshot goes to the Fleet's news and to the Watcher, as `Fleet._on_update` hands it."""
    watcher, events = watched
    news, last = ConnectionNews(), None
    train = SessionSnapshot("train", state="running", progress=Progress(format="torchrun", step=7), configured=True)
    for snapshot in (PodSnapshot("p", "h", state="online", transport="ssh", sessions=(train,)),
                     PodSnapshot("p", "h", state="online", transport="ssh",
                                 sessions=(SessionSnapshot("train", state="exited", exit_status=2,
                                                           configured=True),)),
                     PodSnapshot("p", "h", state="reconnecting", error="connection lost", error_kind="network"),
                     PodSnapshot("p", "h", state="preempted", error="preempted: gone", provider_state="exited")):
        told = news.change(last, snapshot)
        last = snapshot
        if told is not None:
            watcher.events.publish(told)
        watcher.observe(snapshot)
    by_kind = {e.kind: e for e in events}
    assert keys(by_kind["connected"]) == FIXED + ["transport", "state"]
    assert keys(by_kind["session_exited"]) == FIXED + ["exit_status", "last_lines", "step"]
    assert keys(by_kind["disconnected"]) == FIXED + ["error_kind", "state"]
    assert keys(by_kind["preempted"]) == FIXED + ["provider_state", "state"]
    # the pod's state word, as `gpuctl status` says it (QA of issue 12: it was missing)
    assert [by_kind[k].to_json()["state"] for k in ("connected", "disconnected", "preempted")] == [
        "online", "reconnecting", "preempted"]
    exited = by_kind["session_exited"].to_json()
    assert (exited["exit_status"], exited["last_lines"], exited["message"]) == (
        2, ["Traceback", "boom"], "session exited with status 2")
    assert (by_kind["disconnected"].before, by_kind["disconnected"].after) == ("online", "reconnecting")


def test_a_download_is_one_event_whoever_fetched_it():
    c = Checkpoint("out/step_100.pt", "/w/out/step_100.pt", "file", 100, 4_200_000, 1.0e9)
    result = DownloadResult(pod="p", session="train", checkpoint=c, local_path=Path("/dl/p/train/step_100.pt"),
                            skipped=False, size=4_200_000, transferred=4_200_000, resumed_from=0, seconds=1.5,
                            sha256="ab" * 32)
    event = downloaded_event(result, ts=1.0)
    assert keys(event) == FIXED + ["checkpoint", "name", "step", "local_path", "sha256", "size", "verified"]
    assert event.message == "downloaded out/step_100.pt to /dl/p/train/step_100.pt (sha256 verified, 4.2 MB in 1.5 s)"
    assert (event.pod, event.session, event.extra["checkpoint"]) == ("p", "train", "/w/out/step_100.pt")
