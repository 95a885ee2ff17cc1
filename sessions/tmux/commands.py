"""Every tmux command gpuctl sends to a pod, and the parsers of what they print.

One module so the quoting can be audited in one place: each builder is a pure
function that returns a shell command string made of `shlex.quote`d parts (or, for
attach, an argv list). Nothing here does I/O; `sessions.tmux.control` runs these
commands through a `backends.runner.Runner`.

Conventions that hold for every builder:

* **Exact targets.** A session is targeted as `=NAME` (exact match: a bare `train`
  would also match `train2` by prefix) and a window or pane as `=NAME:` (that
  session's current window/active pane; tmux reads `.` and `:` in a bare target as
  window/pane separators). `=NAME` alone is not enough where tmux expects a window
  (list-panes): tmux 3.3a then resolves `=train` to a session `train2`, so those
  targets carry the `:`, and the state listing also checks each pane's
  `#{session_name}` against the name asked for.
* **Names exactly as given, or refused.** tmux rewrites some names (`.` and `:`
  become `_`, `#` is format-expanded, `\\` and `$` are escaped), and a rewritten
  name collides with another (`a.b` and `a_b`). So no builder maps names:
  `tmux_name_problem` says what tmux would do to a name, launch refuses such
  names, and lookups refuse the ones no tmux session can have (`.`, `:`).
* **No argument ends in `;`.** tmux treats an argv element ending in `;` as a
  command separator. Separators here are the bare `';'` words; every other argument
  ends in a quote or a name character.
* **Pod paths keep `~`.** Paths go through `backends.remote_path.quote_path`, which
  leaves a leading `~` bare so the pod's shell expands it to the pod's home.

It runs past 400 lines on purpose: every tmux command gpuctl sends stays in this one
module so the quoting has one place to audit, and most lines are the docstrings
that say why each command has its shape.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backends.remote_path import quote_path
from sessions.config.names import tmux_name_problem  # noqa: F401  (re-exported: callers ask tmux)

if TYPE_CHECKING:  # config validation imports this module and must not load asyncssh
    from backends.ssh import SshTarget

STATE_DIR = "~/.gpuctl/sessions"
"""Where the launch wrapper records each session's exit status (`<name>.exit`)."""

LOG_DIR = "~/.gpuctl/logs"
"""Where pipe-pane captures go (mirrors `sessions.tmux.logs.LOG_DIR`)."""

PANE_WIDTH, PANE_HEIGHT = 220, 50
"""Size of a detached session's window: wide enough that training logs with long
tqdm bars are not wrapped in `capture-pane` output before anyone attaches."""

