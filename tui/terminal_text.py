"""Text from pods made safe for a terminal: control characters shown, never obeyed.

Checkpoint and session names, GPU names, error lines and log bytes all come from the
pod, and a pod is not trusted: `step_3\\x1b]52;c;…\\x07.pt` written to a terminal sets
the user's clipboard (OSC 52), `\\x1b[2J` clears the screen, a title sequence renames
the window. Rich passes ESC through untouched, so every human-readable output runs
pod text through here first. JSON output needs none of this (json.dumps escapes
control characters itself), and the TUI draws text through Textual, which is safe.

Two forms:

* `visible(text)` for names and messages: every control character (C0 but tab and
  newline, DEL, C1) and every byte a pod sent that is not UTF-8 (kept as a lone
  surrogate by `surrogateescape` decoding) becomes a visible escape: `\\x1b`, `\\xff`.
* `LogBytes` for log streams (`gpuctl logs`), where a framework's colours and tqdm's
  carriage returns are part of what the user wants to see: SGR colour sequences
  (`ESC [ … m`), `\\r`, `\\t` and `\\n` pass; every other control byte is escaped. It
  keeps a sequence split across two chunks together.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udcff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}"


def visible(text: str) -> str:
    """`text` with control characters and undecodable bytes written as `\\xNN` escapes."""
    return _CONTROL.sub(_escape, text)


_SGR = re.compile(rb"\x1b\[[0-9;:]*m")
_PARTIAL_SGR = re.compile(rb"\x1b(\[[0-9;:]*)?\Z")
_LOG_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_HELD = 64


class LogBytes:
    """Sanitize a log byte stream chunk by chunk; see the module docstring.

    C1 bytes (0x80-0x9f) are not escaped here: in a UTF-8 stream they are continuation
    bytes of ordinary characters, and a UTF-8 terminal does not read them as controls.
    """

    def __init__(self) -> None:
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The safe bytes of `chunk`; an unfinished colour sequence at its end waits."""
        data = self._held + chunk
        self._held = b""
        tail = _PARTIAL_SGR.search(data)
        if tail is not None and len(data) - tail.start() <= _MAX_HELD:
            self._held = data[tail.start():]
            data = data[:tail.start()]
        return self._clean(data)

    def flush(self) -> bytes:
        """Whatever is still held, escaped (the stream ended inside a sequence)."""
        held, self._held = self._held, b""
        return self._clean(held)

    @staticmethod
    def _clean(data: bytes) -> bytes:
        out = []
        pos = 0
        for match in _SGR.finditer(data):
            out.append(_LOG_CONTROL.sub(_escape_byte, data[pos:match.start()]))
            out.append(match.group())
            pos = match.end()
        out.append(_LOG_CONTROL.sub(_escape_byte, data[pos:]))
        return b"".join(out)


def _escape_byte(match: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % match.group()[0]


def plain_table(rows: list[list[str]]) -> str:
    """Rows as aligned plain text (two spaces between columns, no trailing blanks),
    every cell through `visible`: the one renderer of gpuctl's plain tables."""
    shown = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in shown) for i in range(len(shown[0]))] if shown else []
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in shown)
