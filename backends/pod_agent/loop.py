"""The agent's loop: ticks on a monotonic grid (missed ticks skipped, no drift), followed
files on their own cadence, and commands handled as soon as a line arrives on stdin.
"""

from __future__ import annotations

import json
import math
import os
import select
import time

from .commands import COMMANDS, CommandError
from .logs import FOLLOW_INTERVAL_S, FileProblem, MAX_FOLLOW_INTERVAL_S, MIN_FOLLOW_INTERVAL_S, _problem
from .protocol import ChannelClosed, make_error, write_line
from .sample import collect_sample, make_hello
from .trackers import check_tracker_watches


MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0
MAX_COMMAND_BYTES = 1 << 20
#: How often the loop wakes to let checkpoint watches stat (each at its own ``every_s``).
CHECKPOINT_WAKE_S = 0.25


def next_deadline(deadline, interval, now):
    """The first tick after ``now`` on the grid ``deadline + k*interval``.

    Missed ticks (a slow nvidia-smi, a suspended process) are skipped, not replayed in
    a burst, and the grid does not drift with the time each tick takes.
    """
    deadline += interval
    if deadline <= now:
        deadline += interval * (math.floor((now - deadline) / interval) + 1)
    return deadline


class Agent:
    """Runs the tick loop over an input fd (commands) and an output fd (JSON lines).

    Args:
        state: the ``AgentState`` samples are collected with.
        interval: seconds between ticks, clamped to [0.1, 3600].
        commands: name -> handler table; defaults to ``COMMANDS``.
        notices: error messages to emit right after hello (bad options).
    """

    def __init__(self, state, interval=1.0, in_fd=0, out_fd=1, commands=None, notices=()):
        self.state = state
        self.notices = list(notices)
        self.interval = clamp_interval(interval)
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.commands = dict(COMMANDS if commands is None else commands)
        self._buffer = b""
        self._discarding = False
        self._last_tick = None
        self._deadline = time.monotonic()
        state.gpu.set_interval(self.interval)
        self.follows = {}  # id -> Follow, in the order they were asked for
        self.follow_interval = FOLLOW_INTERVAL_S
        self._follow_deadline = None
        self.trackers = {}  # session id -> TrackerWatch
        self.checkpoints = {}  # session id -> CheckpointWatch
        self._checkpoint_deadline = None

    def emit(self, obj):
        write_line(self.out_fd, obj)

    def emit_sample(self, fresh=False):
        self.emit(collect_sample(self.state, fresh=fresh))

    def check_trackers(self):
        """Once per tick: each watched session's tracker files, sent only when changed."""
        for message in check_tracker_watches(self.trackers.values(), time.monotonic()):
            self.emit(message)

    def check_checkpoints(self):
        """Each watched session's checkpoint globs, at their own cadence (not the tick's:
        a new checkpoint is news within seconds even at a long telemetry interval)."""
        now = time.monotonic()
        for watch in list(self.checkpoints.values()):
            message = watch.check(now)
            if message is not None:
                self.emit(message)
        self._checkpoint_deadline = now + CHECKPOINT_WAKE_S

    def set_interval(self, seconds):
        """Change the cadence: the next tick comes one new interval after the last one."""
        self.interval = clamp_interval(seconds)
        self.state.gpu.set_interval(self.interval)
        if self._last_tick is not None:
            self._deadline = max(self._last_tick + self.interval, time.monotonic())

    def add_follow(self, follow):
        """Start (or restart, for a known id) following; checks begin one interval on."""
        old = self.follows.pop(follow.id, None)
        if old is not None:
            old.close()
        self.follows[follow.id] = follow
        if self._follow_deadline is None or len(self.follows) == 1:
            self._follow_deadline = time.monotonic() + self.follow_interval

    def set_follow_interval(self, seconds):
        self.follow_interval = min(MAX_FOLLOW_INTERVAL_S, max(MIN_FOLLOW_INTERVAL_S, float(seconds)))
        if self._follow_deadline is not None:
            self._follow_deadline = min(self._follow_deadline, time.monotonic() + self.follow_interval)

    def check_follows(self):
        """Look at every followed file once and send what changed."""
        for follow in list(self.follows.values()):
            try:
                messages = follow.check()
            except FileProblem as exc:
                messages = [make_error(str(exc), follow.id)]
            except OSError as exc:  # a read error mid-file: say it, keep following
                messages = [make_error(str(_problem(exc, follow.path)), follow.id)]
            except Exception as exc:  # a bug must cost this check, not the agent
                messages = [make_error("following failed: %s: %s" % (type(exc).__name__, exc), follow.id)]
            for message in messages:
                self.emit(message)

    def run(self):
        """Emit hello, then tick until the channel closes. Returns an exit status."""
        try:
            self.emit(make_hello(self.state))
            for notice in self.notices:  # bad options: said after hello, which stays first
                self.emit(make_error(notice))
            while True:
                now = time.monotonic()
                if now >= self._deadline:
                    self._last_tick = self._deadline
                    self.emit_sample()
                    self.check_trackers()
                    self._deadline = next_deadline(self._deadline, self.interval, time.monotonic())
                wake = self._deadline
                if self.follows:
                    if time.monotonic() >= self._follow_deadline:
                        self.check_follows()
                        self._follow_deadline = next_deadline(
                            self._follow_deadline, self.follow_interval, time.monotonic())
                    wake = min(wake, self._follow_deadline)
                if self.checkpoints:
                    if self._checkpoint_deadline is None or time.monotonic() >= self._checkpoint_deadline:
                        self.check_checkpoints()
                    wake = min(wake, self._checkpoint_deadline)
                self._wait_for_input(wake - time.monotonic())
        except ChannelClosed:
            return 0
        finally:
            for follow in self.follows.values():
                follow.close()
            for watch in self.checkpoints.values():
                watch.close()
            self.state.close()

    def _wait_for_input(self, timeout):
        """Sleep until a command arrives or ``timeout``; drain nvidia-smi's loop meanwhile."""
        fds = [self.in_fd]
        smi = self.state.gpu.fileno()
        if smi is not None:
            fds.append(smi)
        listings = {}
        for watch in self.checkpoints.values():
            fd = watch.fileno()
            if fd is not None:
                listings[fd] = watch
        fds.extend(listings)
        readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if smi is not None and smi in readable:
            self.state.gpu.pump()
        for fd in readable:
            watch = listings.get(fd)
            message = watch.pump() if watch is not None else None
            if message is not None:
                self.emit(message)
        if self.in_fd not in readable:
            return
        chunk = os.read(self.in_fd, 65536)
        if not chunk:
            raise ChannelClosed()
        self._feed(chunk)

    def _feed(self, chunk):
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if self._discarding:
                self._discarding = False
            elif line.strip():
                self.handle_line(line.decode("utf-8", "replace"))
        if len(self._buffer) > MAX_COMMAND_BYTES:
            self.emit(make_error("command line longer than %d bytes, ignored" % MAX_COMMAND_BYTES))
            self._buffer = b""
            self._discarding = True

    def handle_line(self, line):
        """Parse and dispatch one command line; a bad one yields an error line, never a crash."""
        try:
            message = json.loads(line)
        except ValueError as exc:
            self.emit(make_error("malformed command (not JSON): %s" % exc))
            return
        if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
            self.emit(make_error("a command is a JSON object with a string 'cmd'"))
            return
        command_id = message.get("id") if isinstance(message.get("id"), str) else None
        handler = self.commands.get(message["cmd"])
        if handler is None:
            self.emit(make_error("unknown command %r" % message["cmd"], command_id))
            return
        try:
            handler(self, message)
        except ChannelClosed:
            raise
        except CommandError as exc:
            self.emit(make_error("%s: %s" % (message["cmd"], exc), command_id))
        except Exception as exc:  # a bug in one command must not end the agent
            self.emit(make_error("%s failed: %s: %s" % (message["cmd"], type(exc).__name__, exc), command_id))


def clamp_interval(seconds):
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(seconds)))
