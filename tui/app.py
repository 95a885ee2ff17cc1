"""The Textual app: a view over the same `sessions.Fleet` the headless commands use.

`make_app` is the one factory the CLI, the Pilot tests and the snapshot tests share.
The app paints first and connects after: `sessions.fleet` (and so asyncssh, ~170 ms
to import) is loaded by the worker that starts the Fleet, never before the first
frame. Snapshots reach the screens as `FleetUpdated` messages from that worker; the
app keeps the history for sparklines, turns changes into toasts, and hands the
snapshot down to the screens, which draw it when visible.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from sessions.config import Config
from sessions.snapshot import FleetSnapshot, PodSnapshot
from themes.palettes import DEFAULT_THEME, STYLESHEETS, THEMES
from tui import bindings, notify_rules, theme_state
from tui.actions import Actions, AttachRunner
from tui.messages import DownloadsChanged, FleetUpdated
from tui.sparkline_history import History

UI_INTERVAL = 0.1
"""Seconds between two fleet redraws at most. Snapshots are latest-only, so a burst of
pod updates (50 pods at 1 Hz is one every 20 ms) becomes one redraw per interval
instead of fifty a second, and a lone update is drawn at once. bench/tui_fleet.py, 50
pods: the UI adds ~4.5 % of a core at 0.1 s (p99 106 ms to screen), ~3 % at 0.25 s
(p99 257 ms); 0.1 s keeps the screen feeling live."""

FleetFactory = Callable[[Config], Any]


def _real_fleet(config: Config) -> Any:
    from sessions.fleet import Fleet

    return Fleet(config)


def _initial_snapshot(config: Config) -> FleetSnapshot:
    """Every configured pod as `connecting`, to paint before any connection exists."""
    return FleetSnapshot(tuple(PodSnapshot(name=p.name, host=p.host, price_per_hour=p.price_per_hour)
                               for p in config.pods))


class GpuctlApp(App[int]):
    TITLE = "gpuctl"
    CSS_PATH = [str(p) for p in STYLESHEETS]
    BINDINGS = bindings.APP

    def __init__(self, config: Config, *, read_only: bool = False, fleet_factory: FleetFactory | None = None,
                 attach_runner: AttachRunner | None = None, state_file: Path | None = None,
                 ui_interval: float = UI_INTERVAL) -> None:
        super().__init__()
        self._theme_ready = False  # remember picks only, not the theme set here
        self.config = config
        self.fleet: Any = None
        """The running Fleet, once the worker has started it."""
        self.snapshot = _initial_snapshot(config)
        self.history = History()
        self.actions = Actions(self, read_only=read_only or config.read_only, attach_runner=attach_runner)
        self.ui_interval = ui_interval
        self._fleet_factory = fleet_factory
        self._cooldown = notify_rules.Cooldown()
        self._state_file = state_file
        self._warnings: list[str] = []
        self.keymap, problems = bindings.keymap_from_config(config.keys)
        self._warnings += problems
        for theme in THEMES:
            self.register_theme(theme)
        wanted = theme_state.chosen_theme(config.theme, state_file) or DEFAULT_THEME
        if wanted not in self.available_themes:
            self._warnings.append(f"theme: no theme named {wanted!r}; themes: {', '.join(t.name for t in THEMES)}")
            wanted = DEFAULT_THEME
        self.theme = wanted

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {"log-match": "#E8A33D 35%"}  # for Textual's own themes, which lack it

    def get_default_screen(self) -> Screen:
        """The fleet screen is the app's own first screen: nothing blank is drawn
        first, and no screen is pushed before the first frame."""
        from tui.screens.fleet_screen import FleetScreen

        return self.home_screen() or FleetScreen()

    def on_mount(self) -> None:
        self.set_keymap(self.keymap)
        for warning in self._warnings:
            self.notify(warning, title="config", severity="warning", timeout=10)
        self._theme_ready = True
        self.call_after_refresh(self.follow_fleet)  # paint first, then import asyncssh and connect

    def home_screen(self) -> Screen | None:
        """The first screen; None for the fleet screen (bench/ swaps in a blank one)."""
        return None

    # -- the Fleet -------------------------------------------------------------------

    @work(exclusive=True, group="fleet", exit_on_error=False)
    async def follow_fleet(self) -> None:
        """Start the Fleet (after the first paint) and post its snapshots."""
        try:
            if self._fleet_factory is None:
                # asyncssh takes ~170 ms to import: load it off the event loop.
                await asyncio.to_thread(importlib.import_module, "sessions.fleet")
            fleet = (self._fleet_factory or _real_fleet)(self.config)
            fleet.start()
        except Exception as exc:  # noqa: BLE001 - shown, and the app stays up
            self.notify(f"Could not start monitoring: {exc}", severity="error", timeout=30)
            return
        self.fleet = fleet
        subscription = fleet.subscribe()
        try:
            async for snapshot in subscription:
                self.post_message(FleetUpdated(snapshot, time.perf_counter()))
                await asyncio.sleep(self.ui_interval)
        finally:
            subscription.close()
            await fleet.stop()

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        previous, self.snapshot = self.snapshot, message.snapshot
        self.history.feed(self.snapshot)
        notes = notify_rules.changes(previous, self.snapshot)
        for note in self._cooldown.admit(notes, time.monotonic()):
            self.notify(note.message, title=note.title, severity=note.severity)  # type: ignore[arg-type]
        for screen in self.screen_stack:
            show = getattr(screen, "show", None)
            if show is not None:
                show(self.snapshot)

    def on_downloads_changed(self, _message: DownloadsChanged) -> None:
        for screen in self.screen_stack:
            changed = getattr(screen, "downloads_changed", None)
            if changed is not None:
                changed()

    # -- app-wide actions -------------------------------------------------------------

    def action_help(self) -> None:
        """Show every key (`?`)."""
        from tui.screens.help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from tui.palette import screen_commands

        yield from super().get_system_commands(screen)
        yield from screen_commands(self, screen)

    def watch_theme(self, theme: str) -> None:
        if self._theme_ready:
            theme_state.remember_theme(theme, self.config.theme, self._state_file)


def make_app(config: Config, *, read_only: bool = False, fleet_factory: FleetFactory | None = None,
             attach_runner: AttachRunner | None = None, state_file: Path | None = None,
             ui_interval: float = UI_INTERVAL) -> GpuctlApp:
    """The app for `config`; tests pass a recording `attach_runner`, snapshot tests a
    `fleet_factory` that yields fixed snapshots."""
    return GpuctlApp(config, read_only=read_only, fleet_factory=fleet_factory, attach_runner=attach_runner,
                     state_file=state_file, ui_interval=ui_interval)


def run_app(config: Config, read_only: bool = False) -> int:
    """Run the TUI until the user quits; the exit status for the CLI."""
    app = make_app(config, read_only=read_only)
    app.run()
    return app.return_code or 0
