from __future__ import annotations

from datetime import datetime

import asyncpg
import pytest

from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.store import GameStore
from babylon_console.core.game.windows import (
    InvalidWindowId,
    WindowFigures,
    WindowState,
    assess,
    lookback_start_id,
    parse_window_id,
    window_id_for,
)
from tests.factories import trajectory_row, user_row

NOW = datetime(2026, 11, 24, 12, 30)
CRITERIA = ReadinessCriteria(min_agents=3, min_steps=2, settle_seconds=300)


def test_window_ids_round_trip_and_reject_bad_values() -> None:
    assert window_id_for(datetime(2026, 11, 24, 9, 59, 59)) == "2026-11-24T09:00"
    assert parse_window_id("2026-11-24T09:00") == datetime(2026, 11, 24, 9)
    for bad in ("2026-11-24T09:30", "2026-11-24 09:00", "2026-13-01T00:00", "", "2026-11-24T09:00Z"):
        with pytest.raises(InvalidWindowId, match="window id"):
            parse_window_id(bad)
    assert lookback_start_id(NOW, 24) == "2026-11-23T12:00"


@pytest.mark.parametrize(
    ("window_id", "figures", "state", "reason"),
    [
        ("2026-11-24T10:00", {"qualified_agents": 3}, WindowState.READY, None),
        ("2026-11-24T12:00", {"qualified_agents": 3}, WindowState.OPEN, "open until 13:00"),
        ("2026-11-24T11:00", {"qualified_agents": 3}, WindowState.READY, None),
        ("2026-11-24T10:00", {"qualified_agents": 2}, WindowState.TOO_FEW_AGENTS, "2 agent(s) with >= 2"),
        (
            "2026-11-24T10:00",
            {"qualified_agents": 5, "trained": True},
            WindowState.TRAINED,
            "already trained",
        ),
        # The game's usedInTraining is not per model: shown, not gating (another model may need the window).
        ("2026-11-24T10:00", {"qualified_agents": 5, "used_in_training": 1}, WindowState.READY, None),
        ("2026-11-24T10:00", {"qualified_agents": 5, "unusable_reason": "none of 4 recorded calls is trainable"},
         WindowState.UNUSABLE, "none of 4 recorded calls"),
        ("garbage", {"qualified_agents": 5}, WindowState.INVALID, "not of the form"),
    ],
)
def test_assess_rules(window_id: str, figures: dict, state: WindowState, reason: str | None) -> None:
    result = assess(WindowFigures(window_id=window_id, **figures), CRITERIA, NOW)
    assert result.state is state
    assert result.ready is (state is WindowState.READY)
    if reason:
        assert any(reason in r for r in result.reasons), result.reasons


def test_settle_delay_holds_a_just_closed_window() -> None:
    just_after = datetime(2026, 11, 24, 12, 2)
    result = assess(WindowFigures(window_id="2026-11-24T11:00", qualified_agents=9), CRITERIA, just_after)
    assert result.state is WindowState.SETTLING and not result.closed
    assert "settling until 12:05:00" in result.reasons[0]


async def _seed(pool: asyncpg.Pool) -> None:
    agents = [f"agent-{i}" for i in range(4)]
    rows = [
        # 10:00 — 3 qualified agents (>= 2 steps), one short one, one agent twice.
        trajectory_row("2026-11-24T10:00", "agent-0", steps=5, pnl=-20.0),
        trajectory_row("2026-11-24T10:00", "agent-0", steps=3, pnl=40.0),
        trajectory_row("2026-11-24T10:00", "agent-1", steps=2, pnl=10.0),
        trajectory_row("2026-11-24T10:00", "agent-2", steps=2, pnl=None),
        trajectory_row("2026-11-24T10:00", "agent-3", steps=1, pnl=0.0),
        # 09:00 — only 2 agents.
        trajectory_row("2026-11-24T09:00", "agent-0", steps=4),
        trajectory_row("2026-11-24T09:00", "agent-1", steps=4),
        # evaluation rows never count.
        trajectory_row("2026-11-24T09:00", "agent-2", steps=4, isEvaluation=True),
        # old window outside a 24h lookback
        trajectory_row("2026-11-20T10:00", "agent-0", steps=4),
    ]
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row(a) for a in agents])
        await copy_rows(conn, "trajectories", rows)
        await conn.execute(
            """INSERT INTO market_outcomes (id, "windowId", "stockTicker", "startPrice", "endPrice")
               VALUES ('m1', '2026-11-24T10:00', 'AAPL', 100, 101),
                      ('m2', '2026-11-24T10:00', 'TSLA', 50, 49)"""
        )
        await conn.execute(
            """INSERT INTO market_outcomes (id, "windowId", "predictionMarketId", question, outcome)
               VALUES ('m3', '2026-11-24T10:00', 'pm-1', 'Will it?', 'YES')"""
        )


async def test_readiness_figures_from_the_database(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    store = GameStore(pool)
    windows = await store.window_readiness(CRITERIA, NOW, lookback_hours=24)
    by_id = {w.window_id: w for w in windows}
    assert list(by_id) == ["2026-11-24T10:00", "2026-11-24T09:00"]  # newest first, old one outside lookback
    w10 = by_id["2026-11-24T10:00"]
    assert (w10.trajectories, w10.agents, w10.qualified_agents, w10.steps) == (5, 4, 3, 13)
    assert (w10.pnl_min, w10.pnl_max) == (-20.0, 40.0)
    assert w10.pnl_avg == pytest.approx((-20 + 40 + 10 + 0) / 4)
    assert (w10.stock_outcomes, w10.prediction_outcomes) == (2, 1)
    assert w10.ready and w10.state is WindowState.READY
    w09 = by_id["2026-11-24T09:00"]
    assert (w09.trajectories, w09.agents) == (2, 2)
    assert w09.state is WindowState.TOO_FEW_AGENTS and not w09.outcomes_present

    every = await store.window_readiness(CRITERIA, NOW, lookback_hours=None)
    assert len(every) == 3


async def test_trained_windows_are_not_ready(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await pool.execute(
        "INSERT INTO console_trained_windows (window_id, model_name, batch_id) VALUES ($1, 'm', 'b1')",
        "2026-11-24T10:00",
    )
    store = GameStore(pool)
    w10 = next(
        w for w in await store.window_readiness(CRITERIA, NOW, 24) if w.window_id == "2026-11-24T10:00"
    )
    assert w10.state is WindowState.TRAINED and not w10.ready
