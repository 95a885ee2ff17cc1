"""Command palette (`ctrl+p`) entries: the current screen's key actions and gpuctl's themes.

Built from the same binding tables as the footer and the help screen, and filtered by
the same `check_action`, so the palette never offers what a key would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from themes.palettes import THEMES


def key_label(app: App, binding: Binding) -> str:
    """The key as shown in the footer, after config `keys:` remapping."""
    keys = getattr(app, "keymap", {}).get(binding.id or "", binding.key)
    return ", ".join(app.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))


def screen_commands(app: App, screen: Screen) -> Iterable[SystemCommand]:
    """gpuctl's own entries only: the screen's keys, then the app's (help, quit), then
    gpuctl's themes. Textual's defaults (its 24 themes, Keys, Screenshot, Maximize...)
    are left out: they sat beside ours, mostly did nothing useful here, and a Textual
    theme lacks the colours gpuctl's screens are drawn with."""
    seen = {"app.palette"}  # the palette does not list itself
    owners = [(screen, b) for b in getattr(screen, "BINDINGS", ())] + [(app, b) for b in getattr(app, "BINDINGS", ())]
    for owner, binding in owners:
        if not isinstance(binding, Binding) or not binding.id or binding.id in seen:
            continue
        seen.add(binding.id)
        name = binding.action.split("(")[0]
        if owner is screen and screen.check_action(name, ()) is not True:
            continue
        yield SystemCommand(f"{binding.description} ({key_label(app, binding)})",
                            binding.tooltip or f"key binding {binding.id}",
                            partial(owner.run_action, binding.action))
    for theme in THEMES:
        yield SystemCommand(f"Theme: {theme.name}", "switch the colour theme (remembered)",
                            partial(setattr, app, "theme", theme.name))
