"""Log following in the agent: tail -F semantics, capped deltas, one-shot tails.

Process tests run the real agent as a pod runs it (``build_agent_command`` under
``sh -c``) and write to its files from the test; every wait has a deadline and waits
for a condition, never for a fixed time. The table tests pin the byte arithmetic.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backends import agent_command
from backends.pod_agent import logs as agent_logs
from backends.pod_agent.logs import read_window, tail_start

FAST = 0.05  # follow interval for the process tests (the default is 0.25 s)


# ------------------------------------------------------------------ byte arithmetic


def _fd(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize(
    ("data", "lines", "limit", "expected"),
    [
        (b"a\nb\nc\n", 2, 100, (2, False)),
        (b"a\nb\nc", 2, 100, (2, False)),  # an unterminated last line counts
        (b"a\nb\nc\n", 3, 100, (0, False)),
        (b"a\nb\nc\n", 9, 100, (0, False)),
        (b"a\nb\nc\n", 0, 100, (6, False)),
        (b"", 5, 100, (0, False)),
        (b"\n\n\n", 2, 100, (1, False)),
        (b"x" * 50 + b"\nlast\n", 2, 20, (36, True)),  # the lines reach past the limit
    ],
)
def test_tail_start(tmp_path, data, lines, limit, expected):
    fd = _fd(tmp_path, data)
    try:
        assert tail_start(fd, len(data), lines, limit) == expected
    finally:
        os.close(fd)


def test_tail_start_reads_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_logs, "TAIL_BLOCK", 4)
    data = b"one\ntwo\nthree\nfour\n"
    fd = _fd(tmp_path, data)
    try:
        assert tail_start(fd, len(data), 3, 1000) == (data.index(b"two"), False)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("start", "cap", "align", "expected"),
    [
        (0, 100, False, (b"aa\nbbb\ncccc\n", 0)),
        (3, 100, False, (b"bbb\ncccc\n", 3)),
        (0, 6, False, (b"cccc\n", 7)),  # cut: start after the first newline in the window
        (0, 5, False, (b"cccc\n", 7)),  # the window starts exactly on a line
        (4, 100, True, (b"cccc\n", 7)),  # asked mid-line: move to the next line
        (0, 3, False, (b"cc\n", 9)),  # no line start inside: keep the window whole
    ],
)
def test_read_window(tmp_path, start, cap, align, expected):
    data = b"aa\nbbb\ncccc\n"
    fd = _fd(tmp_path, data)
    try:
        assert read_window(fd, start, len(data), cap, align=align) == expected
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the real agent


class Agent:
    """The agent under ``sh -c`` with a bare PATH (no nvidia-smi, no tmux)."""

    def __init__(self, root: Path):
        python = root / "python3"
        python.write_text("#!/bin/sh\nexec %s -S \"$@\"\n" % shlex.quote(sys.executable))
        python.chmod(0o755)
        command = agent_command.build_agent_command({"interval": 3600, "tmux": False}, python=str(python))
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={"PATH": str(root), "HOME": str(root)}, start_new_session=True,
        )
        self._buffer = b""
        self.pid = self.read_kind("hello")["pid"]
        self.send({"cmd": "follow_interval", "seconds": FAST})

    def read(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("no line from the agent within %s s" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise AssertionError("agent exited: %s" % self.proc.stderr.read().decode())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def read_kind(self, kind, timeout=5.0, id=None):
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if message["kind"] == kind and (id is None or message.get("id") == id):
                return message

    def logs_until(self, follow_id, predicate, timeout=5.0):
        """Log messages for ``follow_id`` up to the first one ``predicate`` accepts."""
        got = []
        deadline = time.monotonic() + timeout
        while not got or not predicate(got[-1]):
            got.append(self.read_kind("log", max(0.01, deadline - time.monotonic()), id=follow_id))
        return got

    def send(self, command):
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()

    def rss_kib(self):
        for line in Path("/proc/%d/status" % self.pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def close(self):
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def agent(tmp_path):
    root = tmp_path / "agent"
    root.mkdir()
    running = Agent(root)
    yield running
    running.close()


def append(path, data):
    with open(path, "ab") as handle:
        handle.write(data if isinstance(data, bytes) else data.encode())


def text_of(messages):
    return "".join(m["data"] for m in messages)


LOG_KEYS = ["kind", "v", "id", "path", "data", "offset", "skipped", "event"]


def test_follow_starts_with_the_tail_then_streams_appends(agent, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join("line %d\n" % i for i in range(10)))
    agent.send({"cmd": "follow", "id": "a", "path": str(log), "tail_lines": 3})
    first = agent.read_kind("log", id="a")
    assert list(first) == LOG_KEYS
    assert (first["v"], first["path"], first["event"], first["skipped"]) == (1, str(log), "opened", 0)
    assert first["data"] == "line 7\nline 8\nline 9\n"
    assert first["offset"] == log.stat().st_size
    append(log, "line 10\n")
    append(log, "line 11\r progress 50%\x1b[0m\n")  # \r and ANSI pass through untouched
    got = []
    while "line 11" not in text_of(got):  # one check may see one append or both
        got.append(agent.read_kind("log", id="a"))
    assert text_of(got) == "line 10\nline 11\r progress 50%\x1b[0m\n"
    assert all(m["event"] is None and m["skipped"] == 0 for m in got)
    assert got[-1]["offset"] == log.stat().st_size


def test_follow_with_no_tail_says_where_it_starts(agent, tmp_path):
    log = tmp_path / "a.log"
    log.write_text("old\n")
    agent.send({"cmd": "follow", "id": "a", "path": str(log)})
    first = agent.read_kind("log", id="a")
    assert (first["data"], first["offset"], first["event"]) == ("", 4, "opened")


def test_follow_from_an_offset_resumes_there(agent, tmp_path):
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\nthree\n")
    agent.send({"cmd": "follow", "id": "a", "path": str(log), "from_offset": 4, "tail_lines": 1})
    first = agent.read_kind("log", id="a")
    assert (first["data"], first["offset"], first["event"]) == ("two\nthree\n", 14, "opened")
    # An offset past the end: the file was truncated since; read it from the start.
    agent.send({"cmd": "follow", "id": "b", "path": str(log), "from_offset": 99})
    second = agent.read_kind("log", id="b")
    assert (second["data"], second["offset"], second["event"]) == ("one\ntwo\nthree\n", 14, "truncated")


def test_truncation_restarts_from_zero(agent, tmp_path):
    log = tmp_path / "a.log"
    log.write_text("a long first life of the log\n")
    agent.send({"cmd": "follow", "id": "a", "path": str(log)})
    agent.read_kind("log", id="a")
    with open(log, "wb") as handle:  # truncate in place, as copytruncate does
        handle.write(b"new\n")
    [message] = agent.logs_until("a", lambda m: m["event"] == "truncated")
    assert (message["data"], message["offset"], message["skipped"]) == ("new\n", 4, 0)


def test_rotation_drains_the_old_file_then_reads_the_new_one(agent, tmp_path):
    log = tmp_path / "a.log"
    log.write_text("before\n")
    agent.send({"cmd": "follow", "id": "a", "path": str(log)})
    agent.read_kind("log", id="a")
    append(log, "last words of the old file\n")
    # Rotate atomically: keep the old file as a.log.1, then swap a new file in by rename,
    # so the path never looks missing (and the test cannot race the agent's checks).
    os.link(log, tmp_path / "a.log.1")
    fresh = tmp_path / "a.log.new"
    fresh.write_text("first line of the new file\n")
    os.rename(fresh, log)
    got = agent.logs_until("a", lambda m: m["event"] == "rotated")
    assert text_of(got[:-1]) == "last words of the old file\n"
    rotated = got[-1]
    assert (rotated["data"], rotated["offset"]) == ("first line of the new file\n", 27)
    append(log, "more\n")
    [more] = agent.logs_until("a", lambda m: True)
    assert (more["data"], more["offset"], more["event"]) == ("more\n", 32, None)


def test_missing_file_is_reported_once_then_opened(agent, tmp_path):
    log = tmp_path / "later.log"
    agent.send({"cmd": "follow", "id": "a", "path": str(log), "tail_lines": 5})
    first = agent.read_kind("log", id="a")
    assert (first["event"], first["data"], first["offset"]) == ("missing", "", 0)
    log.write_text("hello\n")
    got = agent.logs_until("a", lambda m: m["event"] is not None)
    assert [(m["event"], m["data"], m["offset"]) for m in got] == [("opened", "hello\n", 6)]
    log.unlink()
    [gone] = agent.logs_until("a", lambda m: True)
    assert gone["event"] == "missing"
    log.write_text("again\n")
    [back] = agent.logs_until("a", lambda m: True)
    assert (back["event"], back["data"]) == ("opened", "again\n")


def test_a_character_split_across_writes_survives(agent, tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    agent.send({"cmd": "follow", "id": "a", "path": str(log)})
    agent.read_kind("log", id="a")
    append(log, b"caf\xc3")  # the first byte of \xc3\xa9 (e)
    [half] = agent.logs_until("a", lambda m: True)
    # The held byte is not counted: resuming from this offset re-reads the whole character.
    assert (half["data"], half["offset"]) == ("caf", 3)
    append(log, b"\xa9 \xe2\x9c\x93\n")
    [rest] = agent.logs_until("a", lambda m: True)
    assert (rest["data"], rest["offset"]) == ("\u00e9 \u2713\n", 10)
    append(log, b"bad \xff byte\n")
    [bad] = agent.logs_until("a", lambda m: True)
    assert bad["data"] == "bad \ufffd byte\n"


def test_a_flood_is_capped_with_skipped_bytes_and_memory_stays_flat(agent, tmp_path):
    log = tmp_path / "flood.log"
    log.write_bytes(b"")
    cap = 64 * 1024
    agent.send({"cmd": "follow", "id": "a", "path": str(log), "max_bytes": cap})
    agent.read_kind("log", id="a")
    rss_before = agent.rss_kib()
    stop = threading.Event()
    written = [0]

    def writer():
        number = 0
        with open(log, "ab", buffering=0) as handle:
            while not stop.is_set() and written[0] < 96 << 20:
                chunk = b"".join(b"line %09d %s\n" % (number + i, b"x" * 100) for i in range(8000))
                number += 8000
                written[0] += handle.write(chunk)
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    messages, rss_peak = [], rss_before
    try:
        deadline = time.monotonic() + 8
        while (sum(m["skipped"] for m in messages) < 8 << 20 or len(messages) < 10) and time.monotonic() < deadline:
            messages.append(agent.read_kind("log", id="a"))
            rss_peak = max(rss_peak, agent.rss_kib())
    finally:
        stop.set()
        thread.join()
    skipped = [m for m in messages if m["skipped"]]
    assert skipped, "a flood must be skipped, not sent whole"
    line = re.compile(r"^line \d{9} x{100}$")
    for message in messages:
        assert len(message["data"].encode()) <= cap
    # After a skip the data starts on a line boundary, so between skips the text is whole
    # lines. A message may end mid-line (the writer's big write was seen half done) and
    # the next one carries on from there: check the lines of each run between skips.
    runs: list[str] = []
    for message in messages:
        if message["skipped"] or not runs:
            runs.append("")
        runs[-1] += message["data"]
    for text in runs:
        assert all(line.match(row) for row in text.split("\n")[:-1])
    sent = sum(len(m["data"]) for m in messages)
    assert sent + sum(m["skipped"] for m in messages) <= messages[-1]["offset"]
    assert sent <= len(messages) * cap
    assert rss_peak - rss_before < 16 * 1024, "agent RSS grew by %d KiB" % (rss_peak - rss_before)
    print("flood: %d MiB written, %d messages, %d MiB skipped, %d KiB sent, RSS %d -> %d KiB" % (
        written[0] >> 20, len(messages), sum(m["skipped"] for m in messages) >> 20, sent >> 10,
        rss_before, rss_peak))


def test_tail_of_a_huge_sparse_file_returns_at_once(agent, tmp_path):
    big = tmp_path / "huge.log"
    with open(big, "wb") as handle:
        handle.truncate(2 << 30)  # 2 GiB of hole: reading it all would take seconds
    append(big, "step 1\nstep 2\nstep 3\n")
    size = big.stat().st_size
    agent.send({"cmd": "tail", "id": "t", "path": str(big), "lines": 2})
    answer = agent.read_kind("tail", id="t", timeout=2)
    assert answer == {"kind": "tail", "v": 1, "id": "t", "path": str(big),
                      "data": "step 2\nstep 3\n", "size": size, "error": None}
    agent.send({"cmd": "follow", "id": "f", "path": str(big), "tail_lines": 1})
    first = agent.read_kind("log", id="f", timeout=2)
    assert (first["data"], first["offset"]) == ("step 3\n", size)
    # More lines than max_bytes holds: the tail is the newest max_bytes from a line start;
    # "step 1" is the end of a line that began 2 GiB earlier in the hole, so it is cut.
    agent.send({"cmd": "tail", "id": "t2", "path": str(big), "lines": 1000, "max_bytes": 4096})
    assert agent.read_kind("tail", id="t2", timeout=2)["data"] == "step 2\nstep 3\n"


def test_tail_reports_problems_in_plain_words(agent, tmp_path):
    agent.send({"cmd": "tail", "id": "m", "path": str(tmp_path / "nope.log"), "lines": 5})
    missing = agent.read_kind("tail", id="m")
    assert (missing["data"], missing["size"], missing["error"]) == ("", None, "no such file: %s" % (tmp_path / "nope.log"))
    agent.send({"cmd": "tail", "id": "d", "path": str(tmp_path), "lines": 5})
    assert agent.read_kind("tail", id="d")["error"] == "not a regular file: %s" % tmp_path
    home = tmp_path / "agent" / "log.txt"
    home.write_text("a\nb\n")
    agent.send({"cmd": "tail", "id": "h", "path": "~/log.txt", "lines": 1})
    answer = agent.read_kind("tail", id="h")
    assert (answer["path"], answer["data"], answer["size"], answer["error"]) == ("~/log.txt", "b\n", 4, None)


def test_tail_of_an_unreadable_file(agent, tmp_path):
    """Root reads any file, so as root the agent runs as `nobody` (setpriv) instead."""
    secret = tmp_path / "secret.log"
    secret.write_text("x\n")
    secret.chmod(0)
    command = {"cmd": "tail", "id": "s", "path": str(secret), "lines": 1}
    if os.geteuid() != 0:
        agent.send(command)
        assert agent.read_kind("tail", id="s")["error"] == "permission denied: %s" % secret
        return
    python = "/usr/bin/python3"  # the venv's interpreter lives under /root, closed to nobody
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "sh", "-c", agent_command.build_agent_command({"interval": 60}, python=python)]
    proc = subprocess.run(argv, input=json.dumps(command) + "\n", capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    (tail,) = [a for a in answers if a.get("kind") == "tail"]
    assert tail["error"] == "permission denied: %s" % secret, proc.stderr


def test_unfollow_stops_messages(agent, tmp_path):
    first, second = tmp_path / "one.log", tmp_path / "two.log"
    first.write_text("")
    second.write_text("")
    agent.send({"cmd": "follow", "id": "one", "path": str(first)})
    agent.send({"cmd": "follow", "id": "two", "path": str(second)})
    agent.read_kind("log", id="one")
    agent.read_kind("log", id="two")
    agent.send({"cmd": "unfollow", "id": "one"})
    append(first, "not wanted\n")
    # Wait for a check cycle after the append to deliver two.log's line: by then one.log
    # was looked at too, had it still been followed.
    agent.send({"cmd": "sample"})
    agent.read_kind("sample")
    append(second, "wanted\n")
    seen = []
    while True:
        message = agent.read()
        seen.append(message)
        if message["kind"] == "log" and message["id"] == "two" and message["data"]:
            break
    assert not [m for m in seen if m.get("id") == "one"], seen


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ({"cmd": "follow", "id": "x"}, "follow: path needs a non-empty string, got None"),
        ({"cmd": "follow", "id": "x", "path": "/tmp", "tail_lines": -1},
         "follow: tail_lines must be a whole number from 0 to 1000000, got -1"),
        ({"cmd": "follow", "id": "x", "path": "/a", "max_bytes": 1.5},
         "follow: max_bytes must be a whole number from 64 to 16777216, got 1.5"),
        ({"cmd": "follow", "id": "x", "path": "/"}, "follow: not a regular file: /"),
        ({"cmd": "unfollow", "id": "x"}, "unfollow: not following anything with id 'x'"),
        ({"cmd": "tail", "id": "x", "path": "/a"}, "tail: lines must be a whole number from 0 to 1000000, got None"),
        ({"cmd": "follow_interval", "id": "x", "seconds": "soon"}, "follow_interval: seconds needs a number, got 'soon'"),
        ({"cmd": "nope", "id": "x"}, "unknown command 'nope'"),
    ],
)
def test_command_errors_carry_the_id(agent, command, message):
    agent.send(command)
    error = agent.read_kind("error")
    assert error == {"kind": "error", "v": 1, "message": message, "id": "x"}
    agent.send({"cmd": "sample"})
    assert agent.read_kind("sample")["kind"] == "sample", "the agent lives on"
