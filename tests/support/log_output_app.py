"""A log pane alone in a real terminal, fed a line at a time: what tests/test_log_pane_output.py
runs in tmux to see what the pane writes and what the terminal ends up showing.

Usage: python -m tests.support.log_output_app LINES DONE_FILE

It appends `LINES` lines, one per 40 ms (every 7th one longer than 80 columns, so
wrapped rows scroll too), raises a toast over the log a third of the way in that goes
away while lines keep coming, and writes DONE_FILE once the last line is on screen.
The lines' text is `line_text(n)`, so the test knows what the screen must show.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textual.app import App, ComposeResult

from themes.palettes import POD_STYLESHEET
from tui.widgets.log_pane import LogPane


def line_text(n: int) -> str:
    if n % 7 == 0:
        return f"line {n:04d} " + " ".join(f"w{n}.{k}" for k in range(20))
    return f"line {n:04d} | loss {1 / n:.6f} | lr 3.0e-04"


class LogOutputApp(App):
    CSS_PATH = str(POD_STYLESHEET)

    def __init__(self, lines: int, done: Path) -> None:
        super().__init__()
        self.lines = lines
        self.done = done
        self.n = 0

    def compose(self) -> ComposeResult:
        yield LogPane(id="full-log")

    def on_mount(self) -> None:
        self.set_interval(0.04, self.tick)

    def tick(self) -> None:
        self.n += 1
        if self.n <= self.lines:
            self.query_one(LogPane).view.append(line_text(self.n) + "\n")
            if self.n == self.lines // 3:
                self.notify("a toast over the log", timeout=0.6)
        elif self.n == self.lines + 10:  # a few frames after the last line
            self.done.write_text("done")


if __name__ == "__main__":
    LogOutputApp(int(sys.argv[1]), Path(sys.argv[2])).run()
