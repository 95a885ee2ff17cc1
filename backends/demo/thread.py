"""Run a `Demo` on an event loop in a thread of its own.

The front end keeps its own loop for gpuctl's side (the TUI's, or `asyncio.run` of the
headless view); the pods live on this one, as they would on other machines, so a busy
screen never stalls an SSH server and a stop is one call from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine

from backends.demo.demo import Demo, DemoError


class DemoThread:
    """Runs a `Demo` on an event loop in a thread of its own (see the module docstring)."""

    def __init__(self, demo: Demo):
        self.demo = demo
        self.problems: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_requested = threading.Event()

    def start(self, timeout: float = 60.0) -> Demo:
        """Start the pods; returns the demo once everything answers.

        Raises:
            DemoError: and anything else `Demo.start` raised.
        """
        self._thread = threading.Thread(target=self._main, name="gpuctl-demo-pods", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise DemoError(f"the demo pods did not start within {timeout:g}s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self.demo

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self.demo.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while not self._stop_requested.is_set():  # a stop may be asked before this loop runs
            await asyncio.sleep(0.1)
        self.problems = await self.demo.stop()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the pods' loop (``demo.preempt(...)``) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> list[str]:
        """Stop and clean up everything; returns what could not be cleaned."""
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.problems.append(f"the demo pods did not stop within {timeout:g}s")
        return self.problems
