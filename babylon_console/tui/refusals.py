"""Why an operator action cannot run now: one rule per action, read by both `check_action` (which
dims the key and leaves the action out of the palette) and the flow that would run it.

Each function returns the reason as a sentence, or None when the action may run.
"""

from __future__ import annotations

from typing import Any

from .state import EngineView

ATTACHED = "attached to a headless engine: engines are started where they run (babylon-console engine)"


def read_only(description: str) -> str:
    """The one sentence a `--read-only` console answers every changing action with."""
    return f"read-only console: {description.lower()} is refused (started with --read-only)"


def engine(action: str, view: EngineView, db_ready: bool) -> str | None:
    """Start, pause/resume and stop, for the engine of this console or one elsewhere (the database
    carries pause/resume/stop to a headless engine)."""
    if action == "start_engine":
        if view.attach:
            return ATTACHED
        if not db_ready:
            return "the database is not connected"
        if view.here and view.active:
            return f"the engine is already {view.state}"
        return None
    if action in ("toggle_pause", "stop_engine"):
        remote = view.run
        if not view.here and remote is not None and remote.active:
            if action == "toggle_pause" and remote.state not in ("running", "paused"):
                return f"the engine is {remote.state}"
            return None
        if view.attach:
            return "no engine is running (the headless engine this console watches is not running)"
        if not view.here or not view.active:
            return "no engine is running in this console (E starts one)"
        if action == "toggle_pause" and view.state not in ("running", "paused"):
            return f"the engine is {view.state}"
    return None


def promote(view: Any, row: Any) -> str | None:
    """`view`: the Checkpoints pane's data (None while loading); `row`: the selected checkpoint."""
    if view is None:
        return "checkpoints are still loading"
    if row is None:
        return "no checkpoint selected"
    return f"{row.model.model_id} cannot be promoted: {row.refusal}" if row.refusal else None


def evaluate(row: Any, holdout_share: float) -> str | None:
    if row is None:
        return "no checkpoint selected"
    if holdout_share <= 0:
        return ("no windows are held out for evaluation: this database has no hold-out "
                "(`babylon-console holdout --share 0.15 --reason WHY` sets one)")
    return None


def rollback(view: Any) -> str | None:
    if view is None:
        return "checkpoints are still loading"
    if view.live is None and view.rollout is None:
        return "nothing to roll back: no model is live"
    return None


def acknowledge(alarm: Any) -> str | None:
    """`alarm`: the one the key would acknowledge (the highlighted, else the newest open; None: none)."""
    if alarm is None:
        return "no open alarm to acknowledge"
    if alarm.acknowledged:
        return f"alarm {alarm.id} ({alarm.rule}) is already {alarm.status}"
    return None
