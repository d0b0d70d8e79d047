"""Windows: one UTC hour of play is one training scenario (DESIGN section 1.1).

Window id `YYYY-MM-DDTHH:00`, always UTC. A window is *ready* when it is closed (end + settle delay
has passed), has at least `min_agents` distinct agents with at least `min_steps` steps each, and has
not been trained on by the model in question (readiness is per training key, `<backend>:<model>`:
a window trained for one model stays ready for another; the game's `usedInTraining` column is
shown, not used to gate). A window whose engine found no trainable call is *unusable* for that
model, with the reason. This module holds the pure rules; the SQL that gathers the figures is in
`repository.py`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from ..clock import to_naive_utc
from ..config import ReadinessCriteria
from ..errors import InvalidInput
from .bounds import MAX_ABS_PNL, MAX_EPISODE_LENGTH

WINDOW_LENGTH = timedelta(hours=1)
_WINDOW_ID = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):00$")


class InvalidWindowId(InvalidInput, ValueError):
    title = "Invalid window id"


def window_id_for(moment: datetime) -> str:
    """The id of the window containing `moment`."""
    return to_naive_utc(moment).strftime("%Y-%m-%dT%H:00")


def window_start_of(moment: datetime) -> datetime:
    return to_naive_utc(moment).replace(minute=0, second=0, microsecond=0)


def parse_window_id(window_id: str) -> datetime:
    """Start of the window (naive UTC). Raises InvalidWindowId naming the bad value."""
    match = _WINDOW_ID.match(window_id or "")
    if not match:
        raise InvalidWindowId(f"window id {window_id!r} is not of the form YYYY-MM-DDTHH:00")
    try:
        return datetime(*(int(g) for g in match.groups()))  # type: ignore[misc]
    except ValueError as exc:
        raise InvalidWindowId(f"window id {window_id!r} is not a real hour: {exc}") from exc


def lookback_start_id(now: datetime, lookback_hours: int) -> str:
    """The id of the oldest window inside the lookback (ids sort in time order)."""
    return window_id_for(window_start_of(now) - timedelta(hours=lookback_hours))


def held_out(window_id: str, share: float) -> bool:
    """The deterministic hold-out rule: a window is reserved for evaluation when the first 8 bytes
    of the SHA-256 of its id, as a fraction of 2^64, fall below `share`. Every process, every run
    and every model agree on it, and a window never moves between training and evaluation."""
    if share <= 0:
        return False
    digest = hashlib.sha256(window_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class WindowState(StrEnum):
    READY = "ready"
    OPEN = "open"
    SETTLING = "settling"
    TOO_FEW_AGENTS = "too few agents"
    TRAINED = "trained"
    HELD_OUT = "held out"
    UNUSABLE = "unusable"
    INVALID = "invalid id"


class WindowFigures(BaseModel):
    """Raw figures for one window, as the readiness query returns them."""

    window_id: str
    trajectories: int = 0
    agents: int = 0
    qualified_agents: int = 0
    steps: int = 0
    pnl_min: float | None = None
    pnl_avg: float | None = None
    pnl_max: float | None = None
    used_in_training: int = 0
    stock_outcomes: int = 0
    prediction_outcomes: int = 0
    trained: bool = False  # by the model readiness is computed for
    unusable_reason: str | None = None  # that model's engine found nothing trainable here
    suspect_rows: int = 0  # rows with out-of-range numbers (see bounds.py), left out of these figures


class WindowReadiness(WindowFigures):
    start: datetime | None = None
    closes_at: datetime | None = None
    closed: bool = False
    ready: bool = False
    state: WindowState = WindowState.INVALID
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)  # what is wrong with some rows, ready or not

    @property
    def outcomes_present(self) -> bool:
        return self.stock_outcomes + self.prediction_outcomes > 0


def assess(figures: WindowFigures, criteria: ReadinessCriteria, now: datetime) -> WindowReadiness:
    """Apply the readiness rules; every rule that fails adds a reason, the first one sets the state."""
    reasons: list[str] = []
    states: list[WindowState] = []
    try:
        start = parse_window_id(figures.window_id)
    except InvalidWindowId as exc:
        return WindowReadiness(**figures.model_dump(), state=WindowState.INVALID, reasons=[str(exc)],
                               warnings=[f"{figures.trajectories} row(s) under a window id that does not parse"])
    end = start + WINDOW_LENGTH
    closes_at = end + timedelta(seconds=criteria.settle_seconds)
    now = to_naive_utc(now)
    closed = now >= closes_at
    if now < end:
        states.append(WindowState.OPEN)
        reasons.append(f"open until {end:%H:%M} UTC")
    elif not closed:
        states.append(WindowState.SETTLING)
        reasons.append(f"settling until {closes_at:%H:%M:%S} UTC")
    if held_out(figures.window_id, criteria.holdout_share):
        states.append(WindowState.HELD_OUT)
        reasons.append(f"held out for evaluation (hold-out share {criteria.holdout_share:.0%}): never trained")
    if figures.trained:
        states.append(WindowState.TRAINED)
        reasons.append("already trained for this model")
    elif figures.unusable_reason:
        states.append(WindowState.UNUSABLE)
        reasons.append(figures.unusable_reason)
    if figures.qualified_agents < criteria.min_agents:
        states.append(WindowState.TOO_FEW_AGENTS)
        reasons.append(
            f"{figures.qualified_agents} agent(s) with >= {criteria.min_steps} step(s), "
            f"needs {criteria.min_agents}"
        )
    ready = not states
    warnings = [f"{figures.suspect_rows} row(s) with out-of-range numbers (NaN, infinite, |P&L| > "
                f"{MAX_ABS_PNL:g} or an episode length outside 0..{MAX_EPISODE_LENGTH}) left out of the figures"
                ] if figures.suspect_rows else []
    return WindowReadiness(
        **figures.model_dump(),
        warnings=warnings,
        start=start,
        closes_at=closes_at,
        closed=closed,
        ready=ready,
        state=WindowState.READY if ready else states[0],
        reasons=reasons,
    )
