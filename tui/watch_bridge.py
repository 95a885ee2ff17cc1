"""The TUI's automation: the same Watcher as `gpuctl watch`, with actions per pod.

The app runs one `sessions.watch.watcher.Watcher` over its Fleet, so the config's
`policies:` (auto-download, auto-resume, alerts, budget, notify) apply while a person
watches, exactly as they do headless. `w` pauses or resumes a pod's *actions*
(downloads, restarts, budget stop); alerts and events keep flowing either way.

Its state file is the one `gpuctl watch` would use on the same config
(`sessions.watch.state.default_state_path`: the start directory counts only where it
decides where downloads go). When a headless watch already holds it, that watch does
the acting: the TUI then keeps a state of its own in memory-only mode (a temp file),
shows events and alerts, and pauses its actions on every pod so the two never resume
the same session twice (`w` may turn a pod's on: `sessions.checkpoints.target_lock`
still keeps the two from fetching one checkpoint twice).

The Fleet and the Watcher publish their events to the Fleet's one stream
(`sessions.events`); the bridge subscribes the `notify:` targets to it, like headless
watch does. The app
subscribes its toasts (`tui.event_toasts`) and the checkpoint pane to the same
stream, so nothing is told twice and no list of who announces what is needed.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Protocol



class Toast(Protocol):
    """`GpuctlApp.notify`'s shape, as far as the bridge uses it."""

    def __call__(self, message: str, *, title: str = ..., severity: str = ..., timeout: float | None = ...,
                 routine: bool = ..., brief: str | None = ...) -> None: ...


class WatchBridge:
    """Owns the Watcher while the app runs.

    Attributes:
        shared: False when another `gpuctl watch` holds the state file (this app then
            only reports; its actions stay paused).
    """

    def __init__(self, fleet: Any, toast: Toast,
                 start_dir: Path | None = None, state_path: Path | None = None, *, paused: bool = False):
        """`paused`: every pod's actions start paused (read-only mode: alerts only)."""
        self.fleet = fleet
        self.paused = paused
        self.toast = toast
        self.start_dir = start_dir or Path.cwd()
        self.state_path = state_path
        self.shared = True
        self.watcher: Any = None
        self._router: Any = None
        self._unsubscribe: Any = None
        self._state: Any = None
        self._temp: tempfile.TemporaryDirectory | None = None

    def _open_state(self) -> Any:
        from sessions.watch.state import StateLocked, default_state_path, open_state

        path = self.state_path or default_state_path(self.fleet.config.path, self.start_dir, self.fleet.config)
        try:
            state, _note = open_state(path)
            return state
        except StateLocked:
            self.shared = False
            self._temp = tempfile.TemporaryDirectory(prefix="gpuctl-tui-watch-")
            state, _ = open_state(Path(self._temp.name) / "state.json")
            return state

    async def run(self) -> None:
        """Run until cancelled (the app's worker)."""
        from sessions.watch.watcher import Watcher
        from sessions.watch.notify_routing import NotifyRouter

        # The notify targets are one more subscriber of the fleet's stream, like the toasts:
        # the Fleet's news (connections, a person's launch, kill, resume, stop, download)
        # and the Watcher's alike; subscribed first, so the first `connected` reaches them.
        self._router = NotifyRouter(self.fleet.config)
        self._unsubscribe = self.fleet.events.subscribe(self._router.submit)
        try:
            self._state = await asyncio.to_thread(self._open_state)
            self.watcher = Watcher(self.fleet, self._state, start_dir=self.start_dir)
            if not self.shared or self.paused:
                for pod in self.fleet.config.pods:
                    self.watcher.set_actions(pod.name, False)
            if not self.shared:
                self.toast("A headless gpuctl watch runs for this config: it does the downloads and restarts; "
                           "here they are paused (w turns them on per pod).", title="gpuctl watch", timeout=10.0)
            await self.watcher.run()
        finally:
            await self.close()

    def actions_enabled(self, pod: str) -> bool:
        return self.watcher is not None and self.watcher.actions_enabled(pod)

    def toggle(self, pod: str) -> bool | None:
        """Pause or resume the pod's automatic actions; the new setting, or None when
        the watcher is not running yet."""
        if self.watcher is None:
            return None
        enabled = not self.watcher.actions_enabled(pod)
        self.watcher.set_actions(pod, enabled)
        return enabled

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.aclose()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._router is not None:
            await self._router.aclose(timeout=2.0)
            self._router = None
        if self._state is not None:
            self._state.close()
            self._state = None
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

