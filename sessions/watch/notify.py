"""Deliver `gpuctl watch` events to the `notify:` targets: desktop, webhooks, commands.

`gpuctl watch` hands every `WatchEvent` to one `Notifier`. Watching must go on whatever
a target does, so `Notifier.send` never raises and never waits on a target: each
delivery runs as its own task, bounded by `timeout` (retries included), and a dead
webhook delays nothing but its own deliveries. Failures go to `on_error` as one
readable line; the same failure repeated by one target is reported once per
`REPEAT_S` seconds, so a dead webhook does not flood the terminal.

Which events a target gets: its `kinds:` when the config lists them; otherwise

- webhook: every kind (`sessions.events.ALL_KINDS`), because a script or a chat
  channel reading it wants the whole story;
- desktop and command: only what a person wants to be interrupted for
  (`INTERRUPTING`): alert, session_exited, preempted, resumed, budget_action,
  checkpoint_downloaded, disconnected.

The targets:

- webhook: POST of the event's JSON object plus a `text` key holding the readable line
  (Slack, Mattermost and Discord-style incoming webhooks display `text`). Connection
  errors, 5xx and 429 are retried (`Retry-After` honoured up to `MAX_RETRY_AFTER_S`);
  other 4xx are not, since sending the same thing again cannot help. Error messages
  show the URL as scheme://host/path: the query string often holds a token.
- command: a shell command template run with `sh -c` on this machine. The event is in
  its environment: GPUCTL_EVENT (the JSON line), GPUCTL_MESSAGE, GPUCTL_KIND,
  GPUCTL_POD, GPUCTL_SESSION and GPUCTL_TS (unix seconds, as in the JSON). The
  placeholders `{message}`, `{kind}`, `{pod}`, `{session}` and `{ts}` become references
  to those variables (`sessions.config.shell_template`), never the values' text: a message
  quotes pod text (file names, log lines), and pasted into someone's own quotes or
  `$(…)` it ran as code. Other `{names}` stay as written.
- desktop: `notify-send` (Linux and BSDs), else `osascript` on macOS; with neither,
  `on_error` says so once and the target stays quiet afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import httpx

from backends import child_procs
from backends.providers.http import retry_after_seconds
from sessions.events import ALL_KINDS, EventKind, WatchEvent
from sessions.config.policy_model import NotifyTarget
from sessions.config.shell_template import (
    NOTIFY_PLACEHOLDERS,
    TemplateError,
    environment,
    render,
)

log = logging.getLogger(__name__)

INTERRUPTING: tuple[str, ...] = (
    EventKind.ALERT, EventKind.SESSION_EXITED, EventKind.PREEMPTED, EventKind.RESUMED,
    EventKind.BUDGET_ACTION, EventKind.CHECKPOINT_DOWNLOADED, EventKind.DISCONNECTED,
)
"""The kinds desktop and command targets get by default: the ones worth an interruption."""

DEFAULT_KINDS: Mapping[str, tuple[str, ...]] = {
    "webhook": ALL_KINDS, "desktop": INTERRUPTING, "command": INTERRUPTING,
}
CRITICAL: frozenset[str] = frozenset({EventKind.ALERT, EventKind.BUDGET_ACTION, EventKind.PREEMPTED})
"""Kinds shown as critical desktop notifications (they stay on screen until dismissed)."""

ATTEMPTS = 4                    # a webhook POST: the first try and up to 3 retries
BACKOFF_S = (0.5, 1.0, 2.0)     # waits before retries 1, 2, 3 (Retry-After wins when given)
MAX_RETRY_AFTER_S = 5.0         # a longer Retry-After gives up instead of holding the delivery
MAX_IN_FLIGHT = 16              # per target; beyond it new events are dropped (and reported)
REPEAT_S = 300.0                # the same failure of one target is reported once per this
STDERR_TAIL = 300               # characters of a failed command's stderr in the report

DESKTOP_MISSING = "desktop notifications need notify-send (libnotify-bin) or macOS"


class DeliveryFailed(Exception):
    """A delivery that failed for a reason already worded for people."""


def kinds_for(target: NotifyTarget) -> frozenset[str]:
    """The event kinds `target` receives: its own list, else its kind's default set."""
    return frozenset(target.kinds or DEFAULT_KINDS.get(target.kind, ()))


