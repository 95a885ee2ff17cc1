"""sessions.tmux.commands: every builder quotes everything; every parser reads real tmux output.

No tmux and no pod here. Quoting is checked two ways: by splitting the built
command back with `shlex.split` (what the pod's shell does), and by running the
launch wrapper under plain `sh` with a private HOME, where `bash -c` reports in
`$BASH_EXECUTION_STRING` exactly the command text it received.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from backends.ssh import SshTarget
from sessions.tmux import commands as tmux
from sessions.tmux.commands import SessionState

NASTY_COMMANDS = [
    pytest.param("python train.py --lr 3e-4", id="plain"),
    pytest.param('echo "two  spaces" \'single\' "it\'s"', id="quotes"),
    pytest.param("echo $(echo sub) `echo tick` ${HOME:+set}", id="substitutions"),
    pytest.param("echo one; echo two && echo three || false;", id="separators-and-trailing-semicolon"),
    pytest.param("echo first\necho 'second line'\n", id="newlines"),
    pytest.param("printf '%s\\n' back\\\\slash \"tab\there\" '#{session_name}' '*' ~", id="backslash-tab-format-glob-tilde"),
    pytest.param("echo '\"'\"'\"'; echo \"'\"", id="quote-soup"),
]

NASTY_VALUES = [
    "plain", "two  spaces", "it's", '"double"', "$(touch pwned)", "`touch pwned`",
    "a;b", "line1\nline2", "#{pane_pid}", "back\\slash", "", "*", "~",
]  # fmt: skip


def split_launch(command: str) -> list[str]:
    """The launch command as the pod's shell splits it, from `tmux` on."""
    words = shlex.split(command)
    return words[words.index("tmux"):]


def wrapper_of(command: str) -> str:
    """The wrapper script inside a launch command, unquoted twice as tmux+sh do."""
    shell_command = split_launch(command)[9]
    exec_, sh, dash_c, wrapper = shlex.split(shell_command)
    assert (exec_, sh, dash_c) == ("exec", "sh", "-c")
    return wrapper


@pytest.mark.parametrize("command", NASTY_COMMANDS)
def test_launch_command_shape_and_the_command_inside_it_survive_splitting(command):
    built = tmux.launch_command("train", command, workdir="~/runs/a b", env={"A": "1"},
                                pipe_log="~/.gpuctl/logs/train.log")
    words = shlex.split(built)
    assert words[:words.index("tmux")] == ["mkdir", "-p", "~/.gpuctl/sessions", "~/.gpuctl/logs", "&&"]
    args = split_launch(built)
    assert args[:9] == ["tmux", "new-session", "-d", "-s", "train", "-x", "220", "-y", "50"]
    assert args[10:] == [
        ";", "set-window-option", "-t", "=train:", "remain-on-exit", "on",
        ";", "pipe-pane", "-o", "-t", "=train:", "exec cat >> ~/.gpuctl/logs/train.log",
    ]  # fmt: skip
    wrapper = wrapper_of(built)
    start = wrapper.index('\n"$gpuctl_sh" -c ') + 1
    end = wrapper.index("\ngpuctl_status=$?\n", start)
    assert shlex.split(wrapper[start:end]) == ["$gpuctl_sh", "-c", command]


@pytest.mark.parametrize("command", NASTY_COMMANDS)
def test_no_tmux_argument_but_the_separators_ends_in_a_semicolon(command):
    """tmux reads an argv element ending in ';' as a command separator."""
    args = split_launch(tmux.launch_command("s", command, pipe_log="~/.gpuctl/logs/s.log"))
    assert [a for a in args if a.endswith(";")] == [";", ";"]


def test_without_pipe_log_there_is_no_pipe_pane():
    args = split_launch(tmux.launch_command("s", "true"))
    assert "pipe-pane" not in args and args[-3:] == ["=s:", "remain-on-exit", "on"]
    assert "~/.gpuctl/logs" not in shlex.split(tmux.launch_command("s", "true"))


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_env_values_are_exported_verbatim(value):
    lines = wrapper_of(tmux.launch_command("s", "true", env={"V": value})).split("\n")
    export = next(i for i, line in enumerate(lines) if line.startswith("export V="))
    # A value with a newline spans lines of the script; rejoin up to the next statement.
    end = next(i for i in range(export, len(lines)) if lines[i].startswith("if command -v bash"))
    assert shlex.split("\n".join(lines[export:end])) == ["export", f"V={value}"]


@pytest.mark.parametrize("bad", ["1X", "A-B", "A B", "$(x)", "A;B", ""])
def test_env_names_must_be_identifiers(bad):
    with pytest.raises(ValueError, match="not a shell identifier"):
        tmux.launch_command("s", "true", env={bad: "v"})


