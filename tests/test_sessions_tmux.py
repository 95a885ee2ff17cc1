"""Session lifecycle against a real OpenSSH sshd and real tmux: launch, adopt, kill, attach.

The pod here is an `SshdServer` of this module's own, whose sessions get
`HOME=<a temp dir>` (sshd's `SetEnv` overrides the passwd home): launched sessions
write `~/.gpuctl/{logs,sessions}` there, never into the home of whoever runs the
tests, and the tests can read those files directly (the pod is this machine). Its
tmux servers live under the fixture's `TMUX_TMPDIR`, and a pane started without a
user tmux.conf (the pod HOME has none) keeps the default `C-b` prefix.

Every wait is a condition polled against a deadline; no sleep decides a result.
(Past 400 lines: one test per lifecycle step, sharing the fixtures above them.)
"""

from __future__ import annotations

import asyncio
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from sessions.tmux import control as sc
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from sessions.tmux.commands import parse_capture
from tests.support.sshd import SshdServer
from tests.support.tty import Tty
from tui.cli import main
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "ssh", "tmux"), pytest.mark.usefixtures("isolated_home")]

REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pod_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pod-home")


@pytest.fixture(scope="module")
def pod(pod_home: Path):
    with SshdServer(env={"HOME": str(pod_home)}) as server:
        yield server


@pytest.fixture
def cleanup(pod: SshdServer):
    """Names of tmux sessions on the pod to kill after the test, pass or fail."""
    names: list[str] = []
    yield names
    for name in names:
        pod_tmux(pod, "kill-session", "-t", "=" + name)


def write_config(tmp_path: Path, pods: list[dict]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods}, sort_keys=False))
    return path


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def pod_tmux(pod: SshdServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run tmux here against the pod's tmux server (same machine, its TMUX_TMPDIR)."""
    env = {**os.environ, "TMUX_TMPDIR": str(pod.tmux_tmpdir)}
    env.pop("TMUX", None)
    return subprocess.run(["tmux", *args], env=env, capture_output=True, text=True, timeout=10)


def pane(pod: SshdServer, name: str, fmt: str) -> str:
    return pod_tmux(pod, "display-message", "-p", "-t", f"={name}:", fmt).stdout.strip()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def state_of(config_path: Path, pod_name: str, session: str) -> sc.SessionState:
    """`session_control.session_state` through the pod's configured runner."""
    config = parse_config(config_path.read_text(), config_path)

    async def query() -> sc.SessionState:
        async with open_transport(config.pod(pod_name), config.defaults) as runner:
            return await sc.session_state(runner, session, pod_name=pod_name)

    return asyncio.run(query())


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def exit_file(home: Path, name: str) -> Path:
    return home / ".gpuctl" / "sessions" / f"{name}.exit"


def log_file(home: Path, name: str) -> Path:
    return home / ".gpuctl" / "logs" / f"{name}.log"


# --------------------------------------------------------------------- launch

GREETING = "hi 'there' $(not run) `nor this` \"q\""
NASTY = (
    "printf '%s' \"$BASH_EXECUTION_STRING\" > received.txt\n"
    "printf '%s\\n' \"two  spaces\" 'it'\"'\"'s' \"$(echo sub shell)\" \"$GREETING\" \"$PWD\" > args.txt; "
    "echo 'done: \"quoted\"' $((6*7))"
)


async def test_launch_delivers_command_workdir_and_env_intact(pod, pod_home, tmp_path, cleanup):
    trust(pod)
    workdir = pod_home / "work dir"
    workdir.mkdir(exist_ok=True)
    session = {"name": "intact", "command": NASTY, "workdir": "~/work dir", "env": {"GREETING": GREETING}}
    config = parse_config(yaml.safe_dump({"pods": [pod.pod_entry("p", sessions=[session])]}), tmp_path / "c.yaml")
    (pcfg,) = config.pods
    cleanup.append("intact")
    async with open_transport(pcfg, config.defaults) as runner:
        result = await sc.launch(runner, pcfg, "intact")
        assert result == sc.LaunchResult("p", "intact", "~/.gpuctl/logs/intact.log", piped=True)
        wait_until(lambda: read(exit_file(pod_home, "intact")) == "0\n", "the exit file")
        state = await sc.session_state(runner, "intact")
    assert (state.exists, state.running, state.exit_status) == (True, False, 0)
    # tmux may have missed the exit (see session_state); session_state nudged it.
    wait_until(lambda: pane(pod, "intact", "#{pane_dead} #{pane_dead_status}") == "1 0", "pane_dead_status 0")
    assert (workdir / "received.txt").read_bytes() == NASTY.encode()
    assert (workdir / "args.txt").read_text().splitlines() == [
        "two  spaces", "it's", "sub shell", GREETING, str(workdir)]
    log = log_file(pod_home, "intact")
    wait_until(lambda: "[gpuctl] intact exited with status 0" in read(log), "the final line in the log")
    assert 'done: "quoted" 42' in read(log)


def test_a_non_zero_exit_status_is_captured(pod, pod_home, tmp_path, cleanup, capsys):
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[
        {"name": "fail", "command": "echo failing >&2; exit 7"}])])
    cleanup.append("fail")
    assert cli(config, "launch", "p", "fail") == 0
    out = capsys.readouterr().out
    assert "launched session 'fail' on pod 'p'" in out and "~/.gpuctl/logs/fail.log" in out
    wait_until(lambda: read(exit_file(pod_home, "fail")) == "7\n", "the exit file")
    state = state_of(config, "p", "fail")
    assert (state.exists, state.running, state.exit_status) == (True, False, 7)
    wait_until(lambda: pane(pod, "fail", "#{pane_dead} #{pane_dead_status}") == "1 7", "pane_dead_status 7")
    screen = pod_tmux(pod, "capture-pane", "-p", "-t", "=fail:").stdout
    assert "[gpuctl] fail exited with status 7" in parse_capture(screen)
    wait_until(lambda: "failing" in read(log_file(pod_home, "fail")), "stderr in the log")


