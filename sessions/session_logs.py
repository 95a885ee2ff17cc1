"""Where a session's log lives on its pod.

A session with `log:` in config writes its own file (relative to its workdir); any
other session is captured by gpuctl with `tmux pipe-pane` into
`~/.gpuctl/logs/<session>.log` on the pod. Both the launcher and the log follower
must agree on these paths, so they are computed only here.
"""

from __future__ import annotations

import posixpath

from sessions.config_model import SessionConfig

LOG_DIR = "~/.gpuctl/logs"


def default_log_path(name: str) -> str:
    """The pipe-pane capture file of a session (remote path, `~` expanded on the pod)."""
    return f"{LOG_DIR}/{name}.log"


def log_path_for(session: SessionConfig) -> str:
    """The file to follow for a configured session."""
    if not session.log:
        return default_log_path(session.name)
    if session.log.startswith(("/", "~")) or not session.workdir:
        return session.log
    return posixpath.join(session.workdir, session.log)
