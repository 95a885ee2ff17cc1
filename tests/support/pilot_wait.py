"""Waiting in a Pilot test for what the app shows, by polling between short pauses.

The app updates from workers and messages, so a test looks again after each pause
until the predicate holds; the limit only bounds a broken run, it measures nothing.
"""

from __future__ import annotations

import time
from typing import Any, Callable


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """`predicate()`'s first true answer; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        result = predicate()
        if result:
            return result
    raise AssertionError(f"timed out waiting for {what}")
