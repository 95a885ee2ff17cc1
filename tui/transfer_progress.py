"""Progress of a transfer on stderr: a rich bar with rate and ETA on a terminal, plain
lines otherwise (a log, a pipe, CI: every 10 % or 10 s, and a line per file as it
lands), for `gpuctl download` and `gpuctl upload`.

Lives in `tui/`: rich is a front-end library, and `sessions` only calls back with
`progress(done_bytes, total_bytes)`.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

ProgressFn = Callable[[int, int], None]


class PlainProgress:
    """Progress as lines (not a terminal): one every 10 % or 10 s, whichever first,
    and the last one at 100 %."""

    def __init__(self, label: str):
        self.label = label
        self.started = time.monotonic()
        self.first: int | None = None
        self.last_pct = -10
        self.last_t = self.started
        self.last_done = -1

    def __call__(self, done: int, total: int) -> None:
        from tui import humanize

        now = time.monotonic()
        if self.first is None:
            self.first = done
        pct = int(done * 100 / total) if total else 100
        if done == self.last_done or (pct < self.last_pct + 10 and now - self.last_t < 10 and done < total):
            return
        self.last_pct, self.last_t, self.last_done = pct, now, done
        moved = done - self.first
        rate = moved / (now - self.started) if now > self.started else 0.0
        # No rate before a byte moved, nor for a copy already here or hard-linked ("0B/s").
        speed = f" {humanize.rate(rate)}" if moved > 0 else ""
        print(f"{self.label}: {humanize.size(done)}/{humanize.size(total)} ({pct}%){speed}",
              file=sys.stderr, flush=True)

    def file_landed(self, name: str, size: int) -> None:
        """One line per file of a checkpoint or folder, once all of it is here."""
        from tui import humanize
        from tui.terminal_text import visible

        print(visible(f"{self.label}: {name} ({humanize.size(size)}) landed"), file=sys.stderr, flush=True)


def amount_columns() -> tuple:
    """The bar's amount ('286M/572M') and speed ('286M/s') columns, in `tui.humanize`'s
    units: rich's own DownloadColumn said '300.0/600.0 MB' above a summary of '286M'."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    from tui import humanize

    class Amount(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            total = f"/{humanize.size(task.total)}" if task.total is not None else ""
            return Text(humanize.size(task.completed) + total, style="progress.download")

    class Speed(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            speed = task.finished_speed or task.speed
            return Text(humanize.rate(speed) if speed is not None else "?", style="progress.data.speed")

    return Amount(), Speed()


class TransferProgress:
    """`with TransferProgress(label) as progress:` then call `progress(done, total)`."""

    def __init__(self, label: str):
        self.label = label
        self._bar = None
        self._task = None
        self._plain: PlainProgress | None = None

    def __enter__(self) -> ProgressFn:
        if not sys.stderr.isatty():
            self._plain = PlainProgress(self.label)
            return self._plain
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), *amount_columns(), TimeRemainingColumn(),
                       console=Console(file=sys.stderr), transient=True)
        task = bar.add_task(self.label, total=None)
        self._bar = bar
        bar.start()

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return progress

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