@pytest.mark.parametrize("workdir, expected", [
    (None, "~"),
    ("~", "~"),
    ("~/runs", "~/runs"),
    ("~/my runs/it's", "~/'my runs/it'\"'\"'s'"),
    ("runs/a b", "~/'runs/a b'"),
    ("/abs/x y", "'/abs/x y'"),
    ("/x/$(reboot)", "'/x/$(reboot)'"),
])  # fmt: skip
def test_pod_dir_keeps_the_tilde_and_puts_relative_paths_under_home(workdir, expected):
    assert tmux.pod_dir(workdir) == expected


def _run_wrapper(tmp_path: Path, name: str, command: str, workdir: str | None, env: dict[str, str]):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    wrapper = tmux.wrapper_script(name, command, workdir=workdir, env=env)
    done = subprocess.run(["sh", "-c", wrapper], capture_output=True, text=True, timeout=20,
                          env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return home, done


@pytest.mark.parametrize("command", NASTY_COMMANDS)
def test_the_wrapper_hands_bash_the_command_byte_for_byte(tmp_path, command):
    received = tmp_path / "received"
    probe = f"printf '%s' \"$BASH_EXECUTION_STRING\" > {shlex.quote(str(received))}\n" + command
    home, done = _run_wrapper(tmp_path, "t", probe, None, {})
    assert received.read_text() == probe, done.stderr
    assert (home / ".gpuctl" / "sessions" / "t.exit").read_text() == f"{done.returncode}\n"


def test_the_wrapper_runs_in_workdir_with_env_and_records_the_status(tmp_path):
    (tmp_path / "home" / "a b").mkdir(parents=True)
    env = {"GREETING": "it's $(not run) `nor this`", "EMPTY": ""}
    cmd = 'printf "%s|%s|%s" "$PWD" "$GREETING" "${EMPTY-unset}"; exit 7'
    home, done = _run_wrapper(tmp_path, "exp.1", cmd, "~/a b", env)
    assert done.returncode == 7
    assert done.stdout.startswith(f"{home}/a b|it's $(not run) `nor this`|")
    assert done.stdout.endswith("\n[gpuctl] exp.1 exited with status 7\n")
    assert (home / ".gpuctl" / "sessions" / "exp.1.exit").read_text() == "7\n"
    assert not (home / ".gpuctl" / "sessions" / "exp.1.exit.tmp").exists()


def test_a_missing_workdir_is_status_1_and_the_command_does_not_run(tmp_path):
    home, done = _run_wrapper(tmp_path, "t", "touch ran", "/nonexistent/dir", {})
    assert done.returncode == 1 and "nonexistent" in done.stderr
    assert (home / ".gpuctl" / "sessions" / "t.exit").read_text() == "1\n"
    assert not (home / "ran").exists()


def test_a_stale_exit_file_is_removed_before_the_command_runs(tmp_path):
    state = tmp_path / "home" / ".gpuctl" / "sessions"
    state.mkdir(parents=True)
    (state / "t.exit").write_text("99\n")
    seen = tmp_path / "seen"
    _run_wrapper(tmp_path, "t", f"test -e ~/.gpuctl/sessions/t.exit; echo $? > {shlex.quote(str(seen))}", None, {})
    assert seen.read_text() == "1\n"


def test_ctrl_c_ends_the_command_but_the_status_is_still_recorded(tmp_path):
    home, done = _run_wrapper(tmp_path, "t", "kill -INT $$", None, {})
    assert done.returncode == 130
    assert (home / ".gpuctl" / "sessions" / "t.exit").read_text() == "130\n"


# ---------------------------------------------------------------- targets, names


@pytest.mark.parametrize("name", ["train", "my run", "-x"])
def test_every_builder_targets_the_exact_name(name):
    assert shlex.split(tmux.state_command(name))[:6] == ["tmux", "-u", "list-panes", "-s", "-t", f"={name}:"]
    assert shlex.split(tmux.kill_command(name)) == ["tmux", "kill-session", "-t", f"={name}"]
    assert shlex.split(tmux.capture_command(name, 50)) == [
        "tmux", "capture-pane", "-p", "-J", "-S", "-50", "-t", f"={name}:"]
    pipe = shlex.split(tmux.pipe_pane_command(name, "~/.gpuctl/logs/x.log"))
    assert pipe[pipe.index("tmux"):][:5] == ["tmux", "pipe-pane", "-o", "-t", f"={name}:"]
    assert split_launch(tmux.launch_command(name, "true"))[4] == name


@pytest.mark.parametrize("name", ["", "run.1", "a:b"])
def test_names_no_tmux_session_can_have_are_refused_by_every_builder(name):
    for build in (tmux.state_command, tmux.kill_command, tmux.capture_command,
                  lambda n: tmux.launch_command(n, "true"), lambda n: tmux.attach_argv(None, n)):
        with pytest.raises(ValueError):
            build(name)


def test_pipe_command_refuses_what_tmux_would_expand_and_quotes_the_path():
    words = shlex.split(tmux.pipe_pane_command("s", "~/logs/it's.log"))
    assert words[-1] == "exec cat >> ~/'logs/it'\"'\"'s.log'"
    for path in ("~/logs/#1.log", "~/logs/%H.log"):
        with pytest.raises(ValueError):
            tmux.pipe_command(path)


def test_exit_file_and_existence_probes_quote_their_paths():
    words = shlex.split(tmux.reap_and_read_exit_command("a b"))
    assert words[:2] == ["sh", "-c"] and words[3:] == ["sh", "=a b:", "~/.gpuctl/sessions/a b.exit"]
    assert shlex.split(tmux.path_exists_command("~/x y")) == ["test", "-e", "~/x y"]


def _target(**kw) -> SshTarget:
    base = dict(name="a100", alias="a100", hostname="10.0.0.5", port=2222, user="ubuntu",
                identities=("/k/id",), gpuctl_known_hosts="/d/known_hosts")
    return SshTarget(**{**base, **kw})


@pytest.mark.parametrize("name", ["train", "my run", "$(reboot)"])
def test_attach_argv_remote_is_the_pods_ssh_settings_plus_one_quoted_command(name):
    target = _target()
    argv = tmux.attach_argv(target, name)
    assert argv[:-1] == target.ssh_argv(tty=True) and "-t" in argv[:-1]
    assert shlex.split(argv[-1]) == ["tmux", "attach-session", "-t", "=" + name]


def test_attach_argv_local():
    assert tmux.attach_argv(None, "my run") == ["tmux", "attach-session", "-t", "=my run"]
    assert tmux.attach_argv(None, "x", inside_tmux=True) == ["tmux", "switch-client", "-t", "=x"]


# ------------------------------------------------------------------------ parsers


@pytest.mark.parametrize("stdout, expected", [
    # Captured from tmux 3.3a with STATE_FORMAT.
    ("s|11|0||17812|0|sleep\n",
     SessionState("s", True, running=True, pid=17812, current_command="sleep")),
    ("s|11|1|3|14806|1|sh\n",
     SessionState("s", True, running=False, exit_status=3, pid=14806, piped=True, current_command="sh")),
    ("s|11|1||14806|0|\n",  # tmux without pane_dead_status
     SessionState("s", True, running=False, exit_status=None, pid=14806)),
    # Two windows: the second is the current one, and one pane still runs.
    ("s|10|1|0|100|0|bash\ns|11|0||200|1|python\n",
     SessionState("s", True, running=True, pid=200, piped=True, current_command="python")),
    ("s|10|1|0|100|0|bash\ns|11|1|2|200|0|python\n",
     SessionState("s", True, running=False, exit_status=2, pid=200, current_command="python")),
    ("s|11|0||7|0|my|command\n",
     SessionState("s", True, running=True, pid=7, current_command="my|command")),
    # Another session's panes (tmux 3.3a listed `s2` for `=s`) are not this one's.
    ("s2|11|0||7|0|sleep\n", SessionState("s", False)),
    ("s|x|11|0||7|0|sleep\n", SessionState("s", False)),  # the session `s|x`
    ("", SessionState("s", False)),
])  # fmt: skip
def test_parse_state(stdout, expected):
    assert tmux.parse_state("s", stdout) == expected


def test_parse_state_rejects_other_output():
    with pytest.raises(ValueError, match="unexpected tmux"):
        tmux.parse_state("s", "usage: list-panes [-as]\n")


@pytest.mark.parametrize("stderr, missing", [
    ("can't find session: nosuch\n", True),
    ("can't find window: nosuch\n", True),
    ("no server running on /tmp/tmux-0/default\n", True),
    ("error connecting to /tmp/tmux-0/default (No such file or directory)\n", True),
    ("error connecting to /tmp/tmux-0/default (Connection refused)\n", True),
    ("error connecting to /tmp/tmux-0/default (Permission denied)\n", False),
    ("duplicate session: train\n", False),
    ("", False),
])  # fmt: skip
def test_is_missing(stderr, missing):
    assert tmux.is_missing(stderr) is missing


@pytest.mark.parametrize("status, stderr, missing", [
    (127, "sh: 1: tmux: not found\n", True),
    (127, "bash: line 1: tmux: command not found\n", True),
    (1, "can't find session: x\n", False),
])  # fmt: skip
def test_tmux_not_installed(status, stderr, missing):
    assert tmux.tmux_not_installed(status, stderr) is missing


def test_parse_capture_drops_the_blank_rows_below_the_output():
    assert tmux.parse_capture("hi\n\nthere\n\n\n   \n") == ["hi", "", "there"]
    assert tmux.parse_capture("") == []


@pytest.mark.parametrize("text, status", [("0\n", 0), ("137\n", 137), ("", None), ("garbage", None)])
def test_parse_exit_file(text, status):
    assert tmux.parse_exit_file(text) == status
