"""Engine settings before a start: judge, backend, iterations and thresholds."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from .. import bindings as keys
from ..runners.engine import EngineOverrides

INT_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("windows_per_iteration", "Windows per iteration", 1),
    ("min_agents", "Min agents per window", 1),
    ("min_steps", "Min steps per agent", 1),
    ("settle_seconds", "Settle delay (s)", 0),
    ("lookback_hours", "Lookback (h)", 1),
)


class EngineSettingsDialog(ModalScreen[EngineOverrides | None]):
    """Returns the engine overrides the operator chose, or None when cancelled."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel" and b.key == "escape"]

    def __init__(self, defaults: EngineOverrides) -> None:
        super().__init__()
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical(classes="dialog dialog-wide"):
            yield Static("Start the training engine", classes="dialog-title")
            with Grid(id="engine-form"):
                yield Label("Judge")
                yield Select([("outcome (offline, deterministic)", "outcome"), ("ruler (LLM judge, RULER)", "ruler")],
                             value=d.judge or "outcome", allow_blank=False, id="engine-judge")
                yield Label("Backend")
                yield Select([("offline (CPU stand-in)", "offline"), ("serverless (W&B)", "serverless"),
                              ("local (ART on a CUDA GPU)", "local")],
                             value=d.backend or "offline", allow_blank=False, id="engine-backend")
                yield Label("Iterations (blank: continuous)")
                yield Input("" if d.iterations is None else str(d.iterations), id="engine-iterations",
                            type="integer", placeholder="continuous")
                for name, label, _minimum in INT_FIELDS:
                    yield Label(label)
                    value = getattr(d, name)
                    yield Input("" if value is None else str(value), id=f"engine-{name}", type="integer")
                yield Label("Learning rate")
                rate = 1e-5 if d.learning_rate is None else d.learning_rate
                yield Input(str(rate), id="engine-learning_rate", type="number")
            yield Static("", id="engine-error", classes="dialog-error-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#engine-judge", Select).focus()

    def values(self) -> EngineOverrides:
        """The overrides, or raise ValueError naming the field that is wrong."""
        raw = self.query_one("#engine-iterations", Input).value.strip()
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise ValueError("iterations must be a whole number >= 1, or blank for continuous")
        iterations = int(raw) if raw else None
        counts: dict[str, int] = {}
        for name, label, minimum in INT_FIELDS:
            raw = self.query_one(f"#engine-{name}", Input).value.strip()
            if not raw.lstrip("-").isdigit() or int(raw) < minimum:
                raise ValueError(f"{label.lower()} must be a whole number >= {minimum}")
            counts[name] = int(raw)
        raw = self.query_one("#engine-learning_rate", Input).value.strip()
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not 0 < rate < 1:
            raise ValueError("learning rate must be a number in (0, 1)")
        return EngineOverrides(judge=self.query_one("#engine-judge", Select).value,
                               backend=self.query_one("#engine-backend", Select).value,
                               iterations=iterations, learning_rate=rate, **counts)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "start":
            self.dismiss(None)
            return
        self._submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def _submit(self) -> None:
        try:
            values = self.values()
        except ValueError as exc:
            self.query_one("#engine-error", Static).update(str(exc))
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