def safe_url(url: str) -> str:
    """`url` as scheme://host[:port]/path: no user, password, query or fragment.

    Slack (`/services/T…/B…/<secret>`) and Discord (`/api/webhooks/<id>/<token>`) keep
    their secret in the path's last segment, so a long last segment (over 16
    characters, the length of a secret rather than of a word) is shown as `…`.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/…" if len(last) > 16 else parts.path
    return f"{parts.scheme}://{host}{path}"


def _transport_reason(exc: BaseException) -> str:
    """Why an HTTP request got no answer, in words (never the URL: it may hold a token)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "connection refused" in str(cause).lower():
            return "connection refused"
        if isinstance(cause, OSError) and "name or service not known" in str(cause).lower():
            return "host not found"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc})" if str(exc) else "could not connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _exit_reason(returncode: int, stderr: bytes) -> str:
    """`exit status 3: <stderr tail>` or `killed by SIGTERM`."""
    if returncode < 0:
        try:
            reason = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exit status {returncode}"
    tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:].strip()
    return f"{reason}: {' | '.join(tail.splitlines())}" if tail else reason


class _Reported:
    """The last failure reported for one target, to hold back identical repeats."""

    def __init__(self, reason: str, at: float) -> None:
        self.reason, self.at, self.held_back = reason, at, 0


