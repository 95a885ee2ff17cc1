"""One log for a whole job: every rank's session log, merged line by line as it comes.

Each line is prefixed `[rank N] `, the way torchrun `--tee` and SkyPilot prefix theirs,
so the job screen reads like one run. Only whole lines are passed on (a rank's last,
unfinished line waits for its newline), and a line a progress bar redrew with `\\r`
shows its last drawing: a prefix must start every line it is put on. Built on one
`LogFeed` per rank, so each rank is followed exactly as the pod screen follows it.
"""

from __future__ import annotations

from typing import Any

from textual.message_pump import MessagePump

from sessions.config.model import JobConfig
from tui.log_feed import LogFeed


class JobLogFeed:
    """A `LogView`'s feed (`start`, `drain`, `stop`) over every rank of `job`."""

    def __init__(self, fleet: Any, job: JobConfig, target: MessagePump) -> None:
        self._feeds = [(rank, LogFeed(fleet, pod, job.session or "", target)) for rank, pod in enumerate(job.pods)]
        self._partial = {rank: "" for rank, _ in self._feeds}

    def _lines(self, rank: int, text: str) -> str:
        *done, self._partial[rank] = (self._partial[rank] + text).split("\n")
        return "".join(f"[rank {rank}] {line.rsplit(chr(13), 1)[-1]}\n" for line in done)

    def start(self) -> str:
        """Begin following every rank; returns their recent lines, rank by rank."""
        return "".join(self._lines(rank, feed.start()) for rank, feed in self._feeds)

    def drain(self) -> list[tuple[str, str]]:
        """("text", lines) and ("reset", why) items, as `LogFeed.drain` gives them."""
        items: list[tuple[str, str]] = []
        for rank, feed in self._feeds:
            for kind, data in feed.drain():
                if kind == "reset":
                    self._partial[rank] = ""
                    items.append(("reset", f"rank {rank}: {data}"))
                elif text := self._lines(rank, data):
                    items.append(("text", text))
        return items

    def stop(self) -> None:
        for _, feed in self._feeds:
            feed.stop()
