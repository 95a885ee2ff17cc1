"""The key line at the bottom: every shown binding of the screen, one widget.

Textual's Footer mounts a widget per key and recomposes them all whenever bindings
change (a highlighted pod that cannot be launched greys out `n`); on the fleet screen
that was ~180 ms before the first frame. This draws the same line as one Text: keys
in the footer key colour, greyed when `check_action` disables them, hidden when it
hides them, and the palette key kept at the right edge.
"""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget

from tui.bindings import FOOTER_PRIORITY
from tui.widgets.tones import component_style

_RANK = {binding_id: rank for rank, binding_id in enumerate(FOOTER_PRIORITY)}


class KeyBar(Widget):
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--disabled"}
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    KeyBar > .key-bar--key { color: $footer-key-foreground; text-style: bold; }
    KeyBar > .key-bar--description { color: $footer-description-foreground; }
    KeyBar > .key-bar--disabled { color: $text-disabled; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._items: tuple[tuple[str, str, bool, int], ...] = ()
        self._palette: str | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        items, palette, seen = [], None, set()
        for _node, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.action in ("command_palette", "app.command_palette"):
                palette = self.app.get_key_display(binding)
            elif binding.show and binding.action not in seen:
                seen.add(binding.action)
                rank = _RANK.get(binding.id or "", len(_RANK))
                items.append((self.app.get_key_display(binding), binding.description, enabled, rank))
        if (tuple(items), palette) != (self._items, self._palette):
            self._items, self._palette = tuple(items), palette
            self.refresh()

    def render(self) -> Text:
        key = component_style(self, "key-bar--key")
        desc = component_style(self, "key-bar--description")
        off = component_style(self, "key-bar--disabled")  # $text-disabled: translucent
        tail = Text.assemble(("▏", off), (self._palette, key), (" Palette", desc)) if self._palette else Text()
        room = self.size.width - tail.cell_len
        pieces = [Text.assemble((key_text, key if enabled else off), (f" {description}  ", desc if enabled else off))
                  for key_text, description, enabled, _rank in self._items]
        # Whole keys only, chosen by FOOTER_PRIORITY when they do not all fit (`?` lists
        # the rest), shown in binding order.
        chosen, used = set(), 0
        for index in sorted(range(len(pieces)), key=lambda i: (self._items[i][3], i)):
            if used + pieces[index].cell_len - 2 <= room:
                chosen.add(index)
                used += pieces[index].cell_len
        text = Text(no_wrap=True, end="")
        for index, piece in enumerate(pieces):
            if index in chosen:
                text.append_text(piece)
        text.truncate(max(0, room), pad=True)
        return text + tail
