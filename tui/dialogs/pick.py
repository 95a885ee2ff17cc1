"""Pick one name from a short list (which configured session to launch)."""

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

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        """`choices`: (name, description) pairs."""
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self.title_text
            yield OptionList(*(Option(Content(f"{name}  {desc}"), id=name) for name, desc in self.choices))
            yield Static(Content("Enter: choose · Esc: cancel"), classes="dialog-hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
