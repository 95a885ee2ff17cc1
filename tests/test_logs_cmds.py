"""`gpuctl logs` and `gpuctl progress` against the real loopback sshd."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sessions.tmux.log_stream import last_lines
from tui.cli import main
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]
DATA = Path(__file__).parent / "data" / "logs"


def pod_config(tmp_path: Path, server, **session) -> Path:
    trust(server)
    entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(tmp_path), "log": "train.log", **session}])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [entry]}))
    return config


@pytest.mark.parametrize("data, n, expected", [
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),
    (b"a\nb\n", 5, b"a\nb\n"),
    (b"a\r50%\r100%\nb\n", 2, b"a\r50%\r100%\nb\n"),
    (b"x\n", 0, b""),
])
def test_last_lines(data, n, expected):
    assert last_lines(data, n) == expected


def test_logs_prints_the_last_lines(sshd, tmp_path, capsysbinary):
    config = pod_config(tmp_path, sshd)
    (tmp_path / "train.log").write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    assert main(["--config", str(config), "logs", "p", "train", "-n", "3"]) == 0
    assert capsysbinary.readouterr().out == b"line 997\nline 998\nline 999\n"


def test_logs_of_a_missing_file_says_so(sshd, tmp_path, capsys):
    config = pod_config(tmp_path, sshd)
    assert main(["--config", str(config), "logs", "p", "train"]) == 1
    assert "cannot read" in capsys.readouterr().err


class Follower:
    """`gpuctl logs -f` in a subprocess, read without blocking."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--config", str(config), "logs", "p", "train", "-n", "2", "-f"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
        self.out = b""
        self.err = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self.sel.register(self.proc.stderr, selectors.EVENT_READ, "err")

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; out={self.out[-300:]!r} err={self.err!r}"
            for key, _ in self.sel.select(min(left, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if key.data == "out":
                    self.out += chunk
                else:
                    self.err += chunk

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_logs_follow_resumes_at_the_exact_byte_after_sshd_restarts(sshd_fresh, tmp_path):
    config = pod_config(tmp_path, sshd_fresh)
    log = tmp_path / "train.log"
    log.write_bytes(b"old 1\nold 2\nold 3\n")
    follower = Follower(config)
    try:
        follower.wait_for(b"old 3\n")
        with log.open("ab") as fh:
            fh.write(b"live 1\n")
        follower.wait_for(b"live 1\n")
        sshd_fresh.stop()
        with log.open("ab") as fh:  # written while the link is down
            fh.write(b"while down 1\nwhile down 2\n")
        sshd_fresh.start()
        follower.wait_for(b"while down 2\n", timeout=40)
        with log.open("ab") as fh:
            fh.write(b"after\n")
        follower.wait_for(b"after\n")
        assert follower.out == b"old 2\nold 3\nlive 1\nwhile down 1\nwhile down 2\nafter\n"
        assert b"reconnecting" in follower.err
    finally:
        follower.close()


def test_logs_follow_reads_a_truncated_log_from_its_start(sshd, tmp_path):
    config = pod_config(tmp_path, sshd)
    log = tmp_path / "train.log"
    log.write_bytes(b"run 1 line\n" * 3)
    follower = Follower(config)
    try:
        follower.wait_for(b"run 1 line\n")
        log.write_bytes(b"run 2 starts\n")  # truncate + rewrite, like a restarted run
        follower.wait_for(b"run 2 starts\n")
    finally:
        follower.close()


def test_progress_json_has_exactly_the_documented_keys(capsys):
    assert main(["progress", str(DATA / "hf_trainer.file.log"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["format", "step", "total", "rate", "rate_unit", "loss", "lr", "tokens_per_s", "epoch", "eta_s",
                         "slowest_rank", "ranks", "recent_rate", "missing"]
    assert doc["format"] == "hf_trainer" and doc["step"] == doc["total"] and doc["rate"] > 0


def test_progress_of_an_unrecognised_file_explains_what_to_do(tmp_path, capsys):
    path = tmp_path / "plain.log"
    path.write_text("hello\nworld\n")
    assert main(["progress", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recognised no training progress" in out and "progress:" in out
    assert main(["progress", str(tmp_path / "missing.log")]) == 2
