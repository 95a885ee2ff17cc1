"""Command palette (`ctrl+p`) entries: the current screen's key actions and the themes.

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
    seen = set()
    for binding in getattr(screen, "BINDINGS", ()):
        if not isinstance(binding, Binding) or not binding.id or binding.id in seen:
            continue
        seen.add(binding.id)
        name = binding.action.split("(")[0]
        if screen.check_action(name, ()) is not True:
            continue
        yield SystemCommand(f"{binding.description} ({key_label(app, binding)})",
                            binding.tooltip or f"key binding {binding.id}",
                            partial(screen.run_action, binding.action))
    for theme in THEMES:
        yield SystemCommand(f"Theme: {theme.name}", "switch the colour theme (remembered)",
                            partial(setattr, app, "theme", theme.name))
