"""State the main screen owns and binds into its panes (plain values: compared, never mutated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTIVE_STATES = ("starting", "running", "paused", "stopping")


@dataclass(frozen=True, slots=True)
class EngineView:
    """The engine as the console sees it: the one running here, or the latest run in the database."""

    here: bool = False  # an engine runs in this console
    state: str | None = None  # this console's engine state (here), else None
    run_id: str | None = None
    stage: str | None = None
    error: str | None = None
    run: Any = None  # the latest run in the database (core.engine.runs.RunRow), while no engine runs here
    attach: bool = False  # the console follows a headless engine

    @property
    def active(self) -> bool:
        return self.here and self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class Readiness:
    """What makes a window ready, as the engine in charge sees it."""

    criteria: Any  # core.game.windows.ReadinessCriteria
    lookback_hours: int
