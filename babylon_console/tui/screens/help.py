"""The help screen, generated from the key registry (with the user's keymap applied): keys grouped
by where they work (everywhere, every pane, then each pane's own, which act only while it is shown)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .. import bindings as keys

WHERE = {"app": "on every pane", "main": "on every pane", "table": "the focused table or list, on every pane"}


def help_table(keymap: dict[str, str] | None = None, read_only: bool = False, shown: str | None = None) -> Table:
    """`shown`: the scope of the pane on screen, whose group says so."""
    table = Table.grid(padding=(0, 2))
    table.add_column("key", style="bold", min_width=10, no_wrap=True)
    table.add_column("what", ratio=1)
    table.add_column("id", style="dim", no_wrap=True)
    for scope, title in keys.SCOPE_TITLES.items():
        specs = [s for s in keys.specs(scope) if s.id != "dialog.cancel_n"]
        if not specs:
            continue
        table.add_row("", "", "")
        where = Text(WHERE.get(scope, "only while its pane is shown" if scope in keys.PANE_SCOPES else ""),
                     style="dim italic")
        if scope == shown:
            where.append("  ← the pane shown now", style="bold")
        table.add_row(Text(title, style="bold underline"), where, "")
        for spec in specs:
            what = Text(spec.help or spec.description)
            if spec.writes:
                what.append("  (refused in read-only mode)" if read_only else "  (changes state)", style="dim italic")
            table.add_row(keys.display_key(spec, keymap), what, spec.id)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        app = self.app
        keymap = getattr(app, "keymap_overrides", {})
        main = next((s for s in app.screen_stack if hasattr(s, "active_pane")), None)
        shown = main.active_pane.scope if main is not None else None
        with Vertical(classes="dialog dialog-help"):
            yield Static("Babylon Console: keys", classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(help_table(keymap, bool(getattr(app, "read_only", False)), shown), id="help-table")
            yield Static(Text("Every binding has an id: override keys in <data dir>/keymap.toml under [keys], "
                              'e.g. "checkpoints.promote" = "ctrl+u". esc, q or ? closes.'), classes="dialog-footnote")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
