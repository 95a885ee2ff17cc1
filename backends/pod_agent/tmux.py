"""tmux sessions on the pod: the ``list-panes -a`` query (shared with the shell fallback),
its parser, exit statuses from gpuctl's exit files, and ``TmuxReader``, which execs tmux
only while its server exists and only when its state may have changed.
"""

from __future__ import annotations

import os
import subprocess

from .tools import ToolLocator, run_command
from .values import _first_words, _to_int


#: One row per pane, tab-separated (session names may hold spaces; tmux escapes tabs in
#: names). ``parse_tmux_sessions`` folds the panes into one entry per session. One
#: ``list-panes -a`` gives what ``list-sessions`` gave plus whether each pane's program
#: still runs, its exit status (kept by ``remain-on-exit``) and its pid.
TMUX_FIELDS = (
    "session_name", "session_created", "session_attached", "session_windows",
    "window_index", "pane_index", "pane_dead", "pane_dead_status", "pane_pid",
)
TMUX_FORMAT = "\t".join("#{%s}" % field for field in TMUX_FIELDS)
#: ``-u``: a tmux client whose locale is not UTF-8 prints the format's tabs as ``_``,
#: and an SSH exec channel usually has no LANG at all; -u makes the output verbatim.
TMUX_LIST_ARGS = ("-u", "list-panes", "-a", "-F", TMUX_FORMAT)
#: gpuctl's launch wrapper records each session's exit status here. tmux sometimes
#: never reaps an exited pane's program (seen with tmux 3.3a, tmux/tmux#311), leaving
#: ``#{pane_dead_status}`` empty; the file still knows.
EXIT_FILE = "~/.gpuctl/sessions/%s.exit"
TMUX_TIMEOUT_S = 5.0
#: With a tmux server up, its sessions are listed again (one exec, ~2 ms of CPU, the
#: biggest cost of a tick once nvidia-smi is resident) only when something the listing
#: reports may have changed (see ``TmuxReader``), or at least this often, for what no
#: cheap signal shows (a session renamed, a second client attached).
TMUX_REFRESH_S = 5.0
_NO_TMUX_SERVER_MARKERS = (
    "no server running", "no sessions", "error connecting to", "server exited unexpectedly",
)


def parse_tmux_sessions(text: str) -> list:
    """Parse ``tmux list-panes -a -F TMUX_FORMAT`` into one entry per session.

    Each entry has ``name``, ``created``, ``attached``, ``windows``, then ``state``
    ("running" while any pane's program runs, else "exited": only ``remain-on-exit``
    keeps a session whose panes all died), ``exit_status`` (the exited session's status,
    taken from its first window's first pane; None while running, or when a signal
    ended it) and ``pid`` (the first pane's). Sessions keep tmux's order; malformed
    rows are skipped.
    """
    panes: dict[str, dict] = {}
    for line in text.splitlines():
        cells = line.rsplit("\t", len(TMUX_FIELDS) - 1)
        if len(cells) != len(TMUX_FIELDS) or not cells[0]:
            continue
        created, attached, windows, window, pane = (_to_int(cell) for cell in cells[1:6])
        # Unknown indexes sort last; the first pane is the lowest (window, pane).
        where = (_INF if window is None else window, _INF if pane is None else pane)
        session = panes.setdefault(cells[0], {"head": (created, attached, windows), "panes": []})
        session["panes"].append((where, cells[6].strip() == "1", _to_int(cells[7]), _to_int(cells[8])))
    sessions = []
    for name, session in panes.items():
        created, attached, windows = session["head"]
        _, first_dead, first_status, first_pid = min(session["panes"], key=lambda p: p[0])
        running = not all(dead for _, dead, _, _ in session["panes"])
        sessions.append({
            "name": name, "created": created, "attached": attached, "windows": windows,
            "state": "running" if running else "exited",
            "exit_status": None if running or not first_dead else first_status,
            "pid": first_pid,
        })
    return sessions


_INF = float("inf")


def classify_tmux_result(returncode: int, stdout: str, stderr: str = "") -> tuple:
    """Turn one ``tmux list-panes`` run into ``(tmux_status, tmux_error, sessions)``.

    No tmux server (or a stale socket) means no sessions: "ok" with an empty list.
    """
    if returncode == 0:
        return "ok", None, parse_tmux_sessions(stdout)
    combined = stdout + "\n" + stderr
    if any(marker in combined for marker in _NO_TMUX_SERVER_MARKERS):
        return "ok", None, []
    return "error", _first_words(combined) or "tmux exited with status %d" % returncode, []


def tmux_socket_path(environ=None):
    """Where tmux's default server listens, found the way the tmux client finds it.

    ``$TMUX`` (set inside a tmux session) names the socket before its first comma;
    otherwise it is ``$TMUX_TMPDIR`` (or ``/tmp``) ``/tmux-<uid>/default``.
    """
    environ = os.environ if environ is None else environ
    inside = environ.get("TMUX", "")
    if inside and not inside.startswith(","):
        return inside.split(",", 1)[0]
    base = environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(base, "tmux-%d" % os.getuid(), "default")


