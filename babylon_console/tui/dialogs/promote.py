"""Choose how to promote a checkpoint: an A/B share of agents, or 100% (make it live)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, RadioButton, RadioSet, Static

from .. import bindings as keys

SHARES: tuple[tuple[float, str], ...] = (
    (0.10, "A/B: 10% of agents"),
    (0.25, "A/B: 25% of agents"),
    (0.50, "A/B: 50% of agents"),
    (1.00, "100%: make it the live model"),
)


class PromoteDialog(ModalScreen[float | None]):
    """Returns the chosen share, or None when cancelled. Confirmation follows in a ConfirmDialog."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel" and b.key == "escape"]

    def __init__(self, model_id: str, live_id: str | None, default_share: float = 0.10) -> None:
        super().__init__()
        self.model_id = model_id
        self.live_id = live_id
        self.default_share = default_share

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Promote {self.model_id}", classes="dialog-title")
            yield Static(Text.assemble("Live now: ", (self.live_id or "none", "bold"),
                                       "\nChoose the share of agents it serves (↑↓, enter):"), classes="dialog-body")
            with RadioSet(id="promote-share"):
                for share, label in SHARES:
                    yield RadioButton(label, value=abs(share - self.default_share) < 1e-9, name=str(share))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Continue", id="continue", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(RadioSet).focus()

    def chosen(self) -> float:
        pressed = self.query_one(RadioSet).pressed_button
        return float(pressed.name) if pressed is not None and pressed.name else self.default_share

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.query_one("#continue", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.chosen() if event.button.id == "continue" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
