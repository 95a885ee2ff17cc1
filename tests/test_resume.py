"""Resume from the newest checkpoint, against a real sshd and real tmux.

The relaunched command is a tiny Python program that writes the argv it received to
a file, so the test can check the checkpoint path arrived as one intact argument,
spaces and quotes included. Waits poll a condition against a deadline.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from sessions.tmux import control as sc
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from sessions.checkpoints.resume import NoCheckpointToResume, NoResumeTemplate, fill_template, resumable, resume
from tests.support.sshd import SshdServer
from tui.cli import main
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]

OLD = time.time() - 3600
# Writes its argv (after the script name) NUL-separated to `received`, then runs
# until a `stop` file appears, so "still running" is under the test's control.
RECORDER = (
    "python3 -c 'import sys, os, time\n"
    "open(\"received\", \"wb\").write(b\"\\0\".join(a.encode() for a in sys.argv[1:]))\n"
    "while not os.path.exists(\"stop\"): time.sleep(0.02)\n"
    "os.remove(\"stop\")'"
)


@pytest.fixture(scope="module")
def pod_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pod-home")


@pytest.fixture(scope="module")
def server(pod_home: Path):
    with SshdServer(env={"HOME": str(pod_home)}) as srv:
        yield srv


@pytest.fixture
def cleanup(server: SshdServer):
    names: list[str] = []
    yield names
    env = {**os.environ, "TMUX_TMPDIR": str(server.tmux_tmpdir)}
    env.pop("TMUX", None)
    for name in names:
        subprocess.run(["tmux", "kill-session", "-t", "=" + name], env=env, capture_output=True, timeout=10)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def put(path: Path, data: bytes = b"x", mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def setup(server: SshdServer, tmp_path: Path, workdir: Path, **session: Any) -> Path:
    trust(server)
    entry = server.pod_entry("p", sessions=[{"name": "train", "command": "true", "workdir": str(workdir), **session}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}))
    return path


def received(workdir: Path) -> list[str] | None:
    try:
        return (workdir / "received").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------- templates


PATH = "/w/it's a \"dir\"/step 5.pt"


@pytest.mark.parametrize("template, expected", [
    ("train.py --resume {checkpoint}", ["train.py", "--resume", PATH]),
    ("train.py --resume '{checkpoint}'", ["train.py", "--resume", PATH]),
    ('train.py --resume "{checkpoint}"', ["train.py", "--resume", PATH]),
    ("a {checkpoint} b={checkpoint} --cfg '{\"lr\": 1}'", ["a", PATH, f"b={PATH}", "--cfg", '{"lr": 1}']),
])
def test_fill_template_passes_the_path_as_one_word(template, expected):
    command = fill_template("printf '%s\\n' " + template, PATH)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == expected


def test_fill_template_exports_the_path_and_refers_to_it():
    assert fill_template("x --resume {checkpoint}", "/w/step_5.pt") == \
        'export GPUCTL_CHECKPOINT=/w/step_5.pt; x --resume "$GPUCTL_CHECKPOINT"'


def test_no_template_says_how_to_add_one(server, tmp_path, capsys):
    config_path = setup(server, tmp_path, tmp_path)
    config = parse_config(config_path.read_text(), config_path)
    with pytest.raises(NoResumeTemplate, match=r"resume: true --resume \{checkpoint\}"):
        resumable(config.pod("p"), "train")
    assert main(["--config", str(config_path), "resume", "p", "train"]) == 2
    err = capsys.readouterr().err
    assert "has no resume command" in err and "resume:" in err
    config_path = setup(server, tmp_path, tmp_path, resume="python train.py --resume latest")
    assert main(["--config", str(config_path), "resume", "p", "train"]) == 2
    assert "does not mention {checkpoint}" in capsys.readouterr().err
    assert main(["--config", str(config_path), "resume", "p", "nope"]) == 2


# ------------------------------------------------------------ over sshd + tmux


async def test_resume_passes_a_path_with_spaces_and_quotes_intact(server, pod_home, tmp_path, cleanup):
    workdir = tmp_path / "run it's \"quoted\""
    put(workdir / "step_100.pt")
    put(workdir / "step_200.pt")
    put(workdir / "step_300.pt", mtime=time.time())  # still being written: not this one
    config_path = setup(server, tmp_path, workdir, resume=f"{RECORDER} --resume {{checkpoint}} --tag 'a b'")
    config = parse_config(config_path.read_text(), config_path)
    pod = config.pod("p")
    cleanup.append("train")
    async with open_transport(pod, config.defaults) as runner:
        result = await resume(runner, pod, "train")
        args = wait_until(lambda: received(workdir), "the relaunched command's argv")
        state = await sc.session_state(runner, "train")
    expected = os.path.realpath(workdir) + "/step_200.pt"
    assert args == ["--resume", expected, "--tag", "a b"]
    assert result.checkpoint.name == "step_200.pt" and result.killed_running is False
    assert result.launch.name == "train" and result.launch.log_path == "~/.gpuctl/logs/train.log"
    assert state.running
    (workdir / "stop").write_text("")
    exit_file = pod_home / ".gpuctl" / "sessions" / "train.exit"
    wait_until(lambda: exit_file.exists() and exit_file.read_text() == "0\n", "the launch wrapper's exit file")


def test_resume_refuses_a_running_session_unless_restart(server, tmp_path, cleanup, capsys):
    workdir = tmp_path / "run"
    put(workdir / "step_1.pt")
    config_path = setup(server, tmp_path, workdir, resume=f"{RECORDER} {{checkpoint}}")
    cleanup.append("train")
    cli = ["--config", str(config_path), "resume", "p", "train"]
    assert main(cli) == 0
    out = capsys.readouterr().out
    assert "resumed session 'train' on pod 'p' from step_1.pt" in out and "gpuctl attach p train" in out
    wait_until(lambda: received(workdir), "the first run")
    (workdir / "received").unlink()
    put(workdir / "step_2.pt")
    assert main(cli) == 1
    err = capsys.readouterr().err
    assert "still running" in err and "gpuctl resume p train --restart" in err
    assert received(workdir) is None
    assert main([*cli, "--restart"]) == 0
    assert "after killing the running one" in capsys.readouterr().out
    args = wait_until(lambda: received(workdir), "the restarted run")
    assert args == [os.path.realpath(workdir) + "/step_2.pt"]
    (workdir / "stop").write_text("")


def test_resume_with_no_complete_checkpoint_is_exit_1(server, tmp_path, capsys):
    workdir = tmp_path / "run"
    put(workdir / "checkpoint-5" / "model.safetensors")  # no trainer_state.json
    config_path = setup(server, tmp_path, workdir, resume="python train.py {checkpoint}")
    assert main(["--config", str(config_path), "resume", "p", "train"]) == 1
    assert "no complete checkpoint to resume session 'train'" in capsys.readouterr().err
    assert issubclass(NoCheckpointToResume, sc.SessionError)


def test_resume_is_refused_by_a_read_only_config(server, tmp_path, capsys):
    config_path = setup(server, tmp_path, tmp_path, resume="x {checkpoint}")
    config_path.write_text(config_path.read_text() + "read_only: true\n")
    assert main(["--config", str(config_path), "resume", "p", "train"]) == 2
    assert "read_only" in capsys.readouterr().err