def _list_tmux(locator, path, now, timeout):
    try:
        result = run_command((path,) + TMUX_LIST_ARGS, timeout)
    except subprocess.TimeoutExpired:
        return "error", "tmux did not answer within %g s" % timeout, []
    except FileNotFoundError:
        locator.forget(now)
        return "none", None, []
    except OSError as exc:
        return "error", "could not run tmux: %s" % exc, []
    status, error, sessions = classify_tmux_result(*result)
    return status, error, fill_exit_status(sessions)


def fill_exit_status(sessions: list) -> list:
    """Take an exited session's status from gpuctl's exit file where tmux lost it.

    The launch wrapper deletes the file when a run starts, so a file next to an
    exited session is that run's.
    """
    for session in sessions:
        if session.get("state") == "exited" and session.get("exit_status") is None:
            text = _read_text(os.path.expanduser(EXIT_FILE % session["name"]))
            session["exit_status"] = _to_int(text.strip()) if text else None
    return sessions


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def _parent_pid(pid):
    stat_line = _read_text("/proc/%d/stat" % pid)
    if not stat_line:
        return None
    fields = stat_line[stat_line.rfind(")") + 2:].split()
    return _to_int(fields[1]) if len(fields) > 1 else None


class TmuxReader:
    """Lists tmux sessions with as few tmux execs as the answer allows.

    No server socket: no sessions, no exec. A server up: one ``list-panes -a`` exec,
    repeated only when the server's state may have changed. Every pane's program is a
    child of the tmux server, so the server's child list (``/proc/PID/task/PID/children``)
    changes when a session, window or pane is created or killed, the counters of
    reaped children in ``/proc/PID/stat`` move when a pane's program exits, even one
    that came and went between two ticks, and the server's open fds (``/proc/PID/fd``)
    change when it sees a pane's pty close, which may come after the reaping, or when a
    client attaches or detaches; tmux also chmods its socket when the first
    client attaches or the last detaches (which moves the socket's ctime). While that
    signature holds the last listing is reused, for at most ``refresh_s``: what moves no
    process (a rename, a second client attaching, killing a session whose programs had
    all exited already) shows within that time, or at once on a ``sample`` command.
    Without those /proc files (another OS) it lists every tick.

    Args:
        refresh_s: the longest a listing is reused while the signature holds.
    """

    def __init__(self, refresh_s=TMUX_REFRESH_S, timeout=TMUX_TIMEOUT_S):
        self.locator = ToolLocator("tmux")
        self.refresh_s = refresh_s
        self.timeout = timeout
        self.execs = 0  # how many listings ran: for tests and the bench
        self._cached = None
        self._listed_at = None
        self._signature = None
        self._server_pid = None

    def read(self, now, force=False):
        """``(tmux_status, tmux_error, sessions)``; ``force`` lists even if nothing changed."""
        path = self.locator.get(now)
        if path is None:
            self._forget()
            return "none", None, []
        try:
            socket_stat = os.stat(tmux_socket_path())
        except OSError:
            self._forget()
            return "ok", None, []
        signature = self._signature_of(socket_stat)
        if (not force and signature is not None and signature == self._signature
                and self._cached is not None and now - self._listed_at < self.refresh_s):
            return self._cached
        # The signature is taken before listing: a change during the exec shows next tick.
        self.execs += 1
        result = _list_tmux(self.locator, path, now, self.timeout)
        self._cached = result if result[0] == "ok" else None
        self._listed_at = now
        self._signature = signature
        # A server learned just now leaves the stored signature None: the next tick
        # takes a real one, lists once more to match it, and from then on reuses.
        self._server_pid = self._find_server(result[2]) if result[0] == "ok" else None
        return result

    def _signature_of(self, socket_stat):
        if self._server_pid is None:
            return None
        pid = self._server_pid
        children = _read_text("/proc/%d/task/%d/children" % (pid, pid))
        stat_line = _read_text("/proc/%d/stat" % pid)
        try:
            fds = tuple(sorted(os.listdir("/proc/%d/fd" % pid)))
        except OSError:
            fds = None
        if children is None or not stat_line or fds is None:
            return None
        # cminflt/cmajflt grow whenever the server reaps a child: a pane whose program
        # started and exited between two ticks leaves the child list as it was.
        reaped = tuple(stat_line[stat_line.rfind(")") + 2:].split()[8:11:2])
        return (socket_stat.st_ino, socket_stat.st_mode, socket_stat.st_ctime_ns, children, reaped, fds)

    @staticmethod
    def _find_server(sessions):
        """The server's pid: the parent of a live pane's program."""
        for session in sessions:
            pid = session.get("pid")
            if pid and session.get("state") == "running":
                parent = _parent_pid(pid)
                if parent and parent > 1:
                    return parent
        return None

    def _forget(self):
        self._cached = self._signature = self._server_pid = None
