"""`?`: every key, grouped by where it works, as remapped by config `keys:`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from themes.palettes import DIALOG_STYLESHEET
from tui.bindings import GROUPS, MUTATING, applies


class HelpScreen(ModalScreen[None]):
    CSS_PATH = str(DIALOG_STYLESHEET)
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(self._table(), classes="help-body")

    def on_mount(self) -> None:
        self.query_one(".help").border_title = "gpuctl keys (Esc closes)"

    def _table(self) -> Table:
        app = self.app
        keymap: dict[str, str] = getattr(app, "keymap", {})
        read_only = app.actions.read_only  # type: ignore[attr-defined]
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", no_wrap=True)
        table.add_column()
        config = getattr(app, "config", None)
        for title, group in GROUPS:
            # Keys that cannot apply to this config (J without `jobs:`) are left out, as
            # the key line and the palette leave them out.
            bindings = [b for b in group if applies(b, config)]
            if not bindings:
                continue
            table.add_row("", Text(title, style="bold underline"))
            for binding in bindings:
                keys = keymap.get(binding.id or "", binding.key)
                shown = ", ".join(app.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))
                what = Text(binding.tooltip or binding.description)
                if read_only and binding.action in MUTATING:
                    what.append("  (off: read-only)", style="dim")
                table.add_row(Text(shown, style="bold"), what)
            table.add_row("", "")
        table.add_row("", Text("Themes: ctrl+p, then “theme”. gpuctl remembers the choice.", style="dim"))
        note = getattr(app, "help_note", "")
        if note:
            table.add_row("", Text(note, style="dim"))
        return table
