"""Confirmation dialogs for destructive actions: they say exactly what will happen.

`ConfirmDialog` answers True/False (`y` or the button confirms; `n`, Escape or Cancel
declines; Cancel has the focus, so a stray Enter is safe). `TypedConfirmDialog` also
requires typing a name (teardown: the pod's) before the confirm button wakes up.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from themes.palettes import DIALOG_STYLESHEET
from tui.bindings import DIALOG


class ConfirmDialog(ModalScreen[bool]):
    """Ask one yes/no question about a destructive action."""

    CSS_PATH = str(DIALOG_STYLESHEET)

    BINDINGS = DIALOG

    def __init__(self, title: str, body: str, confirm_label: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self.title_text
            yield Static(Content(self.body), classes="dialog-body")
            yield from self.compose_extra()
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.confirm_label, id="confirm", variant="error", compact=True)
            yield Static(Content(self.hint()), classes="dialog-hint")

    def compose_extra(self) -> ComposeResult:
        return iter(())

    def hint(self) -> str:
        return "y: confirm · n / Esc: cancel"

    def on_mount(self) -> None:
        # One handler for both classes: Textual runs every class's on_mount.
        self.query_one("#confirm", Button).disabled = not self.ready()
        self.query_one(self.first_focus()).focus()

    def first_focus(self) -> str:
        return "#cancel"

    def ready(self) -> bool:
        """Whether the confirm button may be pressed now."""
        return True

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class TypedConfirmDialog(ConfirmDialog):
    """Confirm only after `expected` is typed exactly (for irreversible actions)."""

    def __init__(self, title: str, body: str, confirm_label: str, expected: str) -> None:
        super().__init__(title, body, confirm_label)
        self.expected = expected

    def compose_extra(self) -> ComposeResult:
        yield Input(placeholder=f"type {self.expected} to confirm", id="typed")

    def hint(self) -> str:
        return f"type {self.expected}, then Enter · Esc: cancel"

    def first_focus(self) -> str:
        return "#typed"

    def ready(self) -> bool:
        return self.query_one("#typed", Input).value == self.expected

    @on(Input.Changed, "#typed")
    def _typed(self) -> None:
        self.query_one("#confirm", Button).disabled = not self.ready()

    @on(Input.Submitted, "#typed")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.dismiss(True)

    def action_confirm(self) -> None:
        if self.ready():
            self.dismiss(True)
