"""Which toasts a change between two fleet snapshots deserves: pure, no Textual.

`changes(previous, current)` compares two snapshots and returns `Note`s for what a
person watching would want to be told: a connection lost or restored, a pod
preempted (told as such, not as a lost link), a session that exited or stalled, a GPU
over its temperature threshold, a disk filling up. Only
transitions count (the GPU that *became* hot, not every sample of a hot GPU), and a
`Cooldown` keeps a value hovering around a threshold from repeating the same toast.
Downloads announce themselves from the action that runs them (`tui.actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sessions.snapshot import FleetSnapshot, PodSnapshot, PodState, SessionState
from sessions.config.policy_model import Alerts


@dataclass(frozen=True)
class Thresholds:
    """A pod's toast thresholds; None turns that toast off. The defaults are the alerts
    policy's own, so a toast, an alert and a cell colour never disagree on a number."""

    gpu_temp_c: float | None = Alerts.gpu_temp_c
    disk_pct: float | None = Alerts.disk_used_pct

    @classmethod
    def from_alerts(cls, alerts) -> "Thresholds":
        """From the `alerts:` policy in force for a pod (`sessions.config.policy_model.Alerts`)."""
        return cls(alerts.gpu_temp_c, alerts.disk_used_pct)


@dataclass(frozen=True)
class Note:
    """One toast.

    Attributes:
        key: identifies the condition (pod, what, which), for de-duplication.
        title: short, names the pod.
        message: what happened, in plain words.
        severity: Textual's `information`, `warning` or `error`.
        quiet_s: seconds during which the same key does not toast again (a GPU
            hovering at its threshold); 0 for news that alternates (lost/restored).
    """

    key: str
    title: str
    message: str
    severity: str = "information"
    quiet_s: float = 60.0


_DOWN = (PodState.RECONNECTING, PodState.OFFLINE, PodState.PREEMPTED)


def changes(previous: FleetSnapshot | None, current: FleetSnapshot,
            limits: Thresholds | Callable[[str], Thresholds] = Thresholds()) -> list[Note]:
    """The notes for what changed from `previous` to `current` (none on the first).

    `limits` is one `Thresholds` for every pod, or a function of the pod's name (the
    app passes the config's `alerts:` policy per pod).
    """
    if previous is None:
        return []
    before = {p.name: p for p in previous.pods}
    notes: list[Note] = []
    for pod in current.pods:
        old = before.get(pod.name)
        if old is None or old is pod:
            continue
        pod_limits = limits(pod.name) if callable(limits) else limits
        notes += _connection(old, pod)
        if old.state == PodState.ONLINE and pod.state == PodState.ONLINE:
            notes += _sessions(old, pod)
            if pod_limits.gpu_temp_c is not None:
                notes += _gpus(old, pod, pod_limits.gpu_temp_c)
        if pod_limits.disk_pct is not None:
            notes += _disk(old, pod, pod_limits.disk_pct)
    return notes


def _connection(old: PodSnapshot, pod: PodSnapshot) -> list[Note]:
    if pod.state == PodState.PREEMPTED and old.state != PodState.PREEMPTED:
        why = (pod.error or "the provider took the instance back").rstrip(". ")
        return [Note(f"{pod.name}:conn", pod.name, f"{why[:1].upper()}{why[1:]}.", "error", 0.0)]
    if old.state == PodState.ONLINE and pod.state in _DOWN:
        return [Note(f"{pod.name}:conn", pod.name, f"{sentence('Connection lost', pod.error)} Retrying.",
                     "error", 0.0)]
    if old.state in _DOWN and pod.state == PodState.ONLINE:
        return [Note(f"{pod.name}:conn", pod.name, "Connection restored.", "information", 0.0)]
    return []


def sentence(headline: str, reason: str | None) -> str:
    """`headline: reason.` as one sentence, the reason's own copies of the headline
    dropped.

    The reason arrives composed in layers, each naming the failure again: the SSH
    layer's "connection lost: " before asyncssh's "Connection lost" made the toast
    "Connection lost: connection lost: Connection lost. Retrying.". What those layers
    say stays theirs (`gpuctl status` prints it whole); only the toast composes."""
    rest = (reason or "").strip()
    while rest.casefold().startswith(headline.casefold()) and not rest[len(headline):len(headline) + 1].isalnum():
        rest = rest[len(headline):].lstrip(" :;,-—").strip()
    rest = rest.rstrip(". ")
    return f"{headline}: {rest}." if rest else f"{headline}."


def _sessions(old: PodSnapshot, pod: PodSnapshot) -> list[Note]:
    notes = []
    was = {s.name: s for s in old.sessions}
    for s in pod.sessions:
        prev = was.get(s.name)
        if prev is None:
            continue
        if prev.state == SessionState.RUNNING and s.state == SessionState.EXITED:
            ok = s.exit_status == 0
            status = f"with status {s.exit_status}" if s.exit_status is not None else "(status unknown)"
            notes.append(Note(f"{pod.name}:{s.name}:exit", pod.name,
                              f"Session {s.name!r} exited {status}.", "information" if ok else "error"))
        elif s.stalled and not prev.stalled:
            step = f" at step {s.progress.step}" if s.progress and s.progress.step is not None else ""
            notes.append(Note(f"{pod.name}:{s.name}:stall", pod.name,
                              f"Session {s.name!r} has stalled{step}: no new step for a while.", "warning"))
    return notes


def _gpus(old: PodSnapshot, pod: PodSnapshot, limit: float) -> list[Note]:
    notes = []
    was = {g.index: g.temp_c for g in old.gpus}
    for g in pod.gpus:
        before = was.get(g.index)
        if g.temp_c is not None and g.temp_c >= limit and (before is None or before < limit):
            notes.append(Note(f"{pod.name}:gpu{g.index}:hot", pod.name,
                              f"GPU {g.index} is at {g.temp_c:.0f} °C (threshold {limit:.0f} °C).", "warning"))
    return notes


def _disk(old: PodSnapshot, pod: PodSnapshot, limit: float) -> list[Note]:
    now = pod.disk.used_pct if pod.disk else None
    before = old.disk.used_pct if old.disk else None
    if now is not None and now >= limit and (before is None or before < limit):
        return [Note(f"{pod.name}:disk", pod.name,
                     f"Disk {pod.disk.path} is {now:.0f}% full: checkpoints may fail to save.", "warning")]  # type: ignore[union-attr]
    return []


class Cooldown:
    """Drops a note whose key already toasted less than its `quiet_s` ago."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def admit(self, notes: list[Note], now: float) -> list[Note]:
        kept = []
        for note in notes:
            last = self._last.get(note.key)
            if last is not None and now - last < note.quiet_s:
                continue
            self._last[note.key] = now
            kept.append(note)
        return kept
