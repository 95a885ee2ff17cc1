"""Alert rules: which conditions on a pod and its sessions start or end an alert.

Pure and deterministic: no I/O, no asyncio, no Textual. The caller feeds each new
`PodSnapshot` with the thresholds in force and the time (`now`, in seconds on any clock
it likes: monotonic, or unix time when it persists the state, see `to_state`), and gets
back the `alert` / `alert_cleared` `WatchEvent`s to report. `gpuctl watch` and the TUI
share it.

One alert per key `(pod, session, alert, index)`: `alert` is the policy's own name
(`gpu_temp_c`, `disk_used_pct`, `gpu_idle_minutes`, `stall_minutes`, `nan_loss`,
`loss_spike`), `session` is None for pod-level alerts, `index` is the GPU index for
`gpu_temp_c` and None otherwise. An alert is reported once when its condition starts
and once when it ends, never again in between.

The rules:

* `gpu_temp_c`: a GPU at or over the threshold; ends under threshold - 3 °C, so a
  GPU hovering at the line does not flap.
* `disk_used_pct`: the pod's disk at or over the threshold; ends under threshold - 2.
* `gpu_idle_minutes`: every GPU of the pod under 5 % utilisation for N minutes in a
  row while the pod is online; ends when a GPU reaches 10 % (between 5 and 10 % the
  idle clock restarts but an alert in force stays).
* `stall_minutes`: a running session whose step has not moved for N minutes; ends when
  the step moves, the run reaches its total, or the session stops running. A run
  whose step reached its total is finished, not stalled. Stuck is the session's own
  `stalled` flag and `stuck_since` clock (`sessions.fleet.session_book`, from the same
  policy value), so the alert, the row's "stalled" and the toast never disagree; the
  clock starts when the log tracker first sees a step: it cannot know how long a step
  stood still before.
* `nan_loss`: the session's loss is NaN or ±inf; ends when a finite loss shows again.
* `gpu_health`: a GPU failing (a failing Xid, uncorrected ECC errors, a failed row
  remap, a hardware slowdown under load for minutes), judged on the pod's newest health
  reading by `sessions.health.alerting` (which holds the rule and its hysteresis);
  `index` is the GPU; ends when the condition has been gone a while.
* `loss_spike`: the newest loss is over factor x the median of the previous (up to)
  20 loss observations, judged once 5 are known; ends when a later observation falls
  back to factor x median or under. An observation is recorded when the step changes
  (or, for logs without steps, when the loss changes); only finite losses count, and
  a median at or under zero (losses that are not positive) is not judged.

Unknown is not "cleared": while a pod is not online, or a reading is missing (no
temperature, no disk, a GPU without utilisation), alerts stay as they are. A threshold
turned off (None) ends its alerts in force with an `alert_cleared` saying so ("... alert
turned off."), so a person who saw the alert also sees why it went away; this is done
even while the pod is offline, since it is a config decision, not a reading. A session
that no longer appears in an online pod's snapshot has its alerts cleared ("Session
gone.") and its history dropped.

Over 400 lines: the six rules share one table of alerts in force, one set of clocks and
one persisted form, and splitting them would spread that state over modules.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sessions.events import EventKind, WatchEvent
from sessions.health.alerting import GpuHealthRule
from sessions.health.stall import IDLE_GPU_PCT
from sessions.config.policy_model import Alerts
from sessions.snapshot import PodSnapshot, PodState, SessionSnapshot, SessionState

TEMP_HYSTERESIS_C = 3.0
DISK_HYSTERESIS_PCT = 2.0
IDLE_UNDER_PCT = IDLE_GPU_PCT
"""A GPU under this utilisation counts as idle (the stall verdict's own threshold)."""
BUSY_FROM_PCT = 10.0
"""A GPU at or over this utilisation ends an idle alert."""
SPIKE_WINDOW = 20
SPIKE_MIN_OBSERVATIONS = 5
STATE_VERSION = 1

LABELS = {
    "gpu_temp_c": "GPU temperature",
    "disk_used_pct": "disk usage",
    "gpu_idle_minutes": "idle GPU",
    "stall_minutes": "stall",
    "nan_loss": "NaN loss",
    "loss_spike": "loss spike",
    "gpu_health": "GPU health",
}
"""Each alert's name in plain words, for messages."""

AlertKey = tuple[str, str | None, str, int | None]


@dataclass(frozen=True)
class ActiveAlert:
    """An alert in force, for display (`AlertTracker.active`).

    Attributes:
        pod: the pod's name.
        session: the session's name, None for pod-level alerts.
        alert: the policy's name (`gpu_temp_c`, `stall_minutes`, ...).
        index: the GPU index for `gpu_temp_c`, else None.
        message: the sentence the `alert` event carried.
        value: the reading that raised it (a number; `"nan"`, `"inf"` or `"-inf"`
            for a non-finite loss, so it stays valid JSON).
        threshold: the threshold it crossed (True for `nan_loss`).
        since: when it was raised, on the caller's clock.
    """

    pod: str
    session: str | None
    alert: str
    index: int | None
    message: str
    value: float | str | None
    threshold: float | bool | None
    since: float

    @property
    def key(self) -> AlertKey:
        return (self.pod, self.session, self.alert, self.index)


@dataclass
class _LossHistory:
    """One session's recent loss observations, for the spike rule."""

    last_step: int | None = None
    last_loss: float | None = None
    seen: deque[float] = field(default_factory=lambda: deque(maxlen=SPIKE_WINDOW))


def _num(x: float) -> str:
    """A reading for a sentence: `91`, `93.4`, `2.317`."""
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.3e}"


