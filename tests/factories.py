"""Hand-built game rows for tests that need exact, known values (independent of the simulator)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import orjson

from babylon_console.core.game.schema import TRAJECTORY_COLUMNS, USER_COLUMNS
from babylon_console.core.game.windows import held_out, parse_window_id, window_id_for
from babylon_console.core.simgame.seeding import history_starts

_ids = itertools.count(1)


def step(n: int, reward: float = 0.1, calls: int = 1, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "stepNumber": n,
        "timestamp": 1_731_600_000_000 + n * 1000,
        "environmentState": {"agentBalance": 1000.0, "agentPnL": 1.5, "openPositions": 1, "activeMarkets": 4},
        "providerAccesses": [{"providerName": "BABYLON_MARKETS", "data": {"x": 1}, "purpose": "prices"}],
        "llmCalls": [
            {
                "model": "agent-model",
                "systemPrompt": "You trade.",
                "userPrompt": f"state {n}",
                "response": '{"action": {"actionType": "HOLD"}}',
                "reasoning": "wait",
                "temperature": 0.8,
                "maxTokens": 200,
                "latencyMs": 300,
                "purpose": "action",
                "actionType": "HOLD",
            }
            for _ in range(calls)
        ],
        "action": {"actionType": "HOLD", "parameters": {}, "success": True, "result": None, "error": None},
        "reward": reward,
    }
    base.update(extra)
    return base


def user_row(agent_id: str) -> tuple[Any, ...]:
    now = datetime(2026, 1, 1)
    values = {
        "id": agent_id,
        "username": agent_id,
        "displayName": agent_id.title(),
        "isAgent": True,
        "createdAt": now,
        "updatedAt": now,
    }
    return tuple(values[c] for c in USER_COLUMNS)


def trajectory_row(
    window_id: str,
    agent_id: str,
    *,
    steps: int = 3,
    pnl: float | None = 10.0,
    steps_json: str | None = None,
    total_reward: float | None = None,
    **overrides: Any,
) -> tuple[Any, ...]:
    n = next(_ids)
    start = parse_window_id(window_id) + timedelta(minutes=5)
    values: dict[str, Any] = {
        "id": f"row-{n}",
        "trajectoryId": f"traj-{n}",
        "agentId": agent_id,
        "startTime": start,
        "endTime": start + timedelta(minutes=30),
        "durationMs": 1_800_000,
        "windowId": window_id,
        "windowHours": 1,
        "episodeId": f"ep-{n}",
        "scenarioId": window_id,
        "batchId": None,
        "stepsJson": steps_json
        if steps_json is not None
        else orjson.dumps([step(i) for i in range(steps)]).decode(),
        "rewardComponentsJson": "{}",
        "metricsJson": orjson.dumps({"episodeLength": steps, "finalPnL": pnl}).decode(),
        "metadataJson": "{}",
        "totalReward": total_reward if total_reward is not None else 0.1 * steps,
        "episodeLength": steps,
        "finalStatus": "completed",
        "finalBalance": 1000.0 + (pnl or 0.0),
        "finalPnL": pnl,
        "tradesExecuted": 1,
        "postsCreated": 0,
        "isTrainingData": True,
        "isEvaluation": False,
        "usedInTraining": False,
        "createdAt": start,
        "updatedAt": start,
    }
    values.update(overrides)
    return tuple(values[c] for c in TRAJECTORY_COLUMNS)


def as_mapping(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(TRAJECTORY_COLUMNS, row, strict=True))


def hour_with_held_out(now: datetime, *, windows: int, share: float, held: tuple[int, int]) -> datetime:
    """The latest hour at or before `now` whose `windows` closed hours (as `seed_history` writes them) hold
    between held[0] and held[1] windows held out at `share`. Which windows the hold-out takes is a hash of
    their ids, so seeding from the wall clock alone gives a number that changes with the hour (with 6 windows
    at 40%, fewer than 3 in about half the hours)."""
    for back in range(500):
        then = now - timedelta(hours=back)
        count = sum(held_out(window_id_for(start), share) for start in history_starts(windows, then))
        if held[0] <= count <= held[1]:
            return then
    raise AssertionError(f"no hour in 500 holds {held} of {windows} windows held out at {share:.0%}")