TMUX_INSTALL_HINT = (
    "install it on the pod (Debian/Ubuntu: apt-get install -y tmux; "
    "Fedora/RHEL: dnf install -y tmux; Alpine: apk add tmux), or put it on the PATH "
    "that non-interactive SSH commands get"
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# list-panes -F: one line per pane, fields split by `|`. The two free-text fields go
# at the ends: the session name first, the command name last, with fields of fixed
# shape between them (`_PANE_FIELDS`), so a `|` in either cannot shift the others.
# Not tabs: tmux prints control characters as `_` when the client's locale is not
# UTF-8 (an SSH exec channel's); `-u` (see `state_command`) keeps names intact.
STATE_FORMAT = (
    "#{session_name}"
    "|#{window_active}#{pane_active}"
    "|#{pane_dead}"
    "|#{pane_dead_status}"
    "|#{pane_pid}"
    "|#{pane_pipe}"
    "|#{pane_current_command}"
)
_PANE_FIELDS = r"\|([01]{2})\|([01])\|(-?\d*)\|(\d*)\|([01])\|(.*)"
"""What follows the session name on a `STATE_FORMAT` line (tmux too old for
`pane_dead_status` prints it empty)."""


# What tmux prints when the session (or the whole server) is not there. A socket
# that exists but refuses is a server that died: no sessions either. Any other
# "error connecting" (permission denied) is a real error and is not listed here.
_MISSING_MARKERS = (
    "can't find session",
    "can't find window",
    "can't find pane",
    "session not found",
    "no server running",
    "no sessions",
)
_MISSING_CONNECT_REASONS = ("no such file or directory", "connection refused")


# ------------------------------------------------------------------ names, paths


def _exact(name: str, *, existing: bool = True) -> str:
    """`name` itself, when tmux can hold a session of exactly that name.

    Raises:
        ValueError: with `tmux_name_problem`'s sentence.
    """
    problem = tmux_name_problem(name, existing=existing)
    if problem:
        raise ValueError(problem)
    return name


def session_target(name: str) -> str:
    """`=NAME`: exactly this session (for has/kill/attach-session).

    Raises:
        ValueError: a name no tmux session can have (see `tmux_name_problem`).
    """
    return "=" + _exact(name)


def pane_target(name: str) -> str:
    """`=NAME:`: the active pane of the session's current window."""
    return session_target(name) + ":"


def pod_dir(path: str | None) -> str:
    """A pod directory as a shell word: `~` expands, a relative path is under the home.

    A relative workdir means "relative to the pod's home", like a path given to `ssh`
    or `scp`. It is spelled `~/...` rather than relied on as the current directory,
    because the current directory of a tmux pane is whatever the *client* had: the
    home for SSH, but gpuctl's own cwd for a local pod.
    """
    path = pod_path(path)
    return path if path == "~" else quote_path(path)


def pod_path(path: str | None) -> str:
    """`pod_dir`'s path unquoted, for a program on the pod that expands `~` itself (the agent)."""
    if not path or path == "~":
        return "~"
    if not path.startswith(("/", "~")):
        return "~/" + path
    return path


def exit_file(name: str) -> str:
    """The pod path where the launch wrapper records the session's exit status."""
    return f"{STATE_DIR}/{name}.exit"


def _tmux(*args: str) -> str:
    return shlex.join(["tmux", *args])


# ------------------------------------------------------------------------ launch


def wrapper_script(
    name: str,
    command: str,
    *,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The POSIX sh script that runs one session's command inside its tmux pane.

    In order, it:

    1. traps INT, TERM and HUP with a no-op, so that Ctrl-C in the pane ends the
       user's command but not the wrapper, which still records the status (130).
       A trap with a command, unlike an ignored signal, is reset to the default in
       the child, so the command itself still dies of Ctrl-C as usual;
    2. removes the previous run's exit file, so a stale status is never read as this
       run's;
    3. `cd`s into the workdir (`~`, `~/x` and relative paths are the pod's home,
       see `pod_dir`); if that fails, the status is 1 and the command does not run;
    4. `export`s each env var (names checked, values quoted);
    5. runs the command with `bash -c` when the pod has bash, else `sh -c`. The
       command travels as one quoted word, so quotes, spaces, `$(...)`, `;` and
       newlines reach that shell intact and are interpreted there exactly once.
       bash is preferred because the most common first half of a training command,
       `source .venv/bin/activate`, is not POSIX and fails under dash (Debian's sh);
    6. prints `[gpuctl] NAME exited with status N` to the pane, so a person who
       attaches to the dead pane sees how it ended (pipe-pane logs it too);
    7. writes the status to `~/.gpuctl/sessions/NAME.exit` (tmp + mv, so a reader
       never sees a half-written file) and exits with it, so tmux's
       `#{pane_dead_status}` agrees with the file.

    Raises:
        ValueError: an env var name that is not a shell identifier.
    """
    lines = [
        "trap : INT",
        f"mkdir -p {quote_path(STATE_DIR)}",
        f"rm -f {quote_path(exit_file(name))}",
        f"if cd {pod_dir(workdir)}; then",
    ]
    for key, value in (env or {}).items():
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"environment variable name {key!r} is not a shell identifier")
        lines.append(f"export {key}={shlex.quote(value)}")
    lines += [
        "if command -v bash >/dev/null 2>&1; then gpuctl_sh=bash; else gpuctl_sh=sh; fi",
        f'"$gpuctl_sh" -c {shlex.quote(command)}',
        "gpuctl_status=$?",
        "else gpuctl_status=1",
        "fi",
        f"printf '\\n[gpuctl] %s exited with status %s\\n' {shlex.quote(name)} \"$gpuctl_status\"",
        (f"printf '%s\\n' \"$gpuctl_status\" > {quote_path(exit_file(name) + '.tmp')}"
         f" && mv -f {quote_path(exit_file(name) + '.tmp')} {quote_path(exit_file(name))}"),
        'exit "$gpuctl_status"',
    ]
    return "\n".join(lines)


def pipe_command(log_path: str) -> str:
    """The shell command pipe-pane runs: append the pane's output to `log_path`.

    tmux runs it with /bin/sh and the tmux server's environment, so `~` is the pod's
    home. tmux also expands this argument first, and how differs by version: 3.3a
    runs it through strftime (`%H` became the hour in a log name) and then its
    format expander (`#{...}`, `#(...)`, with `#[` kept as is), older ones less. No
    escaping is right for all of them, so the path must hold neither `#` nor `%`:
    `sessions.tmux.logs.default_log_path` spells every session's log that way.

    Raises:
        ValueError: a path with `#` or `%`.
    """
    if "#" in log_path or "%" in log_path:
        raise ValueError(f"tmux would expand '#' or '%' in the pipe-pane log path {log_path!r}")
    return f"exec cat >> {quote_path(log_path)}"


def launch_command(
    name: str,
    command: str,
    *,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
    pipe_log: str | None = None,
) -> str:
    """Start a detached session running `command` through `wrapper_script`.

    Shape (one tmux invocation, commands separated by bare `';'` words)::

        mkdir -p ~/.gpuctl/sessions [~/.gpuctl/logs] &&
        tmux new-session -d -s NAME -x 220 -y 50 'exec sh -c <quoted wrapper>' \\
          ';' set-window-option -t =NAME: remain-on-exit on \\
          [';' pipe-pane -o -t =NAME: 'exec cat >> <pipe_log>']

    * `exec sh -c '...'` is what tmux hands to the user's default-shell (`$SHELL
      -c`); a single `shlex.quote`d word is valid in sh, bash and zsh alike, and the
      `exec` leaves sh as the pane's process so its exit status is the pane's.
      (fish reads `\\\\` inside single quotes as an escape: a command containing a
      backslash needs a POSIX default-shell.) `new-session -e` is not used: tmux
      before 3.0 lacks it; the wrapper exports the env itself.
    * `remain-on-exit` keeps the dead pane, so `#{pane_dead_status}` and the last
      screen stay readable after the command ends; it is set on this window only.
    * pipe-pane runs in the same invocation as new-session, before the server reads
      anything from the new pane, so no early output is missed. `-o` opens a pipe
      only when none exists (on a new pane there is none). Pass `pipe_log=None` when
      the session writes its own `log:` file.

    Raises:
        ValueError: a bad env var name, or a name tmux would not keep as it is
            (`tmux_name_problem`).
    """
    _exact(name, existing=False)
    wrapper = wrapper_script(name, command, workdir=workdir, env=env)
    dirs = [STATE_DIR] + ([LOG_DIR] if pipe_log else [])
    prefix = "mkdir -p " + " ".join(quote_path(d) for d in dirs) + " && "
    args = [
        "new-session", "-d", "-s", name, "-x", str(PANE_WIDTH), "-y", str(PANE_HEIGHT),
        "exec sh -c " + shlex.quote(wrapper),
        ";", "set-window-option", "-t", pane_target(name), "remain-on-exit", "on",
    ]  # fmt: skip
    if pipe_log:
        args += [";", "pipe-pane", "-o", "-t", pane_target(name), pipe_command(pipe_log)]
    return prefix + _tmux(*args)


# -------------------------------------------------------------- state, kill, logs


def state_command(name: str) -> str:
    """List the session's panes with liveness, exit status, pid and pipe state.

    `list-panes -s` rather than `display-message -p`: display-message with a target
    that does not exist still prints and exits 0 (tmux 3.3), while list-panes fails
    with "can't find ...". The target is `=NAME:`: list-panes takes a window
    target, and tmux 3.3a resolves a window target `=train` to the session `train2`
    when no `train` exists. `parse_state` still drops panes of any other session,
    for the tmux versions that resolve even `=NAME:` loosely. `-u`: names are
    printed as they are, not with `_` for each non-ASCII byte (an SSH exec
    channel's locale is often not UTF-8), so that check compares real names.
    """
    return _tmux("-u", "list-panes", "-s", "-t", pane_target(name), "-F", STATE_FORMAT)


def kill_command(name: str) -> str:
    """End the session: tmux closes its panes, which sends their processes SIGHUP."""
    return _tmux("kill-session", "-t", session_target(name))


def pipe_pane_command(name: str, log_path: str) -> str:
    """Start logging the session's active pane into `log_path` (for adopt).

    Careful: `-o` is a *toggle*: when the pane already has a pipe, tmux closes it and
    opens nothing. Check `SessionState.piped` first (as `adopt` does); `-o` is kept
    so that a pipe appearing in the meantime is not silently replaced by ours.
    """
    return (
        f"mkdir -p {quote_path(LOG_DIR)} && "
        + _tmux("pipe-pane", "-o", "-t", pane_target(name), pipe_command(log_path))
    )


def capture_command(name: str, lines: int = 200) -> str:
    """The pane's last `lines` lines of history plus screen, wrapped lines joined."""
    return _tmux("capture-pane", "-p", "-J", "-S", f"-{int(lines)}", "-t", pane_target(name))


def reap_and_read_exit_command(name: str) -> str:
    """Nudge the tmux server to reap dead panes, then print the recorded exit status.

    For a pane that is dead but has no `pane_dead_status` (see
    `session_control.session_state`): SIGCHLD makes the server run its `waitpid`
    loop, which collects the status it missed (the workaround tmux's author gives
    in tmux/tmux#311; the signal is otherwise harmless). The exit file answers
    this time; tmux answers later queries, the agent's included. Runs under `sh -c`
    because `$(...)` and variables are not portable across login shells (fish).
    """
    script = 'kill -CHLD "$(tmux display-message -p -t "$1" "#{pid}")" 2>/dev/null; cat "$2" 2>/dev/null; true'
    return f"sh -c {shlex.quote(script)} sh {shlex.quote(pane_target(name))} {quote_path(exit_file(name))}"


def path_exists_command(path: str) -> str:
    """Exit 0 when the pod path exists."""
    return f"test -e {quote_path(path)}"


def attach_remote_command(name: str) -> str:
    """The command `ssh -t` runs on the pod to attach."""
    return _tmux("attach-session", "-t", session_target(name))


def attach_argv(target: SshTarget | None, name: str, *, inside_tmux: bool = False) -> list[str]:
    """The argv that attaches this terminal to the session.

    Remote: `ssh -t <the pod's connection settings> HOST 'tmux attach-session -t
    =NAME'` (ssh joins its trailing arguments with spaces and the pod's shell parses
    them, so the remote command is passed as one already-quoted string). Local
    (`target` None): `tmux attach-session -t =NAME`. Detaching (`C-b d`) ends the
    process with status 0, so the user is back where they ran it.

    `inside_tmux` (local only: `$TMUX` is set): the local pod's sessions then live
    in the very server this terminal is a client of (tmux commands follow `$TMUX`),
    and attaching a client to its own server from inside a pane is what tmux warns
    against, so the client is switched instead (`C-b L` or `C-b (` switches back).
    """
    if target is None:
        verb = "switch-client" if inside_tmux else "attach-session"
        return ["tmux", verb, "-t", session_target(name)]
    return [*target.ssh_argv(tty=True), attach_remote_command(name)]


# ----------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class SessionState:
    """One tmux session as `list-panes -s` reports it.

    Attributes:
        name: the session's name (as asked about; tmux's name is exactly this).
        exists: tmux has a session of that name.
        running: at least one of its panes still runs a process.
        exit_status: when no pane runs: the status the active pane's process exited
            with (None when unknown, e.g. tmux too old for `pane_dead_status`).
        pid: the active pane's process id (of the wrapper, for gpuctl's sessions).
        piped: the active pane already pipes its output somewhere (pipe-pane).
        current_command: the active pane's foreground program name, e.g. `python`.
    """

    name: str
    exists: bool
    running: bool = False
    exit_status: int | None = None
    pid: int | None = None
    piped: bool = False
    current_command: str | None = None

    @property
    def exited(self) -> bool:
        """The session is there but its command has ended (remain-on-exit)."""
        return self.exists and not self.running


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def parse_state(name: str, stdout: str) -> SessionState:
    """Parse `state_command` output (exit status 0) into a `SessionState`.

    Only panes of the session named exactly `name` count: a pane of any other
    session (a tmux that matched `train2` for `train`) is not this session's, and
    none left means the session does not exist.

    Raises:
        ValueError: output that is not in `STATE_FORMAT` (not a tmux we understand).
    """
    ours = re.compile(re.escape(name) + _PANE_FIELDS, re.DOTALL)
    panes = []
    for line in stdout.split("\n"):  # not splitlines(): a name may hold \x1c or \x85
        if not line.strip():
            continue
        match = ours.fullmatch(line)
        if match is None:
            if re.fullmatch(".*" + _PANE_FIELDS, line, re.DOTALL):
                continue  # a pane of another session
            raise ValueError(f"unexpected tmux list-panes line: {line!r}")
        panes.append(match.groups())
    if not panes:
        return SessionState(name, exists=False)
    active = next((p for p in panes if p[0] == "11"), panes[0])
    running = any(p[1] != "1" for p in panes)
    return SessionState(
        name=name,
        exists=True,
        running=running,
        exit_status=None if running else _int_or_none(active[2]),
        pid=_int_or_none(active[3]),
        piped=active[4] == "1",
        current_command=active[5] or None,
    )


def parse_exit_file(stdout: str) -> int | None:
    """The status in an exit file's text, or None when empty or garbled."""
    return _int_or_none(stdout)


def parse_capture(stdout: str) -> list[str]:
    """capture-pane text as lines, without the blank rows below the last output."""
    lines = stdout.rstrip("\n").split("\n") if stdout else []
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def is_missing(stderr: str) -> bool:
    """Whether tmux's error says "no such session" (or no server at all)."""
    text = stderr.lower()
    if any(marker in text for marker in _MISSING_MARKERS):
        return True
    return "error connecting to" in text and any(r in text for r in _MISSING_CONNECT_REASONS)


def tmux_not_installed(exit_status: int, stderr: str) -> bool:
    """Whether the pod's shell could not find tmux at all (status 127)."""
    text = stderr.lower()
    return exit_status == 127 or "tmux: not found" in text or "tmux: command not found" in text
