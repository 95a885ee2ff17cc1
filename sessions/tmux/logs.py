"""Where a session's log lives on its pod.

A session with `log:` in config writes its own file (relative to its workdir); any
other session is captured by gpuctl with `tmux pipe-pane` into
`~/.gpuctl/logs/<session>.log` on the pod. Both the launcher and the log follower
must agree on these paths, so they are computed only here.

The `<session>` part is the name spelled with safe characters only: an adopted
session can be named anything tmux allows (`x%Hy`, `a#{pane_pid}`, `a/b`), and
tmux expands `%` and `#` in the pipe-pane command that holds the path (see
`sessions.tmux.commands.pipe_command`), so such a name would log elsewhere or run code.
"""

from __future__ import annotations

import posixpath
import re

from sessions.config.model import SessionConfig

LOG_DIR = "~/.gpuctl/logs"


_PLAIN = re.compile(r"[A-Za-z0-9._-]")
"""Characters a log file name keeps as they are (every config name is made of them)."""


def log_file_name(name: str) -> str:
    """`name` as a file name tmux, the shell and the file system all leave alone.

    Each character outside `[A-Za-z0-9._-]` becomes `+` and the hex of each of its
    UTF-8 bytes (`x%Hy` -> `x+25Hy`, `a b` -> `a+20b`). `+` is itself escaped, so
    two names never share a file.
    """
    return "".join(
        c if _PLAIN.fullmatch(c) else "".join(f"+{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in name
    )


def default_log_path(name: str) -> str:
    """The pipe-pane capture file of a session (remote path, `~` expanded on the pod)."""
    return f"{LOG_DIR}/{log_file_name(name)}.log"


def log_path_for(session: SessionConfig) -> str:
    """The file to follow for a configured session."""
    if not session.log:
        return default_log_path(session.name)
    if session.log.startswith(("/", "~")) or not session.workdir:
        return session.log
    return posixpath.join(session.workdir, session.log)