def test_a_running_session_is_not_launched_twice_and_an_exited_one_is_replaced(
        pod, pod_home, tmp_path, cleanup, capsys):
    trust(pod)
    work = tmp_path / "w"
    work.mkdir()
    command = "echo run; while [ ! -e stop ]; do sleep 0.05; done; rm -f stop; exit 3"
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[
        {"name": "twice", "command": command, "workdir": str(work)}])])
    cleanup.append("twice")
    assert cli(config, "launch", "p", "twice") == 0
    first_pid = wait_until(lambda: pane(pod, "twice", "#{pane_pid}"), "the first pane")
    capsys.readouterr()

    assert cli(config, "launch", "p", "twice") == 1
    assert capsys.readouterr().err.strip() == (
        "gpuctl: session 'twice' is already running on pod 'p' "
        "(attach: gpuctl attach p twice; stop it: gpuctl kill p twice)")
    assert pane(pod, "twice", "#{pane_pid}") == first_pid

    (work / "stop").touch()
    wait_until(lambda: read(exit_file(pod_home, "twice")) == "3\n", "the first run to exit")
    assert cli(config, "launch", "p", "twice") == 0
    assert "replacing the one that had exited with status 3" in capsys.readouterr().out
    assert pane(pod, "twice", "#{pane_dead}") == "0"
    assert pane(pod, "twice", "#{pane_pid}") != first_pid
    wait_until(lambda: not exit_file(pod_home, "twice").exists(), "the stale exit file to go")
    assert pod_tmux(pod, "list-sessions", "-F", "#{session_name}").stdout.split().count("twice") == 1


async def test_a_configured_log_is_followed_and_not_piped(pod, pod_home, tmp_path, cleanup):
    trust(pod)
    session = {"name": "ownlog", "workdir": "~/own", "log": "out/train.log",
               "command": "mkdir -p out && echo own-line > out/train.log; echo pane-line"}
    config = parse_config(yaml.safe_dump({"pods": [pod.pod_entry("p", sessions=[session])]}), tmp_path / "c.yaml")
    (pcfg,) = config.pods
    (pod_home / "own").mkdir(exist_ok=True)
    cleanup.append("ownlog")
    async with open_transport(pcfg, config.defaults) as runner:
        result = await sc.launch(runner, pcfg, "ownlog")
    assert (result.log_path, result.piped) == ("~/own/out/train.log", False)
    assert result.log_path == sc.log_path_for(pcfg.session("ownlog"))
    wait_until(lambda: read(exit_file(pod_home, "ownlog")) == "0\n", "the exit file")
    assert read(pod_home / "own" / "out" / "train.log") == "own-line\n"
    assert pane(pod, "ownlog", "#{pane_pipe}") == "0"
    assert not log_file(pod_home, "ownlog").exists()


# ---------------------------------------------------------------------- adopt


