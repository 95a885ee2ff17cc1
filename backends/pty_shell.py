"""Kept for imports: the PTY shell lives in `backends.transport.pty_shell` now, behind
`backends.transport.PtyTransport`."""

from backends.transport.pty_shell import MAX_LINE, STREAM_IDLE_S, PtyShell

__all__ = ["MAX_LINE", "STREAM_IDLE_S", "PtyShell"]
