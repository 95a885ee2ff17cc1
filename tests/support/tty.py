"""A stand-in terminal for commands that act differently on one (ask, colour, refuse)."""

from __future__ import annotations

import io


class Tty(io.StringIO):
    """A stream that says it is a terminal; as stdin it holds the user's typed answer."""

    def isatty(self) -> bool:
        return True