async def test_adopt_a_session_made_by_plain_tmux(pod, pod_home, tmp_path, cleanup):
    trust(pod)
    go = tmp_path / "go"
    script = f"echo before-adopt; while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; echo after-adopt; sleep 300"
    cleanup.append("hand")
    made = subprocess.run(pod.ssh_argv("tmux new -d -s hand " + shlex.quote(script)),
                          capture_output=True, text=True, timeout=20)
    assert made.returncode == 0, made.stderr
    wait_until(lambda: "before-adopt" in pod_tmux(pod, "capture-pane", "-p", "-t", "=hand:").stdout, "the hand session")
    config = parse_config(yaml.safe_dump({"pods": [pod.pod_entry("p")]}), tmp_path / "c.yaml")
    (pcfg,) = config.pods
    async with open_transport(pcfg, config.defaults) as runner:
        adopted = await sc.adopt(runner, "hand", pod_name="p")
        assert adopted == sc.AdoptResult("hand", "~/.gpuctl/logs/hand.log", started_pipe=True)
        go.touch()
        log = log_file(pod_home, "hand")
        wait_until(lambda: "after-adopt" in read(log), "output after adopt in the log")
        assert "before-adopt" not in read(log)
        # Adopting again must not toggle the pipe off (pipe-pane -o would).
        again = await sc.adopt(runner, "hand", pod_name="p")
        assert again == sc.AdoptResult("hand", "~/.gpuctl/logs/hand.log", started_pipe=False)
        assert pane(pod, "hand", "#{pane_pipe} #{pane_dead}") == "1 0"
        with pytest.raises(sc.SessionNotFound, match="no tmux session 'nope' on pod 'p' to adopt"):
            await sc.adopt(runner, "nope", pod_name="p")


# ----------------------------------------------------------------------- kill


def test_kill_asks_refuses_without_a_terminal_and_is_idempotent(pod, tmp_path, cleanup, capsys, monkeypatch):
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[{"name": "k", "command": "sleep 300"}])])
    cleanup.append("k")
    assert cli(config, "launch", "p", "k") == 0
    capsys.readouterr()

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli(config, "kill", "p", "k") == 2
    assert "pass --yes to kill without a prompt" in capsys.readouterr().err

    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    assert cli(config, "kill", "p", "k") == 1
    err = capsys.readouterr().err
    assert "Kill session 'k' on pod 'p' (running: sleep 300)? [y/N]" in err and "not killed" in err
    assert pane(pod, "k", "#{pane_dead}") == "0"

    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    assert cli(config, "kill", "p", "k") == 0
    assert "killed session 'k' on pod 'p'" in capsys.readouterr().out
    assert pod_tmux(pod, "has-session", "-t", "=k").returncode != 0

    assert cli(config, "kill", "p", "k", "--yes") == 0
    assert "no session 'k' on pod 'p'; nothing to kill" in capsys.readouterr().err


def test_kill_yes_of_an_exited_session(pod, pod_home, tmp_path, cleanup, capsys):
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[{"name": "kx", "command": "exit 4"}])])
    cleanup.append("kx")
    assert cli(config, "launch", "p", "kx") == 0
    wait_until(lambda: read(exit_file(pod_home, "kx")) == "4\n", "the exit file")
    assert cli(config, "kill", "p", "kx", "--yes") == 0
    assert pod_tmux(pod, "has-session", "-t", "=kx").returncode != 0


# --------------------------------------------------------------------- attach


def test_attach_for_real_and_detach_back_to_the_shell(pod, tmp_path, cleanup, capsys):
    """`gpuctl attach` in a pane of a private local tmux: see the remote session,
    press C-b d, and land back at the pane's shell with status 0."""
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[
        {"name": "att", "command": "echo ATTACH-MARKER-$((6*7)); sleep 300"}])])
    cleanup.append("att")
    assert cli(config, "launch", "p", "att") == 0
    # Not under tmp_path: a unix socket's path has at most 107 bytes, and tmp_path is
    # longer under pytest-xdist (.../popen-gw0/...); the socket would not bind.
    outer_dir = Path(tempfile.mkdtemp(prefix="gpuctl-outer-"))
    env = {**os.environ, "TMUX_TMPDIR": str(outer_dir)}
    env.pop("TMUX", None)
    outer = ["tmux", "-L", "gpuctl-test-outer", "-f", "/dev/null"]
    attach = shlex.join([sys.executable, "-m", "tui.cli", "--config", str(config), "attach", "p", "att"])
    script = f'{attach}; echo "ATTACH-EXIT=$?"; exec sh'
    subprocess.run([*outer, "new-session", "-d", "-s", "outer", "-x", "160", "-y", "40", "-c", str(REPO_ROOT),
                    "sh -c " + shlex.quote(script)], env=env, check=True, timeout=10)

    def screen() -> list[str]:
        done = subprocess.run([*outer, "capture-pane", "-p", "-t", "=outer:"], env=env,
                              capture_output=True, text=True, timeout=10)
        return parse_capture(done.stdout)

    try:
        wait_until(lambda: any("ATTACH-MARKER-42" in line for line in screen()), "the remote session on screen", 20)
        subprocess.run([*outer, "send-keys", "-t", "=outer:", "C-b", "d"], env=env, check=True, timeout=10)
        wait_until(lambda: "ATTACH-EXIT=0" in screen(), "attach to exit 0 after detaching", 20)
        # Back at the pane's own shell: it reads and runs what is typed next.
        subprocess.run([*outer, "send-keys", "-t", "=outer:", "-l", "echo BACK-$((40+2))"], env=env, check=True, timeout=10)
        subprocess.run([*outer, "send-keys", "-t", "=outer:", "Enter"], env=env, check=True, timeout=10)
        wait_until(lambda: "BACK-42" in screen(), "the outer shell to answer")
        assert pane(pod, "att", "#{pane_dead} #{session_attached}") == "0 0", "detaching leaves it running"
    finally:
        subprocess.run([*outer, "kill-server"], env=env, capture_output=True, timeout=10)
        shutil.rmtree(outer_dir, ignore_errors=True)


