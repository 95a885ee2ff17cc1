"""The headless `gpuctl watch`: run the Fleet and the Watcher, print each event.

The Fleet (a pod's state changes, its operations) and the Watcher (session exits,
alerts, what its policies did) publish to the Fleet's event stream (`sessions.events`);
this command subscribes its printer and the notify router to it, as the TUI
subscribes its toasts. A closed stdout ends the watch (the printer cancels it).

One line per event on stdout (JSON with `--json`, readable otherwise), flushed at
once so `gpuctl watch | jq` and `journalctl -f` see events as they happen. What is
about watch itself (where its state lives, a notifier that failed) goes to stderr,
so stdout stays a clean event stream. SIGTERM (systemd's stop) ends it like Ctrl-C:
tasks cancelled, the state file already saved, a download's `.part` kept to resume.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from sessions.events import WatchEvent
from tui.terminal_text import visible


def _say(text: str) -> None:
    print(f"gpuctl watch: {text}", file=sys.stderr, flush=True)


async def run_watch(config: Any, *, state_path: Path, as_json: bool, pod_names: list[str] | None,
                    start_dir: Path, out: TextIO = sys.stdout) -> int:
    """Run until interrupted; returns the exit status."""
    from sessions.fleet.facade import Fleet
    from sessions.watch.watcher import Watcher
    from sessions.watch.notify_routing import NotifyRouter
    from sessions.watch.state import StateLocked, open_state

    try:
        state, note = open_state(state_path)
    except StateLocked as exc:
        _say(str(exc))
        return 1
    if note:
        _say(note)
    router = NotifyRouter(config, on_error=lambda message: _say(f"notify: {message}"))

    def print_event(event: WatchEvent) -> None:
        try:
            out.write((event.json_line() if as_json else visible(event.readable())) + "\n")
            out.flush()
        except OSError:  # `gpuctl watch | head`, a closed terminal: nobody reads; end the watch
            main.cancel()  # type: ignore[union-attr]

    count = len(pod_names) if pod_names else len(config.pods)
    _say(f"watching {count} pod{'s' if count != 1 else ''} from {config.path}; state in {state_path}; "
         "Ctrl-C to stop")
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)  # type: ignore[union-attr]
    except (NotImplementedError, RuntimeError):
        pass
    try:
        async with Fleet(config, pod_names) as fleet:
            # Two subscribers of the fleet's one event stream: this output and the notifiers.
            fleet.events.subscribe(print_event)
            fleet.events.subscribe(router.submit)
            watcher = Watcher(fleet, state, start_dir=start_dir)
            try:
                await watcher.run()
            finally:
                await watcher.aclose()
    except asyncio.CancelledError:
        pass
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await router.aclose()
        state.close()
    return 0