def _json_value(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else str(x)


class AlertTracker:
    """Remembers which alerts are in force and the clocks behind them, for any pods.

    One tracker serves a whole fleet: call `update` with every new snapshot of every
    pod. Not thread-safe; it is meant for one loop.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._active: dict[AlertKey, ActiveAlert] = {}
        self._idle_since: dict[str, float] = {}
        self._losses: dict[tuple[str, str], _LossHistory] = {}
        self._health = GpuHealthRule()

    # ------------------------------------------------------------------ queries

    def active(self, pod: str | None = None) -> list[ActiveAlert]:
        """The alerts in force (of one pod, or all), by pod, pod-level first."""
        found = [a for a in self._active.values() if pod is None or a.pod == pod]
        return sorted(found, key=lambda a: (a.pod, a.session is not None, a.session or "",
                                            a.alert, -1 if a.index is None else a.index))

    def forget(self, pod: str) -> None:
        """Drop everything about a pod (removed from config), silently."""
        for key in [k for k in self._active if k[0] == pod]:
            del self._active[key]
        self._idle_since.pop(pod, None)
        for session_key in [k for k in self._losses if k[0] == pod]:
            del self._losses[session_key]

    # ------------------------------------------------------------------ update

    def update(self, pod: PodSnapshot, pod_alerts: Alerts,
               session_alerts: Callable[[str], Alerts], now: float) -> list[WatchEvent]:
        """Take a new snapshot of one pod; return the alerts that started and ended.

        Args:
            pod: the pod's newest snapshot.
            pod_alerts: the thresholds in force for the pod (GPU temperature, disk, idle).
            session_alerts: the thresholds in force for a session, by name (stall, NaN
                loss, loss spike). It is asked about the sessions of `pod` only,
                adopted ones (not in config) included.
            now: the time of this snapshot, in seconds, on the caller's clock.

        Returns:
            `alert` and `alert_cleared` events, pod-level first, then by session in
            the snapshot's order.
        """
        out: list[WatchEvent] = []
        sessions = {s.name: s for s in pod.sessions}
        per_session: dict[str, Alerts] = {}

        def alerts_of(name: str) -> Alerts:
            if name not in per_session:
                per_session[name] = session_alerts(name)
            return per_session[name]

        # Turned off is a decision in config, known even while the pod is unreachable.
        for key in [k for k in self._active if k[0] == pod.name]:
            session = key[1]
            if session is not None and session not in sessions:
                continue  # gone: cleared below once the pod is online
            thresholds = pod_alerts if session is None else alerts_of(session)
            if not _enabled(thresholds, key[2]):
                out.append(self._clear(key, f"{_label(key)} alert turned off."))
        if pod_alerts.gpu_idle_minutes is None:
            self._idle_since.pop(pod.name, None)

        if pod.state != PodState.ONLINE:
            # Readings are unknown, so alerts stay; but "idle continuously" is broken.
            self._idle_since.pop(pod.name, None)
            return out

        self._gpu_temps(pod, pod_alerts.gpu_temp_c, out, now)
        self._disk(pod, pod_alerts.disk_used_pct, out, now)
        self._idle(pod, pod_alerts.gpu_idle_minutes, out, now)
        self._gpu_health(pod, pod_alerts.gpu_health, out, now)
        for snap in pod.sessions:
            thresholds = alerts_of(snap.name)
            self._stalled(pod.name, snap, thresholds.stall_minutes, out, now)
            self._nan(pod.name, snap, thresholds.nan_loss, out, now)
            self._spike(pod.name, snap, thresholds.loss_spike, out, now)
        self._gone(pod.name, sessions, out)
        return out

    # ------------------------------------------------------------------ pod rules

    def _gpu_temps(self, pod: PodSnapshot, threshold: float | None,
                   out: list[WatchEvent], now: float) -> None:
        if threshold is None:
            return
        present = set()
        for position, gpu in enumerate(pod.gpus):
            index = gpu.index if gpu.index is not None else position
            present.add(index)
            if gpu.temp_c is None:
                continue
            key: AlertKey = (pod.name, None, "gpu_temp_c", index)
            temp = gpu.temp_c
            if key not in self._active and temp >= threshold:
                self._raise(out, key, now, temp, threshold,
                            f"GPU {index} is at {_num(temp)} °C (threshold {_num(threshold)} °C).")
            elif key in self._active and temp < threshold - TEMP_HYSTERESIS_C:
                out.append(self._clear(key, f"GPU {index} cooled to {_num(temp)} °C."))
        if pod.gpus and pod.gpu_status in (None, "ok"):
            # A GPU the pod no longer lists (re-provisioned with fewer) must not stay hot.
            for key in [k for k in self._active
                        if k[0] == pod.name and k[2] == "gpu_temp_c" and k[3] not in present]:
                out.append(self._clear(key, f"GPU {key[3]} is no longer reported."))

    def _disk(self, pod: PodSnapshot, threshold: float | None,
              out: list[WatchEvent], now: float) -> None:
        used = pod.disk.used_pct if pod.disk is not None else None
        if threshold is None or used is None:
            return
        key: AlertKey = (pod.name, None, "disk_used_pct", None)
        if key not in self._active and used >= threshold:
            self._raise(out, key, now, round(used, 1), threshold,
                        f"Disk {_num(used)} % full at {pod.disk.path} "  # type: ignore[union-attr]
                        f"(threshold {_num(threshold)} %).")
        elif key in self._active and used < threshold - DISK_HYSTERESIS_PCT:
            out.append(self._clear(key, f"Disk down to {_num(used)} % full."))

    def _gpu_health(self, pod: PodSnapshot, on: bool, out: list[WatchEvent], now: float) -> None:
        if not on or pod.health is None:
            return
        for index, reason in self._health.conditions(pod.name, pod.health, pod.health_checks, now).items():
            key: AlertKey = (pod.name, None, "gpu_health", index)
            if reason is not None and key not in self._active:
                self._raise(out, key, now, reason, True, f"GPU {index}: {reason}.")
            elif reason is None and key in self._active:
                out.append(self._clear(key, f"GPU {index} is healthy again."))

    def _idle(self, pod: PodSnapshot, minutes: float | None,
              out: list[WatchEvent], now: float) -> None:
        utils = [g.util_pct for g in pod.gpus]
        if minutes is None or not utils or any(u is None for u in utils):
            return  # no GPUs, or a reading missing: unknown, leave it
        key: AlertKey = (pod.name, None, "gpu_idle_minutes", None)
        busiest = max(u for u in utils if u is not None)
        if busiest >= IDLE_UNDER_PCT:
            self._idle_since.pop(pod.name, None)
            if key in self._active and busiest >= BUSY_FROM_PCT:
                out.append(self._clear(key, "GPUs busy again."))
            return
        since = self._idle_since.get(pod.name)
        if since is None or since > now:  # first idle sample, or a clock that went back
            since = self._idle_since[pod.name] = now
        idle_min = (now - since) / 60.0
        if key not in self._active and idle_min >= minutes:
            which = "The GPU is" if len(utils) == 1 else f"All {len(utils)} GPUs are"
            price = f" at ${pod.price_per_hour:.2f}/h" if pod.price_per_hour else ""
            self._raise(out, key, now, round(idle_min, 1), minutes,
                        f"{which} idle (under {_num(IDLE_UNDER_PCT)} %) for {idle_min:.0f} min: "
                        f"you are paying{price} for nothing.")

    # ------------------------------------------------------------------ session rules

    def _stalled(self, pod: str, session: SessionSnapshot, minutes: float | None,
                 out: list[WatchEvent], now: float) -> None:
        """The session's own `stalled` flag and `stuck_since` clock (the session book
        sets them from the same `stall_minutes`): one definition of stuck, one clock,
        so the alert, the toast and the row's "stalled" never disagree."""
        key: AlertKey = (pod, session.name, "stall_minutes", None)
        progress = session.progress
        step = progress.step if progress is not None else None
        if session.state != SessionState.RUNNING:
            if key in self._active:
                out.append(self._clear(key, "Session no longer running."))
            return
        if not session.stalled or session.stuck_since is None:
            if key in self._active:
                finished = progress is not None and progress.total is not None and step is not None \
                    and step >= progress.total
                out.append(self._clear(key, f"Run finished at step {step}." if finished
                                       else f"Training is moving again: step {step}."))
            return
        if key not in self._active and step is not None:
            stuck_min = max(0.0, now - session.stuck_since) / 60.0
            self._raise(out, key, now, round(stuck_min, 1), minutes,
                        f"No progress for {stuck_min:.0f} min: stuck at step {step}.")

    def _nan(self, pod: str, session: SessionSnapshot, on: bool,
             out: list[WatchEvent], now: float) -> None:
        loss = session.progress.loss if session.progress is not None else None
        if not on or loss is None:
            return
        key: AlertKey = (pod, session.name, "nan_loss", None)
        step = session.progress.step  # type: ignore[union-attr]
        if not math.isfinite(loss) and key not in self._active:
            at = f" at step {step}" if step is not None else ""
            self._raise(out, key, now, _json_value(loss), True,
                        f"Loss is {'NaN' if math.isnan(loss) else _num(loss)}{at}: the run is diverging.")
        elif math.isfinite(loss) and key in self._active:
            out.append(self._clear(key, f"Loss is finite again: {_num(loss)}."))

    def _spike(self, pod: str, session: SessionSnapshot, factor: float | None,
               out: list[WatchEvent], now: float) -> None:
        progress = session.progress
        loss = progress.loss if progress is not None else None
        if loss is None or not math.isfinite(loss):
            return
        step = progress.step  # type: ignore[union-attr]
        history = self._losses.setdefault((pod, session.name), _LossHistory())
        new = (step != history.last_step) if step is not None else (loss != history.last_loss)
        if not new:
            return
        history.last_step, history.last_loss = step, loss
        seen = history.seen
        key: AlertKey = (pod, session.name, "loss_spike", None)
        if factor is not None and len(seen) >= SPIKE_MIN_OBSERVATIONS:
            median = statistics.median(seen)
            if median > 0 and key not in self._active and loss > factor * median:
                at = f" at step {step}" if step is not None else ""
                self._raise(out, key, now, loss, factor,
                            f"Loss spiked to {_num(loss)}{at}: over {_num(factor)}x "
                            f"the recent median {_num(median)}.", median=median)
            elif median > 0 and key in self._active and loss <= factor * median:
                out.append(self._clear(key, f"Loss back to {_num(loss)}, within {_num(factor)}x "
                                            f"the recent median {_num(median)}."))
        seen.append(loss)

    def _gone(self, pod: str, sessions: Mapping[str, SessionSnapshot], out: list[WatchEvent]) -> None:
        for key in [k for k in self._active if k[0] == pod and k[1] is not None and k[1] not in sessions]:
            out.append(self._clear(key, f"Session gone: {_label(key)} alert cleared."))
        for track in [t for t in self._losses if t[0] == pod and t[1] not in sessions]:
            del self._losses[track]

    # ------------------------------------------------------------------ events

    def _raise(self, out: list[WatchEvent], key: AlertKey, now: float, value: Any,
               threshold: Any, message: str, **more: Any) -> None:
        pod, session, name, index = key
        self._active[key] = ActiveAlert(pod, session, name, index, message, value, threshold, now)
        extra: dict[str, Any] = {"alert": name, "value": value, "threshold": threshold}
        if index is not None:
            extra["gpu"] = index
        extra.update(more)
        out.append(WatchEvent(EventKind.ALERT, pod, message, session=session, extra=extra))

    def _clear(self, key: AlertKey, message: str) -> WatchEvent:
        pod, session, name, index = key
        del self._active[key]
        extra: dict[str, Any] = {"alert": name}
        if index is not None:
            extra["gpu"] = index
        return WatchEvent(EventKind.ALERT_CLEARED, pod, message, session=session, extra=extra)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-able data.

        Times are saved as given to `update`: a caller that persists the state across
        processes must pass unix time (a monotonic clock restarts with the machine).
        """
        return {
            "version": STATE_VERSION,
            "active": [
                {"pod": a.pod, "session": a.session, "alert": a.alert, "index": a.index,
                 "message": a.message, "value": a.value, "threshold": a.threshold, "since": a.since}
                for a in self.active()
            ],
            "idle_since": dict(self._idle_since),
            "losses": [[pod, session, h.last_step, h.last_loss, list(h.seen)]
                       for (pod, session), h in self._losses.items()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "AlertTracker":
        """A tracker that carries on from `to_state`'s dict (see `load_state`)."""
        tracker = cls()
        tracker.load_state(state)
        return tracker

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace what this tracker knows with `to_state`'s dict.

        A state from another version, or an entry that does not read, is dropped rather
        than raised: the worst outcome is an alert reported a second time.
        """
        self._reset()
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            return
        for raw in state.get("active") or ():
            try:
                alert = ActiveAlert(str(raw["pod"]), _opt_str(raw["session"]), str(raw["alert"]),
                                    None if raw["index"] is None else int(raw["index"]),
                                    str(raw["message"]), raw["value"], raw["threshold"],
                                    float(raw["since"]))
            except (KeyError, TypeError, ValueError):
                continue
            if alert.alert in LABELS:
                self._active[alert.key] = alert
        idle = state.get("idle_since")
        for pod, since in (idle.items() if isinstance(idle, Mapping) else ()):
            if isinstance(since, (int, float)):
                self._idle_since[str(pod)] = float(since)
        for raw in state.get("losses") or ():
            try:
                pod, session, step, loss, seen = raw
                self._losses[(str(pod), str(session))] = _LossHistory(
                    None if step is None else int(step), None if loss is None else float(loss),
                    deque((float(x) for x in seen), maxlen=SPIKE_WINDOW))
            except (TypeError, ValueError):
                continue


def _enabled(thresholds: Alerts, name: str) -> bool:
    value = getattr(thresholds, name)
    return value is not None and value is not False


def _label(key: AlertKey) -> str:
    label = LABELS[key[2]]
    if key[3] is not None:
        return f"GPU {key[3]} " + ("health" if key[2] == "gpu_health" else "temperature")
    return label[0].upper() + label[1:]


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
