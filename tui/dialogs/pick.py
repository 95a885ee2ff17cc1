"""Pick one name from a short list (which configured session to launch; resume it or
start it from scratch)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from themes.palettes import DIALOG_STYLESHEET


class PickDialog(ModalScreen["str | None"]):
    """Dismisses with the chosen name, or None on Escape."""

    CSS_PATH = str(DIALOG_STYLESHEET)

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], *, body: str = "", show_names: bool = True) -> None:
        """`choices`: (name, description) pairs; `body`: what the choice is about, above
        them; `show_names=False` shows only the descriptions (names are then ids)."""
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.body = body
        self.show_names = show_names

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self.title_text
            if self.body:
                yield Static(Content(self.body), classes="dialog-body")
            yield OptionList(*(Option(Content(f"{name}  {desc}" if self.show_names else desc), id=name)
                               for name, desc in self.choices))
            yield Static(Content("Enter: choose · Esc: cancel"), classes="dialog-hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
