"""Choose how to promote a checkpoint: an A/B share of agents, or 100% (make it live)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
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


class ShareSet(RadioSet):
    """A RadioSet whose cursor is its choice, as in native radio groups: the arrows move the mark
    with the highlight, so the share shown is always the share Continue confirms.

    Moving posts no `Changed` (the dialog moves focus to Continue on `Changed`); enter or space
    posts it for a moved choice, and a click posts it as RadioSet does."""

    BINDINGS: ClassVar = [
        Binding("down,right", "move(1)", "Next option", show=False),
        Binding("up,left", "move(-1)", "Previous option", show=False),
        Binding("enter,space", "choose", "Choose", show=False),
    ]

    def __init__(self, *buttons: RadioButton, id: str | None = None) -> None:
        super().__init__(*buttons, id=id)
        self._moved = False

    def on_mount(self) -> None:
        # RadioSet starts its highlight on the first option; start it on the pressed one. Deferred:
        # this handler runs before RadioSet's own mount handler, which sets the highlight.
        self.call_later(self._highlight_pressed)

    def _highlight_pressed(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index

    def action_move(self, direction: int) -> None:
        if direction > 0:
            self.action_next_button()
        else:
            self.action_previous_button()
        if self._selected is None:
            return
        button = self._nodes[self._selected]
        assert isinstance(button, RadioButton)
        if button is self.pressed_button:
            return
        # Press it quietly: RadioSet would post Changed for each step of the arrows.
        with self.prevent(RadioButton.Changed):
            if self.pressed_button is not None:
                self.pressed_button.value = False
            button.value = True
        self._pressed_button = button
        self._moved = True

    def action_choose(self) -> None:
        if self._moved and self.pressed_button is not None:
            self._moved = False
            self.post_message(self.Changed(self, self.pressed_button))
        else:  # the untouched default: as RadioSet (enter on the pressed option changes nothing)
            self.action_toggle_button()


class PromoteDialog(ModalScreen[float | None]):
    """Returns the chosen share, or None when cancelled. Confirmation follows in a ConfirmDialog.

    Cancel is a click or esc, never in the tab order: tab from Continue returns to the choice, so
    tab then enter cannot cancel by surprise (the caller says so when a promotion is cancelled)."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel" and b.key == "escape"]

    def __init__(self, model_id: str, live_id: str | None, default_share: float = 0.10,
                 evidence: str | None = None, no_evidence: str | None = None) -> None:
        """`evidence`: one line about how the checkpoint did on held-out windows, if evaluated;
        `no_evidence`: the sentence saying the promotion would rest on no evidence at all."""
        super().__init__()
        self.model_id = model_id
        self.live_id = live_id
        self.default_share = default_share
        self.evidence = evidence
        self.no_evidence = no_evidence

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Promote {self.model_id}", classes="dialog-title")
            yield Static(self.evidence or "Held-out evaluation: none yet (babylon-console models eval MODEL_ID)",
                         classes="dialog-body")
            if self.no_evidence:
                sentence = self.no_evidence[0].upper() + self.no_evidence[1:]
                yield Static(Text.assemble((sentence, "bold"), " (V evaluates it; an A/B share gathers live "
                                           "evidence)."), id="promote-no-evidence", classes="dialog-body")
            live = "none (an A/B share needs one: promote a checkpoint to 100% first)" if self.live_id is None \
                else self.live_id
            yield Static(Text.assemble("Live now: ", (live, "bold"),
                                       "\nChoose the share of agents it serves (↑↓, enter):"), classes="dialog-body")
            yield ShareSet(*(RadioButton(label, value=abs(share - self.default_share) < 1e-9, name=str(share))
                             for share, label in SHARES), id="promote-share")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Continue", id="continue", variant="primary")
                cancel = Button("Cancel (esc)", id="cancel")
                cancel.can_focus = False
                yield cancel

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
