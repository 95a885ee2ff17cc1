"""Which toast each domain event deserves, in the TUI's words: pure, no Textual.

The TUI's toasts come from the fleet's one event stream (`sessions.events`), the
same events `gpuctl watch` prints and the notify targets receive; nothing here looks
at snapshots. So a connection lost, a preemption, a session exit, a stall, a hot GPU
or a full disk is told once, by the Watcher that noticed it, with the alerts policy's
thresholds and hysteresis (`sessions.watch.alerts`).

What a toast adds to the event is how a person watching the screen wants it said:

* only news: the first connection is not ("Connection restored." only after an
  outage, "Connection lost" only from online), nor a session that ended because it
  was killed (the kill's own `session_killed` says so), nor a checkpoint found or
  pruned (the checkpoint pane shows both);
* a pod operation (launch, kill, resume, stop, teardown, download) is told by the
  Fleet that performed it, so its toast is worded here too, whoever pressed the key;
* a short form where the event's sentence is long (a download's paths);
* `Cooldown`: a value hovering around its threshold, raised and cleared and raised
  again, toasts once a minute at most; connection news and exits are never held back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions.events import EventKind, WatchEvent

_DOWN = ("reconnecting", "offline", "preempted", "stopped", "terminated")
"""`sessions.snapshot.PodState` values of a pod that was reachable and no longer is."""

ALERT_QUIET_S = 60.0
"""Seconds an alert (or its clearing) on the same key does not toast again."""


@dataclass(frozen=True)
class Toast:
    """One toast (`GpuctlApp.notify`'s arguments).

    Attributes:
        key: the condition it is about (pod, session, what), for the cooldown.
        title: the pod, or `pod / session`.
        message: the whole sentence (the history keeps it).
        severity: Textual's `information`, `warning` or `error`.
        timeout: seconds shown; None for the app's default (or a routine line's).
        routine: news nobody acts on: one line, shown briefly.
        brief: a shorter text for the toast itself, where one says the same.
        quiet_s: seconds the same key stays quiet after it toasted (0: never held back).
    """

    key: str
    title: str
    message: str
    severity: str = "information"
    timeout: float | None = None
    routine: bool = False
    brief: str | None = None
    quiet_s: float = 0.0


def toast_for(event: WatchEvent) -> Toast | None:
    """The toast `event` deserves, or None when it is no news on this screen."""
    pod, kind = event.pod, event.kind
    where = pod if event.session is None else f"{pod} / {event.session}"
    if kind == EventKind.CONNECTED:
        if event.before not in _DOWN:
            return None  # the first connection (or one whose start was never seen)
        return Toast(f"{pod}:conn", pod, "Connection restored.")
    if kind == EventKind.DISCONNECTED:
        if event.after in ("stopped", "terminated"):  # not a fault to retry: the provider (or gpuctl) ended it
            if event.message.endswith("by gpuctl"):
                return None  # its `provider_action` event toasts the result
            why = event.message.strip().rstrip(". ")
            return Toast(f"{pod}:conn", pod, f"{why[:1].upper()}{why[1:]}.", "warning")
        if event.extra.get("action"):
            return None  # gpuctl's own stop/teardown dropped the link: its `provider_action` toasts the result
        if event.before != "online":
            return None  # still connecting: the fleet row says so; an outage is news
        return Toast(f"{pod}:conn", pod, f"{sentence('Connection lost', event.message)} Retrying.", "error")
    if kind == EventKind.PREEMPTED:
        why = event.message.strip().rstrip(". ") or "the provider took the instance back"
        return Toast(f"{pod}:conn", pod, f"{why[:1].upper()}{why[1:]}.", "error")
    if kind == EventKind.SESSION_EXITED:
        if event.after != "exited":
            return None  # the tmux session is gone (a kill, a restart): not an exit status
        status = event.extra.get("exit_status")
        said = f"with status {status}" if status is not None else "(status unknown)"
        return Toast(f"{pod}:{event.session}:exit", pod, f"Session {event.session!r} exited {said}.",
                     "information" if status == 0 else "error")
    if kind in (EventKind.ALERT, EventKind.ALERT_CLEARED):
        key = f"{pod}:{event.session}:{event.extra.get('alert')}:{event.extra.get('gpu')}:{kind}"
        if kind == EventKind.ALERT:
            return Toast(key, where, event.message, "warning", 10.0, quiet_s=ALERT_QUIET_S)
        return Toast(key, where, event.message, routine=True, quiet_s=ALERT_QUIET_S)
    if kind == EventKind.RESUMED:
        if event.extra.get("attempt") is None:  # asked for (`r`, `n`, gpuctl resume): not auto-resume's
            named = str(event.extra.get("checkpoint") or "").rstrip("/").rsplit("/", 1)[-1]
            return Toast(f"{pod}:{event.session}:resumed", pod,
                         f"Resumed {event.session!r} from {named}: {event.extra.get('command')}", timeout=15.0)
        return Toast(f"{pod}:{event.session}:resumed", where, event.message, timeout=8.0)
    if kind == EventKind.SESSION_LAUNCHED:
        replaced = " (replacing its exited run)" if event.extra.get("replaced") else ""
        return Toast(f"{pod}:{event.session}:launched", pod,
                     f"Launched session {event.session!r}{replaced}. Log: {event.extra.get('log_path')}")
    if kind == EventKind.SESSION_KILLED:
        said = "Killed session {!r}." if event.extra.get("existed") else "Session {!r} had already ended."
        return Toast(f"{pod}:{event.session}:killed", pod, said.format(event.session))
    if kind == EventKind.PROVIDER_ACTION:
        return provider_toast(event)
    if kind == EventKind.CHECKPOINT_DOWNLOADED:
        return Toast(f"{pod}:{event.session}:downloaded", where, event.message, routine=True, brief=brief(event))
    if kind == EventKind.BUDGET_ACTION:
        return Toast(f"{pod}:budget", where, event.message, "error", 30.0)
    return None


def provider_toast(event: WatchEvent) -> Toast:
    """A stop's or teardown's result: the provider's sentence, then what is kept and
    what is gone (not said for a timeout: the provider has not confirmed it yet)."""
    x = event.extra
    lines = [event.message[:1].upper() + event.message[1:] + "."]
    if x.get("kept"):
        lines.append(f"Kept: {x['kept']}")
    if x.get("gone") and x.get("outcome") != "timeout":
        lines.append(f"Gone: {x['gone']}")
    severity = "warning" if x.get("outcome") == "timeout" else "information"
    return Toast(f"{event.pod}:provider", event.pod, "\n".join(lines), severity, 15.0)


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


def brief(event: WatchEvent) -> str | None:
    """A shorter toast text than the event's sentence, where one says the same.

    A download's sentence names the checkpoint's path on the pod and the local one in
    full (~200 characters): the one-line toast names the checkpoint's own name and
    that it was verified; sizes and paths are in the history and the pod screen."""
    named = event.extra.get("name") or event.extra.get("checkpoint")
    if event.kind == EventKind.CHECKPOINT_DOWNLOADED and named:
        return f"✓ {str(named).rstrip('/').rsplit('/', 1)[-1]} downloaded and verified"
    return None


class Cooldown:
    """Holds back a toast whose key already toasted less than its `quiet_s` ago."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def admit(self, toast: Toast, now: float) -> bool:
        last = self._last.get(toast.key)
        if last is not None and now - last < toast.quiet_s:
            return False
        self._last[toast.key] = now
        return True
