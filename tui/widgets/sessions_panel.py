"""The pod's training sessions: one line each with a progress bar, step, rate, ETA,
loss and a loss curve (and, for a log split by rank, the slowest rank and each rank's
step); up/down select the session the log and the actions follow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from sessions.progress.tracker import Progress
from sessions.snapshot import PodSnapshot, SessionSnapshot, SessionState
from tui import humanize
from tui.sessions_table import rate_text, step_text
from tui.widgets.meter import Meter
from tui.widgets.spark import Spark
from tui.widgets.text import set_text


def session_tone(s: SessionSnapshot) -> str:
    """The semantic class of a session's state word."""
    if s.stale:  # the pod is not online: last known, dimmed, never running in green
        return "-stale"
    if s.state == SessionState.EXITED:
        return "-exited" if s.exit_status == 0 else "-failed"
    if s.stalled:
        return "-stalled"
    return "-running" if s.state == SessionState.RUNNING else "-muted"


def state_word(s: SessionSnapshot, stall: str | None = None) -> str:
    """The session's state in the fewest words: running, stalled, exited 1, not running;
    on a pod that is not online, what it was last seen as ('was running'). `stall`: what
    watch diagnosed (`tui.stall_notes`): hung, idle or dead in place of stalled, slow in
    place of running."""
    if s.stale:
        if s.last_state in (None, SessionState.ABSENT):
            return "not running" if s.last_state else "unknown"
        return f"was {state_word(replace(s, state=s.last_state, last_state=None))}"
    if s.state == SessionState.EXITED:
        return f"exited {s.exit_status}" if s.exit_status is not None else "exited"
    if s.stalled:
        return stall or "stalled"
    if s.state == SessionState.RUNNING:
        return stall or ("running" if s.configured else "adopted")
    return "not running"


def numbers_text(s: SessionSnapshot) -> str:
    """'1200/5000 2.31 it/s ETA 27m04s loss 1.234', aligned across rows, then where
    figures not read from the log came from (' · trainer_state')."""
    p = s.progress
    if p is None:
        return "no progress in the log yet" if s.state == SessionState.RUNNING else ""
    if s.state != SessionState.RUNNING:  # a rate and an ETA of a process that is gone mislead
        return f"{step_text(p).rjust(9)}" + (f"  loss {p.loss:.4g}" if p.loss is not None else "") + sources_text(s)
    parts = [step_text(p).rjust(9), rate_text(p).rjust(10)]
    parts.append(f"ETA {humanize.duration(p.eta_s)}".ljust(10) if p.eta_s is not None else " " * 10)
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4g}")
    return " ".join(parts) + ranks_text(p) + sources_text(s)


RANKS_LISTED = 4
"""Up to this many ranks, each one's step is listed; past it, the spread of steps."""


def ranks_text(p: Progress) -> str:
    """For a log split by rank prefixes: which rank sets the pace (the figures shown are
    its own) and each rank's step: ' · slowest rank 1 (0: 1250, 1: 1200)', or with many
    ranks ' · slowest rank 5 of 8, steps 1190–1250'; '' for a log of one rank."""
    if not p.ranks or p.slowest_rank is None:
        return ""
    steps = [(r, q.step) for r, q in p.ranks if q.step is not None]
    if len(p.ranks) <= RANKS_LISTED:
        return f" · slowest rank {p.slowest_rank} (" + ", ".join(f"{r}: {n}" for r, n in steps) + ")"
    low, high = min(n for _, n in steps), max(n for _, n in steps)
    return f" · slowest rank {p.slowest_rank} of {len(p.ranks)}, steps {low}–{high}"


