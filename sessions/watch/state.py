"""What `gpuctl watch` must remember across its own restarts, in one small JSON file.

A watcher restarted by systemd, or by hand after a laptop sleep, must not download a
checkpoint again, reset a session's restart count (which would let a crashing run
loop forever), re-raise alerts it already sent, or act twice on a budget. So each
change is written at once: atomically (temp file, fsync, `os.replace`), because a
half-written state file is worse than an old one.

One watcher per state file: `open_state` takes an exclusive advisory lock, so a second
`gpuctl watch` over the same config refuses to start instead of racing the first one
(two watchers would resume the same session twice).

A state file that cannot be read (hand-edited, truncated by a full disk) is moved
aside to `NAME.bad` and a fresh one started; the caller is told so it can say it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from sessions.config.model import Config
from sessions.config.policy_model import policies_for

_VERSION = 1


class StateLocked(Exception):
    """Another `gpuctl watch` holds this state file."""


def default_state_path(config_path: Path, start_dir: Path, config: Config | None = None) -> Path:
    """One state file per config file, and per start directory only where that
    directory decides where downloads go (a relative `download_dir`, the default).

    The TUI and `gpuctl watch` both call this, so on the same config they find the same
    file and its lock lets one of them act. Keyed by the start directory regardless,
    the demo's TUI and a `gpuctl watch` started in another terminal (its download_dir
    is absolute) each had a state of their own, and both downloaded and resumed.
    `config`: the loaded config (None: assume the start dir matters, as before).
    """
    key = str(Path(config_path).resolve())
    if config is None or _downloads_follow_start_dir(config):
        key += f"\0{Path(start_dir).resolve()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return platformdirs.user_state_path("gpuctl") / "watch" / f"{digest}.json"


def _downloads_follow_start_dir(config: Config) -> bool:
    """Whether any session's `download_dir` is relative (rooted at the start dir)."""
    return any(not Path(policies_for(config, pod, session).download_dir).expanduser().is_absolute()
               for pod in config.pods for session in pod.sessions)


def session_key(pod: str, session: str) -> str:
    return f"{pod}/{session}"


@dataclass
class Restarts:
    """Auto-resume bookkeeping of one session.

    Attributes:
        count: restarts done by watch, ever (bounded by `max_restarts`).
        resumed_step: the checkpoint step the last restart resumed from (None: unknown).
        progressed: the session advanced past `resumed_step` since the last restart.
        gave_up: watch stopped restarting it (limit reached, or failed before progress).
    """

    count: int = 0
    resumed_step: int | None = None
    progressed: bool = True
    gave_up: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "resumed_step": self.resumed_step,
                "progressed": self.progressed, "gave_up": self.gave_up}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Restarts":
        return cls(int(raw.get("count", 0)), raw.get("resumed_step"),
                   bool(raw.get("progressed", True)), raw.get("gave_up"))


@dataclass
class WatchState:
    """Everything watch remembers; `save()` after each change.

    Attributes:
        restarts: per `pod/session`.
        seen: per `pod/session`, checkpoint names already announced (`checkpoint_found`).
        downloaded: per `pod/session`, checkpoint names downloaded and verified by watch.
        sessions: per `pod/session`, the last session state seen (`running`, ...):
            an exit that happened while watch was down is still noticed.
        budget_done: per pod, the budget action taken (so it is taken once).
        alerts: the alert tracker's own state (`sessions.watch.alerts`).
    """

    path: Path
    restarts: dict[str, Restarts] = field(default_factory=dict)
    seen: dict[str, list[str]] = field(default_factory=dict)
    downloaded: dict[str, list[str]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    budget_done: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None

    def restarts_of(self, pod: str, session: str) -> Restarts:
        return self.restarts.setdefault(session_key(pod, session), Restarts())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "restarts": {k: v.to_json() for k, v in self.restarts.items()},
            "seen": self.seen,
            "downloaded": self.downloaded,
            "sessions": self.sessions,
            "budget_done": self.budget_done,
            "alerts": self.alerts,
        }

    def save(self) -> None:
        """Write the whole state atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def close(self) -> None:
        """Release the lock (the file stays)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _parse(path: Path, raw: Any) -> WatchState:
    if not isinstance(raw, dict) or raw.get("version") != _VERSION:
        raise ValueError("not a gpuctl watch state file of this version")
    return WatchState(
        path=path,
        restarts={k: Restarts.from_json(v) for k, v in (raw.get("restarts") or {}).items()},
        seen={k: list(v) for k, v in (raw.get("seen") or {}).items()},
        downloaded={k: list(v) for k, v in (raw.get("downloaded") or {}).items()},
        sessions=dict(raw.get("sessions") or {}),
        budget_done=dict(raw.get("budget_done") or {}),
        alerts=dict(raw.get("alerts") or {}),
    )


def open_state(path: Path) -> tuple[WatchState, str | None]:
    """Lock and load the state file (a missing one is empty).

    Returns:
        (state, note): `note` says what happened to an unreadable file, else None.

    Raises:
        StateLocked: another watcher holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise StateLocked(f"another gpuctl watch is using {path}; stop it first, "
                          "or give this one its own --state file") from None
    note = None
    try:
        state = _parse(path, json.loads(path.read_text()))
    except FileNotFoundError:
        state = WatchState(path=path)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        note = f"could not read the watch state {path} ({exc}); moved it to {bad} and started afresh"
        state = WatchState(path=path)
    state._lock_fd = lock_fd
    return state, note