class Notifier:
    """Sends each watch event to the configured targets, concurrently and boundedly.

    Args:
        targets: the merged `notify:` entries.
        on_error: called with one readable line per failure (default: a log warning).
            Identical failures of one target are held back for `REPEAT_S` seconds.
        timeout: seconds one delivery to one target may take, retries included; a
            command still running then is killed.
    """

    def __init__(self, targets: Sequence[NotifyTarget], *,
                 on_error: Callable[[str], None] | None = None, timeout: float = 10.0) -> None:
        self.targets = tuple(targets)
        self.timeout = timeout
        self._on_error = on_error
        self._tasks: dict[asyncio.Task[None], int] = {}
        self._reported: dict[int, _Reported] = {}
        self._disabled: set[int] = set()
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def send(self, event: WatchEvent) -> None:
        """Start delivering `event` to every target that wants its kind; returns at once."""
        if self._closed:
            return
        for index, target in enumerate(self.targets):
            if index in self._disabled or event.kind not in kinds_for(target):
                continue
            if sum(1 for i in self._tasks.values() if i == index) >= MAX_IN_FLIGHT:
                self._report(index, f"{MAX_IN_FLIGHT} deliveries still in flight; dropping new events")
                continue
            task = asyncio.create_task(self._deliver(index, event), name=f"notify-{target.kind}-{index}")
            self._tasks[task] = index
            task.add_done_callback(self._tasks.pop)

    async def aclose(self, grace: float | None = None) -> None:
        """Wait for deliveries in flight (at most `grace` s, default `timeout` + 1), then
        cancel the rest, say so, and close the HTTP client."""
        self._closed = True
        tasks = dict(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.timeout + 1 if grace is None else grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for index, count in Counter(tasks[t] for t in pending).items():
                self._report(index, f"gave up on {count} deliver{'y' if count == 1 else 'ies'} "
                                    "still in flight when gpuctl stopped")
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- one delivery ------------------------------------------------------------------

    async def _deliver(self, index: int, event: WatchEvent) -> None:
        """Deliver to one target within `timeout`; failures are reported, never raised."""
        target = self.targets[index]
        handler = {"webhook": self._webhook, "command": self._command, "desktop": self._desktop}.get(target.kind)
        try:
            if handler is None:
                raise DeliveryFailed(f"unknown notify kind {target.kind!r}")
            await asyncio.wait_for(handler(index, target, event), self.timeout)
        except asyncio.TimeoutError:  # TimeoutError itself only from Python 3.11
            self._report(index, f"no answer within {self.timeout:g}s" if target.kind == "webhook"
                         else f"did not finish within {self.timeout:g}s; killed it")
        except DeliveryFailed as exc:
            self._report(index, str(exc))
        except Exception as exc:  # a bug or an odd OS error must not end `watch`
            log.debug("notify delivery failed", exc_info=True)
            self._report(index, f"{type(exc).__name__}: {exc}")

    async def _webhook(self, index: int, target: NotifyTarget, event: WatchEvent) -> None:
        """POST the event as JSON, retrying what a retry can fix."""
        if not target.target:
            raise DeliveryFailed("no URL given")
        body = {**event.to_json(), "text": event.readable()}
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, headers={"User-Agent": "gpuctl"})
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                response = await self._client.post(target.target, content=data,
                                                   headers={"Content-Type": "application/json"})
            except httpx.TransportError as exc:
                if last:
                    raise DeliveryFailed(_transport_reason(exc)) from None
                await asyncio.sleep(BACKOFF_S[attempt])
                continue
            if response.is_success:
                return
            reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
            answer = " ".join(response.text.split())
            if answer:
                reason += f": {answer[:200]}"
            if not (response.status_code == 429 or response.status_code >= 500):
                raise DeliveryFailed(reason)
            if last:
                raise DeliveryFailed(f"{reason} (tried {ATTEMPTS} times)")
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                raise DeliveryFailed(f"{reason}; it asks to wait {wait:.0f}s, so this event is dropped")
            await asyncio.sleep(BACKOFF_S[attempt] if wait is None else wait)

    async def _command(self, index: int, target: NotifyTarget, event: WatchEvent) -> None:
        """Run the rendered template in a shell, the event's values in its environment."""
        if not target.target:
            raise DeliveryFailed("no command given")
        try:
            command = render(target.target, NOTIFY_PLACEHOLDERS)
        except TemplateError as exc:  # `config check` says so too; a target built in code may not be checked
            raise DeliveryFailed(str(exc)) from None
        values = {"message": event.message, "kind": event.kind, "pod": event.pod,
                  "session": event.session or "", "ts": str(event.to_json()["ts"])}
        env = {**os.environ, "GPUCTL_EVENT": event.json_line(), **environment(values)}
        await self._run(command, env=env)

    async def _desktop(self, index: int, target: NotifyTarget, event: WatchEvent) -> None:
        """A notification through notify-send, or osascript on macOS."""
        where = event.pod if event.session is None else f"{event.pod}/{event.session}"
        summary, body = f"gpuctl: {where}: {event.kind}", event.message
        if tool := shutil.which("notify-send"):
            urgency = "critical" if event.kind in CRITICAL else "normal"
            # GLib would read a body starting with "-" as an option (and keeps a "--").
            await self._run([tool, "--app-name=gpuctl", f"--urgency={urgency}", summary,
                             f" {body}" if body.startswith("-") else body])
        elif sys.platform == "darwin" and (tool := shutil.which("osascript")):
            # The texts travel as arguments of the script, so nothing needs AppleScript quoting.
            await self._run([tool, "-e", "on run argv", "-e",
                             "display notification (item 2 of argv) with title (item 1 of argv)",
                             "-e", "end run", summary, body])
        else:
            self._disabled.add(index)
            raise DeliveryFailed(DESKTOP_MISSING)

    async def _run(self, command: str | list[str], *, env: Mapping[str, str] | None = None) -> None:
        """Run a program (argv) or a shell command line; raise DeliveryFailed unless it exits 0.

        It gets no stdin and runs as a `child_procs.tied` child (its own process group,
        never outliving gpuctl), so a timeout or cancellation kills it and anything it
        started.
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        async with child_procs.tied(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                                    stderr=asyncio.subprocess.PIPE, env=env) as proc:
            _out, err = await proc.communicate()
        if proc.returncode:  # set by communicate(): never None here
            raise DeliveryFailed(_exit_reason(proc.returncode, err or b""))

    # --- reporting -----------------------------------------------------------------------

    def _describe(self, index: int) -> str:
        """The target in words, without secrets: a webhook's scheme://host/path, a
        command's program name only (its arguments may carry a token)."""
        target = self.targets[index]
        at = f" (config line {target.line})" if target.line else ""
        if target.kind == "webhook" and target.target:
            return f"webhook {safe_url(target.target)}{at}"
        if target.kind == "command" and target.target:
            program = target.target.split(maxsplit=1)[0] if target.target.strip() else ""
            return f"command {program}{at}"
        return f"{target.kind}{at}"

    def _redact(self, index: int, text: str) -> str:
        """`text` without the webhook's full URL or query string (an exception may quote them)."""
        target = self.targets[index]
        if target.kind != "webhook" or not target.target:
            return text
        text = text.replace(target.target, safe_url(target.target))
        query = urlsplit(target.target).query
        return text.replace(query, "…") if query else text

    def _report(self, index: int, reason: str) -> None:
        """Tell `on_error`, unless this target reported the same failure lately."""
        now = time.monotonic()
        last = self._reported.get(index)
        note = ""
        if last is not None and last.reason == reason:
            if now - last.at < REPEAT_S:
                last.held_back += 1
                return
            if last.held_back:
                note = f" (and {last.held_back} more time{'s' if last.held_back > 1 else ''} since)"
        self._reported[index] = _Reported(reason, now)
        line = f"notify {self._describe(index)}: {self._redact(index, reason)}{note}"
        if self._on_error is None:
            log.warning("%s", line)
            return
        try:
            self._on_error(line)
        except Exception:  # a broken callback must not end deliveries
            log.exception("notify on_error callback failed")
