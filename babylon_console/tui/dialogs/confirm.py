"""Confirm before anything irreversible; and a dialog that shows a failure in full."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from .. import bindings as keys


class ConfirmDialog(ModalScreen[bool]):
    """Yes / no. `y` confirms; `n`, `esc` (and the focused No button with enter) cancel."""

    BINDINGS: ClassVar = keys.bindings("dialog")

    def __init__(self, title: str, message: str | Text, confirm_label: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(Text(self.message) if isinstance(self.message, str) else self.message, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="error" if self.danger else "primary")
                yield Button("No (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ErrorDialog(ModalScreen[None]):
    """A failure that needs reading (an operator action that failed); esc or enter closes it."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel"]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-error"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(Text(self.message), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TypedConfirmDialog(ModalScreen[str | None]):
    """Going against the evidence: the operator types the model id and a reason; returns the reason
    (None when cancelled). Confirm stays disabled until both are given."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel" and b.key == "escape"]

    def __init__(self, title: str, evidence: str, model_id: str) -> None:
        super().__init__()
        self.title_text = title
        self.evidence = evidence
        self.model_id = model_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-error"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(Text.assemble(("Against the evidence: ", "bold"), self.evidence,
                                       "\nType the model id, and why you promote anyway (recorded in the audit "
                                       "trail with the evidence)."), classes="dialog-body")
            yield Input(placeholder=self.model_id, id="typed-model")
            yield Input(placeholder="reason", id="typed-reason")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Promote anyway", id="confirm", variant="error", disabled=True)
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#typed-model", Input).focus()

    def _valid(self) -> bool:
        return (self.query_one("#typed-model", Input).value.strip() == self.model_id
                and bool(self.query_one("#typed-reason", Input).value.strip()))

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = not self._valid()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "typed-model":
            self.query_one("#typed-reason", Input).focus()
        elif self._valid():
            self.dismiss(self.query_one("#typed-reason", Input).value.strip())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm" and self._valid():
            self.dismiss(self.query_one("#typed-reason", Input).value.strip())
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