def test_attach_to_a_missing_session_says_so(pod, tmp_path, capsys):
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[{"name": "ghost", "command": "true"}])])
    assert cli(config, "attach", "p", "ghost") == 1
    assert "no tmux session 'ghost' on pod 'p' (start it: gpuctl launch p ghost)" in capsys.readouterr().err


def test_attach_without_a_terminal_is_refused_before_exec(pod, tmp_path, cleanup, capsys, monkeypatch):
    trust(pod)
    config = write_config(tmp_path, [pod.pod_entry("p", sessions=[{"name": "notty", "command": "sleep 300"}])])
    cleanup.append("notty")
    assert cli(config, "launch", "p", "notty") == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli(config, "attach", "p", "notty") == 2
    assert "gpuctl attach needs a terminal" in capsys.readouterr().err


def test_run_attach_can_run_a_child_instead_of_exec():
    from tui.commands.session_cmds import run_attach

    assert run_attach(["sh", "-c", "exit 3"], replace_process=False) == 3


# -------------------------------------------------------------- config errors


def test_unknown_session_no_command_and_unreachable_pod(pod, tmp_path, refused_port, capsys):
    trust(pod)
    config = write_config(tmp_path, [
        pod.pod_entry("p", sessions=[{"name": "train"}, {"name": "eval", "command": "true"}]),
        {"name": "down", "host": "127.0.0.1", "port": refused_port, "sessions": [{"name": "s", "command": "true"}]},
    ])
    assert cli(config, "launch", "p", "trian") == 2
    assert "no session named 'trian' in pod 'p'; did you mean 'train'?" in capsys.readouterr().err
    assert cli(config, "launch", "p", "train") == 2
    assert "session 'train' on pod 'p' has no command in the config (line" in capsys.readouterr().err
    assert cli(config, "launch", "down", "s") == 1
    assert "gpuctl: pod 'down': connection refused" in capsys.readouterr().err
    assert cli(config, "kill", "down", "s", "--yes") == 1
    assert cli(config, "attach", "down", "s") == 1


# ------------------------------------------------------------------ local pod


@pytest.fixture
def local_tmux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private tmux server dir for `host: local`; the server is killed after."""
    tmpdir = tmp_path / "local-tmux"
    tmpdir.mkdir(mode=0o700)
    tmux = shutil.which("tmux") or "tmux"  # a test may empty PATH
    monkeypatch.setenv("TMUX_TMPDIR", str(tmpdir))
    yield tmpdir
    subprocess.run([tmux, "kill-server"], capture_output=True, timeout=10,
                   env={**os.environ, "TMUX_TMPDIR": str(tmpdir)})


def test_local_pod_launch_and_kill_without_ssh(local_tmux, isolated_home, tmp_path, capsys):
    config_path = write_config(tmp_path, [{"name": "me", "host": "local", "sessions": [
        {"name": "exp-1", "command": "echo local-run; exit 5", "workdir": str(tmp_path)}]}])
    assert cli(config_path, "launch", "me", "exp-1") == 0
    wait_until(lambda: read(exit_file(isolated_home, "exp-1")) == "5\n", "the exit file")
    listed = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
    assert listed.stdout.split() == ["exp-1"]
    state = state_of(config_path, "me", "exp-1")
    assert (state.exists, state.running, state.exit_status) == (True, False, 5)
    wait_until(lambda: "local-run" in read(log_file(isolated_home, "exp-1")), "the local log")
    assert cli(config_path, "kill", "me", "exp-1", "--yes") == 0
    assert subprocess.run(["tmux", "has-session", "-t", "=exp-1"], capture_output=True).returncode != 0


def test_a_pod_without_tmux_gets_the_install_hint(local_tmux, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to("/bin/sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    config = write_config(tmp_path, [{"name": "me", "host": "local", "sessions": [{"name": "s", "command": "true"}]}])
    assert cli(config, "launch", "me", "s") == 1
    err = capsys.readouterr().err
    assert "tmux is not installed on pod 'me'" in err and "apt-get install -y tmux" in err