def sources_text(s: SessionSnapshot) -> str:
    """Where the figures shown came from when tracker files gave some: ' · trainer_state'
    (one source), ' · trainer_state (step, total, loss), tfevents (rate)' (several); ''
    when the log gave them all."""
    shown = ("step", "total", "loss") if s.state != SessionState.RUNNING else ("step", "total", "rate", "loss")
    by_source: dict[str, list[str]] = {}
    for figure, source in s.sources:
        if figure in shown and source not in ("log", "config"):
            by_source.setdefault(source, []).append(figure)
    if not by_source:
        return ""
    if len(by_source) == 1:
        return f" · {next(iter(by_source))}"
    return " · " + ", ".join(f"{source} ({', '.join(figures)})" for source, figures in by_source.items())


class SessionRow(Horizontal):
    def compose(self) -> ComposeResult:
        yield Static(classes="session-name")
        yield Static(classes="session-state")
        yield Meter(classes="session-bar")
        yield Static(classes="session-numbers")
        yield Spark(classes="session-loss")

    def show(self, s: SessionSnapshot, selected: bool, losses: Sequence[float], stall: str | None = None) -> None:
        name, state, bar, numbers, spark = self.children
        self.set_class(selected, "-selected")
        set_text(name, f"{'▶' if selected else ' '} {s.name}")
        set_text(state, state_word(s, stall))
        tone = "-stalled" if stall == "slow" and not s.stale else session_tone(s)
        self.set_class(s.stale, "-stale")
        for cls in ("-exited", "-failed", "-stalled", "-running", "-muted", "-stale"):
            state.set_class(cls == tone, cls)
        p = s.progress
        bar.fraction = p.step / p.total if p and p.step is not None and p.total else None  # type: ignore[attr-defined]
        bar.set_class(bool(p and p.total and p.step is not None and p.step >= p.total), "-done")
        set_text(numbers, numbers_text(s))
        spark.show(s.loss_history or losses)  # type: ignore[attr-defined]  # the tracker's curve is exact


class SessionsPanel(VerticalScroll):
    """Shows a pod's sessions and which one is selected (by name, so it survives
    sessions appearing and disappearing)."""

    can_focus = False

    class Selected(Message):
        """The selected session changed (None: the pod has none)."""

        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.selected: str | None = None
        self._names: tuple[str, ...] = ()
        self._last: tuple[PodSnapshot, Callable[[str], Sequence[float]]] | None = None
        self._stall: Callable[[str, bool], str | None] | None = None

    def show(self, pod: PodSnapshot, losses: Callable[[str], Sequence[float]],
             stall: Callable[[str, bool], str | None] | None = None) -> None:
        """Show the pod's sessions; `losses(name)` gives a session's loss series and
        `stall(name, stalled)` what watch diagnosed about it (`tui.stall_notes`)."""
        self._stall = stall
        self._last = (pod, losses)
        names = tuple(s.name for s in pod.sessions)
        if self.selected not in names:
            self._select(names[0] if names else None)
        if names != self._names:
            self._names = names
            self.remove_children()
            if not names:
                self.mount(Static(Content("No sessions: configure one under the pod's `sessions:`, "
                                          "or start tmux on the pod."), classes="empty"))
                return
            self.mount_all([SessionRow() for _ in names])
            self.call_after_refresh(self._redraw)
            return
        for row, s in zip(self.query_children(SessionRow), pod.sessions):
            row.show(s, s.name == self.selected, losses(s.name), stall(s.name, s.stalled) if stall else None)

    def move(self, step: int) -> None:
        """Select the next (+1) or previous (-1) session."""
        if not self._names:
            return
        i = self._names.index(self.selected) if self.selected in self._names else 0
        self._select(self._names[(i + step) % len(self._names)])
        self._redraw()

    def _select(self, name: str | None) -> None:
        if name != self.selected:
            self.selected = name
            self.post_message(self.Selected(name))

    def _redraw(self) -> None:
        if self._last is not None:
            pod, losses = self._last
            stall = self._stall
            for row, s in zip(self.query_children(SessionRow), pod.sessions):
                row.show(s, s.name == self.selected, losses(s.name), stall(s.name, s.stalled) if stall else None)
