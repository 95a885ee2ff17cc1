"""Turning streamed log text into display lines, and telling which lines are trouble.

Pure, no Textual. A stream arrives in arbitrary chunks: a chunk may end mid-line, and
progress bars redraw a line with `\\r`. `LineSplitter` yields complete lines the way a
terminal would have left them (the text after the last `\\r`), and keeps the
unterminated tail, which is usually the live progress bar, as `partial`.
`LineClassifier` marks errors (tracebacks from their first line to the exception,
`CUDA out of memory`, NCCL failures, `nan`/`inf` loss) and warnings. `fit_bar` draws a
tqdm bar narrower, as tqdm would have in a narrower terminal.
"""

from __future__ import annotations

import re

from sessions.progress.formats import strip_controls

MAX_LINE = 4000
"""Longer lines are cut: a log line this long is binary noise, not something to read."""

ERROR_RE = re.compile(
    r"Traceback \(most recent call last\)|CUDA out of memory|OutOfMemoryError|CUDA error"
    r"|NCCL (?:error|timeout)|Segmentation fault|core dumped|^Killed\b"
    r"|^\s*[\w.]*(?:Error|Exception)(?::|$)"
    r"|\bloss\b\W{0,4}(?:nan|-?inf)\b|\b(?:nan|inf)\b\W{0,3}loss\b|\bNaN or Inf\b",
    re.IGNORECASE,
)
LEVEL_ERROR_RE = re.compile(r"\b(?:ERROR|FATAL|CRITICAL)\b")
WARNING_RE = re.compile(r"\bWARN(?:ING)?\b|\bwarning:|\bUserWarning\b|\bDeprecationWarning\b")


TQDM_BAR_RE = re.compile(r"^(?P<pre>.*?\d+%\|)(?P<bar>[^|]{5,})(?P<post>\|.*)$")
BAR_CELLS = " ▏▎▍▌▋▊▉█"
"""tqdm's unicode bar: blank, 1/8 ... 7/8, full."""


def fit_bar(line: str, width: int) -> str:
    """A tqdm line wider than `width` with its bar drawn shorter so the line fits.

    tqdm sizes the bar to the terminal it ran in (often 200+ columns in tmux); wrapped
    into a pane that is a row of blocks, a row of blanks, then the counts. The counts,
    rate and ETA are what matter, so the bar gives up width first (down to 4 cells).
    """
    if width <= 0 or len(line) <= width:
        return line
    match = TQDM_BAR_RE.match(line.rstrip())
    if match is None:
        return line
    pre, bar, post = match.group("pre", "bar", "post")
    cells = max(4, width - len(pre) - len(post))
    if cells >= len(bar):
        return line
    eighths = len(BAR_CELLS) - 1
    done = sum(eighths if c == BAR_CELLS[-1] else max(0, BAR_CELLS.find(c)) for c in bar) / (len(bar) * eighths)
    full, part = divmod(round(done * cells * eighths), eighths)
    drawn = BAR_CELLS[-1] * full + (BAR_CELLS[part] if full < cells else "")
    return pre + drawn.ljust(cells) + post


def last_redraw(line: str) -> str:
    """What a terminal shows of a line redrawn with `\\r`: its last non-empty part."""
    if "\r" not in line:
        return line
    for part in reversed(line.split("\r")):
        if part:
            return part
    return ""


class LineSplitter:
    """Feed chunks; get complete lines back; `partial` is the unterminated tail."""

    def __init__(self) -> None:
        self.partial = ""

    def feed(self, text: str) -> list[str]:
        data = strip_controls(self.partial + text) if text else self.partial
        parts = data.split("\n")
        self.partial = parts.pop()[-MAX_LINE * 4:]
        return [last_redraw(p)[:MAX_LINE] for p in parts]

    @property
    def tail(self) -> str:
        """The partial line as it would look on a terminal right now."""
        return last_redraw(self.partial)[:MAX_LINE]


class LineClassifier:
    """Gives each line a tone: "error", "warning" or "". Stateful only for tracebacks:
    every line of one is an error, up to and including the exception line."""

    def __init__(self) -> None:
        self._in_traceback = False

    def tone(self, line: str) -> str:
        if self._in_traceback:
            if line[:1] in (" ", "\t") or not line.strip() or line.startswith("During handling"):
                return "error"
            self._in_traceback = False
            return "error"  # the exception line closes it
        if ERROR_RE.search(line) or LEVEL_ERROR_RE.search(line):
            if line.lstrip().startswith("Traceback (most recent call last)"):
                self._in_traceback = True
            return "error"
        if WARNING_RE.search(line):
            return "warning"
        return ""

    def peek(self, line: str) -> str:
        """The tone of a line without changing state (for the partial line)."""
        saved = self._in_traceback
        try:
            return self.tone(line)
        finally:
            self._in_traceback = saved
