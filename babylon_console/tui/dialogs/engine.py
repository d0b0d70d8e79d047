"""Engine settings before a start: judge, backend, iterations and thresholds."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from .. import bindings as keys

INT_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("windows_per_iteration", "Windows per iteration", 1),
    ("min_agents", "Min agents per window", 1),
    ("min_steps", "Min steps per agent", 1),
    ("settle_seconds", "Settle delay (s)", 0),
    ("lookback_hours", "Lookback (h)", 1),
)


class EngineSettingsDialog(ModalScreen[dict[str, Any] | None]):
    """Returns engine overrides (EngineConfig field names), or None when cancelled."""

    BINDINGS: ClassVar = [b for b in keys.bindings("dialog") if b.action == "cancel" and b.key == "escape"]

    def __init__(self, defaults: dict[str, Any]) -> None:
        super().__init__()
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical(classes="dialog dialog-wide"):
            yield Static("Start the training engine", classes="dialog-title")
            with Grid(id="engine-form"):
                yield Label("Judge")
                yield Select([("outcome (offline, deterministic)", "outcome"), ("ruler (LLM judge, RULER)", "ruler")],
                             value=d.get("judge", "outcome"), allow_blank=False, id="engine-judge")
                yield Label("Backend")
                yield Select([("offline (CPU stand-in)", "offline"), ("serverless (W&B)", "serverless"),
                              ("local (ART on a CUDA GPU)", "local")],
                             value=d.get("backend", "offline"), allow_blank=False, id="engine-backend")
                yield Label("Iterations (blank: continuous)")
                iterations = d.get("iterations")
                yield Input("" if iterations is None else str(iterations), id="engine-iterations",
                            type="integer", placeholder="continuous")
                for name, label, _minimum in INT_FIELDS:
                    yield Label(label)
                    yield Input(str(d.get(name, "")), id=f"engine-{name}", type="integer")
                yield Label("Learning rate")
                yield Input(str(d.get("learning_rate", 1e-5)), id="engine-learning_rate", type="number")
            yield Static("", id="engine-error", classes="dialog-error-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#engine-judge", Select).focus()

    def values(self) -> dict[str, Any]:
        """The overrides, or raise ValueError naming the field that is wrong."""
        out: dict[str, Any] = {
            "judge": self.query_one("#engine-judge", Select).value,
            "backend": self.query_one("#engine-backend", Select).value,
        }
        raw = self.query_one("#engine-iterations", Input).value.strip()
        if raw:
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError("iterations must be a whole number >= 1, or blank for continuous")
            out["iterations"] = int(raw)
        else:
            out["iterations"] = None
        for name, label, minimum in INT_FIELDS:
            raw = self.query_one(f"#engine-{name}", Input).value.strip()
            if not raw.lstrip("-").isdigit() or int(raw) < minimum:
                raise ValueError(f"{label.lower()} must be a whole number >= {minimum}")
            out[name] = int(raw)
        raw = self.query_one("#engine-learning_rate", Input).value.strip()
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not 0 < rate < 1:
            raise ValueError("learning rate must be a number in (0, 1)")
        out["learning_rate"] = rate
        return out

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
