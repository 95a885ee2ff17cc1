"""The Textual app: a view over the same `sessions.Fleet` the headless commands use.

`make_app` is the one factory the CLI, the Pilot tests and the snapshot tests share.
The app paints first and connects after: `sessions.fleet.facade` (and so asyncssh, ~170 ms
to import) is loaded by the worker that starts the Fleet, never before the first
frame. The CLI also hands over a function that reads the config rather than the
config itself, so the config schema and YAML (~50 ms to import) load after the first
frame too; that frame says "Reading config…" until the pods appear, and a bad config
closes the app and `run_app` raises its error for the CLI to print.

Snapshots reach the screens as `FleetUpdated` messages from the Fleet's worker; the
app keeps the history for sparklines and hands the snapshot down to the screens, which
draw it when visible. News (a connection lost, a session exited, an alert, a
checkpoint downloaded or pruned, what an action did) is not derived from snapshots here: the app
subscribes to the Fleet's one event stream (`sessions.events`), toasts each event
(`tui.event_toasts`) and hands it to the screens (`EventArrived`), so a toast and the
checkpoint pane change together.

Every notification passes through `notify`: kept whole in `notices` (the history
screen, `m`) and shown as a toast of at most two lines (`tui.toasts`), in a band
above the key line that the screen's layout gives up while it shows (gpuctl.tcss), so
a toast never covers a table row.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from sessions.snapshot import FleetSnapshot, PodSnapshot
from themes.palettes import DEFAULT_THEME, STYLESHEETS, THEMES
from tui import bindings, theme_state, toasts
from tui.actions import Actions, AttachRunner
from tui.messages import DownloadsChanged, EventArrived, FleetUpdated
from tui.notices import Notice, NoticeLog, tidy
from tui.sparkline_history import History
from tui.stall_notes import StallNotes

if TYPE_CHECKING:
    from sessions.config.loader import Config
    from sessions.events import WatchEvent
    from tui import event_toasts

UI_INTERVAL = 0.1
"""Seconds between two fleet redraws at most. Snapshots are latest-only, so a burst of
pod updates (50 pods at 1 Hz is one every 20 ms) becomes one redraw per interval
instead of fifty a second, and a lone update is drawn at once. bench/tui_fleet.py, 50
pods: the UI adds ~4.5 % of a core at 0.1 s (p99 106 ms to screen), ~3 % at 0.25 s
(p99 257 ms); 0.1 s keeps the screen feeling live."""

FleetFactory = Callable[["Config"], Any]
ConfigLoader = Callable[[], "Config"]
"""Reads and validates the config (run in a thread after the first frame); raises
`sessions.config.loader.ConfigError` when it cannot."""


def _real_fleet(config: "Config") -> Any:
    from sessions.fleet.facade import Fleet

    return Fleet(config, slurm_jobs=True)  # Slurm pods' jobs as rows under their login node


def _initial_snapshot(config: "Config") -> FleetSnapshot:
    """Every configured pod as `connecting`, to paint before any connection exists."""
    return FleetSnapshot(tuple(PodSnapshot(name=p.name, host=p.host, price_per_hour=p.price_per_hour)
                               for p in config.pods))


class GpuctlApp(App[int]):
    TITLE = "gpuctl"
    CSS_PATH = [str(p) for p in STYLESHEETS]
    BINDINGS = bindings.APP

    def __init__(self, config: "Config | ConfigLoader", *, read_only: bool = False,
                 fleet_factory: FleetFactory | None = None, attach_runner: AttachRunner | None = None,
                 state_file: Path | None = None, ui_interval: float = UI_INTERVAL, help_note: str = "") -> None:
        """`config` is the Config, or a `ConfigLoader` to call after the first frame;
        `help_note` is a line the `?` screen ends with (the demo's shortcut)."""
        super().__init__()
        self.help_note = help_note
        self._theme_ready = False  # remember picks only, not the theme set here
        self.config: Config = None  # type: ignore[assignment]  # set by _take_config
        """The config; None only while a `ConfigLoader` is still reading it."""
        self.startup_error: Exception | None = None
        """What the `ConfigLoader` raised; the app has closed with status 2."""
        self.fleet: Any = None
        """The running Fleet, once the worker has started it."""
        self.automation: Any = None
        """The `tui.watch_bridge.WatchBridge` running the config's policies, once started."""
        self.snapshot = FleetSnapshot()
        self.history = History()
        self.actions = Actions(self, read_only=read_only, attach_runner=attach_runner)
        self.stall_notes = StallNotes()  # why a session stalled, as watch diagnosed it (pod screen rows)
        self.ui_interval = ui_interval
        self._read_only_flag = read_only
        self._fleet_factory = fleet_factory
        self._cooldown: event_toasts.Cooldown | None = None
        self._state_file = state_file
        self._warnings: list[str] = []
        self.notices = NoticeLog()
        """Every notification shown, in full (the history screen)."""
        self.start_dir = Path.cwd()
        """Where gpuctl was started: downloads land under it, toasts name paths relative to it."""
        self.keymap: dict[str, str] = {}
        for theme in THEMES:
            self.register_theme(theme)
        self._config_loader: ConfigLoader | None = None
        if callable(config):
            self._config_loader = config
            # Until config says otherwise: the theme last picked with no `theme:` in config
            # (a config that names a theme repaints in it once read).
            self._set_theme(theme_state.chosen_theme(None, state_file), warn=False)
        else:
            self._take_config(config)

    def _take_config(self, config: "Config") -> None:
        """Everything the app derives from config, before the screens are told."""
        self.config = config
        self.snapshot = _initial_snapshot(config)
        self.actions.read_only = self._read_only_flag or config.read_only
        self.keymap, problems = bindings.keymap_from_config(config.keys)
        self._warnings += problems
        self._set_theme(theme_state.chosen_theme(config.theme, self._state_file))

    def _set_theme(self, wanted: str | None, warn: bool = True) -> None:
        wanted = wanted or DEFAULT_THEME
        if wanted not in self.available_themes:
            if warn:
                self._warnings.append(f"theme: no theme named {wanted!r}; themes: {', '.join(t.name for t in THEMES)}")
            wanted = DEFAULT_THEME
        if wanted != self.theme:
            self.theme = wanted

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {"log-match": "#E8A33D 35%"}  # for Textual's own themes, which lack it

    def get_default_screen(self) -> Screen:
        """The fleet screen is the app's own first screen: nothing blank is drawn
        first, and no screen is pushed before the first frame."""
        from tui.screens.fleet_screen import FleetScreen

        return self.home_screen() or FleetScreen()

    def on_mount(self) -> None:
        if self._config_loader is None:
            self._start()
        else:
            self.call_after_refresh(self.read_config)  # paint first, then import the config schema

    def _start(self) -> None:
        """Config is in: keys, warnings, the pods, then (after a paint) the Fleet."""
        self.set_keymap(self.keymap)
        for warning in self._warnings:
            self.notify(warning, title="config", severity="warning", timeout=10)
        self._warnings.clear()
        self._theme_ready = True
        self.call_after_refresh(self.follow_fleet)  # paint first, then import asyncssh and connect

    @work(exclusive=True, group="config", exit_on_error=False)
    async def read_config(self) -> None:
        """Call the `ConfigLoader` off the event loop; a config error closes the app."""
        assert self._config_loader is not None
        try:
            config = await asyncio.to_thread(self._config_loader)
        except Exception as exc:  # noqa: BLE001 - run_app raises it once the terminal is back
            self.startup_error = exc
            self.exit(return_code=2)
            return
        self._take_config(config)
        self._show(self.snapshot)
        self._start()

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
                await asyncio.to_thread(importlib.import_module, "sessions.fleet.facade")
            fleet = (self._fleet_factory or _real_fleet)(self.config)
            fleet.start()
        except Exception as exc:  # noqa: BLE001 - shown, and the app stays up
            self.notify(f"Could not start monitoring: {exc}", severity="error", timeout=30)
            return
        self.fleet = fleet
        events = getattr(fleet, "events", None)  # the one event stream (sessions/events.py)
        unsubscribe = events.subscribe(self.take_event) if events is not None else None
        if getattr(fleet, "config", None) is not None:  # a real Fleet: policies apply here too
            self.start_automation(fleet)
        subscription = fleet.subscribe()
        try:
            async for snapshot in subscription:
                self.post_message(FleetUpdated(snapshot, time.perf_counter()))
                await asyncio.sleep(self.ui_interval)
        finally:
            subscription.close()
            if unsubscribe is not None:
                unsubscribe()
            await fleet.stop()

    def start_automation(self, fleet: Any) -> None:
        """Run the config's policies (`gpuctl watch`'s engine) beside the Fleet."""
        from tui.watch_bridge import WatchBridge

        self.automation = WatchBridge(fleet, self.notify, start_dir=self.start_dir, paused=self.actions.read_only)
        self.run_worker(self.automation.run(), name="automation", group="automation", exit_on_error=False)

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        self.snapshot = message.snapshot
        self.history.feed(self.snapshot)
        self._show(self.snapshot)

    def take_event(self, event: "WatchEvent") -> None:
        """The stream's subscriber: called by whoever publishes (the Fleet, the Watcher),
        so it only queues the event for the app's own message loop."""
        self.post_message(EventArrived(event))

    def on_event_arrived(self, message: EventArrived) -> None:
        """Toast the event (once, by `tui.event_toasts`), then let the screens act on it."""
        from tui import event_toasts  # not needed for the first frame

        event = message.event
        toast = event_toasts.toast_for(event)
        if self._cooldown is None:
            self._cooldown = event_toasts.Cooldown()
        if toast is not None and self._cooldown.admit(toast, time.monotonic()):
            self.notify(toast.message, title=toast.title, severity=toast.severity, timeout=toast.timeout,
                        routine=toast.routine, brief=toast.brief)
        self.actions.take_event(event)
        self.stall_notes.take(event)
        for screen in self.screen_stack:
            take = getattr(screen, "take_event", None)
            if take is not None:
                take(event)

    def _show(self, snapshot: FleetSnapshot) -> None:
        for screen in self.screen_stack:
            show = getattr(screen, "show", None)
            if show is not None:
                show(snapshot)

    def on_downloads_changed(self, _message: DownloadsChanged) -> None:
        for screen in self.screen_stack:
            changed = getattr(screen, "downloads_changed", None)
            if changed is not None:
                changed()

    # -- notifications ----------------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: str = "information",  # type: ignore[override]
               timeout: float | None = None, markup: bool = True, routine: bool = False,
               brief: str | None = None) -> None:
        """Record a notification in full and show it short.

        `routine`: news nobody acts on (a download finished): one line, shown
        briefly. `brief`: the toast's text when the caller has a shorter one than
        `message` (the history keeps `message`). `markup` is ignored: gpuctl's
        messages are plain text, and an exception's `[Errno 2]` must not be read as
        a style.
        """
        from textual.notifications import Notify

        notice = self.notices.add(Notice(title, tidy(str(message)), severity, routine))
        if timeout is None:
            timeout = toasts.ROUTINE_S if routine else self.NOTIFICATION_TIMEOUT
        self.post_message(Notify(toasts.toast(notice, screen_width=self.size.width, timeout=timeout, brief=brief,
                                              start_dir=self.start_dir)))
        for screen in self.screen_stack:
            changed = getattr(screen, "notices_changed", None)
            if changed is not None:
                changed()

    def action_notifications(self) -> None:
        """Every notification so far, in full (`m`)."""
        from tui.screens.notifications_screen import NotificationsScreen

        if not isinstance(self.screen, NotificationsScreen):
            self.push_screen(NotificationsScreen())

    # -- app-wide actions -------------------------------------------------------------

    def action_help(self) -> None:
        """Show every key (`?`)."""
        from tui.screens.help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from tui.palette import screen_commands

        yield from screen_commands(self, screen)  # not Textual's defaults: see tui.palette

    def watch_theme(self, theme: str) -> None:
        if self._theme_ready:
            theme_state.remember_theme(theme, self.config.theme, self._state_file)


def make_app(config: "Config | ConfigLoader", *, read_only: bool = False, fleet_factory: FleetFactory | None = None,
             attach_runner: AttachRunner | None = None, state_file: Path | None = None,
             ui_interval: float = UI_INTERVAL, help_note: str = "") -> GpuctlApp:
    """The app for `config` (or for what a `ConfigLoader` reads after the first frame);
    tests pass a recording `attach_runner`, snapshot tests a `fleet_factory` that
    yields fixed snapshots."""
    return GpuctlApp(config, read_only=read_only, fleet_factory=fleet_factory, attach_runner=attach_runner,
                     state_file=state_file, ui_interval=ui_interval, help_note=help_note)


def run_app(config: "Config | ConfigLoader", read_only: bool = False, help_note: str = "") -> int:
    """Run the TUI until the user quits; the exit status for the CLI.

    Raises what a `ConfigLoader` raised (a `ConfigError` for a bad config), after the
    app has closed and given the terminal back, so the message is readable."""
    app = make_app(config, read_only=read_only, help_note=help_note)
    app.run()
    if app.startup_error is not None:
        raise app.startup_error
    return app.return_code or 0
