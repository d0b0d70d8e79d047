"""Lenient reading of game rows: what real data looks like is accepted; what cannot be used is
rejected with a reason, one per malformed row, never raised through."""

from __future__ import annotations

import math

import asyncpg
import orjson
import pytest

from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.parsing import MAX_STEPS, parse_rows, parse_trajectory
from babylon_console.core.game.store import GameStore
from tests.factories import as_mapping, step, trajectory_row, user_row

W = "2026-11-24T10:00"


def _row(steps: list | None = None, **overrides) -> dict:
    steps_json = orjson.dumps(steps).decode() if steps is not None else None
    return as_mapping(trajectory_row(W, "agent-0", steps_json=steps_json, **overrides))


def test_messy_but_usable_rows_are_accepted() -> None:
    steps = [
        step(0),
        {"stepNumber": 1, "reward": 0.2},  # no llmCalls, no action, no state
        step(2, llmCalls=None, providerAccesses=None),  # nulls where lists belong
        step(3, extraKey={"nested": True}),  # unknown keys
        {**step(4), "llmCalls": [{"purpose": "post_generation", "response": "gm", "novelField": 1}]},
        {**step(5), "reward": None},  # null reward means 0
        {
            **step(6),
            "action": {"actionType": "BUY_SHARES", "parameters": None, "success": False, "error": "x"},
        },
    ]
    t = parse_trajectory(_row(steps, metadataJson=None))
    assert len(t.steps) == 7
    assert t.steps[1].llm_calls == [] and t.steps[1].action is None
    assert t.steps[2].llm_calls == [] and t.steps[2].provider_accesses == []
    assert t.steps[4].llm_calls[0].purpose == "post_generation"
    assert t.steps[5].reward == 0.0
    assert t.steps[6].action is not None and t.steps[6].action.parameters == {}
    assert t.error_count == 1
    assert t.metadata == {}
    assert t.steps[0].environment_state is not None and t.steps[0].environment_state.agent_pnl == 1.5


MALFORMED = [
    ("invalid json", {"stepsJson": "[{not json"}, "stepsJson is not valid JSON"),
    ("json object", {"stepsJson": '{"stepNumber": 0}'}, "expected an array of steps"),
    ("null json", {"stepsJson": "null"}, "stepsJson is empty"),
    ("step not object", {"stepsJson": "[1, 2]"}, "stepsJson[0"),
    ("missing stepNumber", {"stepsJson": '[{"reward": 1}]'}, "stepNumber"),
    ("llmCalls not a list", {"stepsJson": orjson.dumps([step(0, llmCalls="oops")]).decode()}, "llmCalls"),
    ("NaN step reward", {"stepsJson": '[{"stepNumber": 0, "reward": NaN}]'}, "not valid JSON"),
    ("string reward", {"stepsJson": '[{"stepNumber": 0, "reward": "high"}]'}, "reward"),
    ("NaN total reward", {"totalReward": math.nan}, "totalReward is nan"),
    ("inf pnl", {"finalPnL": math.inf}, "finalPnL is inf"),
    ("metrics not object", {"metricsJson": "[1]"}, "metricsJson is a JSON list"),
    ("metadata invalid", {"metadataJson": "{oops"}, "metadataJson is not valid JSON"),
    (
        "too many steps",
        {"stepsJson": orjson.dumps([{"stepNumber": i} for i in range(MAX_STEPS + 1)]).decode()},
        "over the 2,000 limit",
    ),
    (
        "huge prompt",
        {"stepsJson": orjson.dumps([step(0, llmCalls=[{"userPrompt": "x" * 600_000}])]).decode()},
        "exceeds",
    ),
    ("bytes column", {"stepsJson": 12}, "stepsJson is int"),
    ("wrong agent type", {"agentId": None}, "agentId"),
]


@pytest.mark.parametrize(("label", "overrides", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rows_are_rejected_with_a_reason(label: str, overrides: dict, reason: str) -> None:
    row = _row() | overrides
    parsed, rejected = parse_rows([row])
    assert parsed == []
    assert len(rejected) == 1
    assert reason in rejected[0].reason, rejected[0].reason
    assert rejected[0].trajectory_id == row["trajectoryId"] and rejected[0].window_id == W


def test_a_corpus_keeps_good_rows_and_reports_each_bad_one() -> None:
    good = [_row(), _row()]
    bad = [_row() | overrides for _, overrides, _ in MALFORMED]
    parsed, rejected = parse_rows(good + bad)
    assert len(parsed) == 2
    assert len(rejected) == len(MALFORMED)
    assert all(r.reason for r in rejected)


async def test_window_reader_reports_rejections_alongside_valid_rows(pool: asyncpg.Pool) -> None:
    rows = [
        trajectory_row(W, "agent-0", steps=20),
        trajectory_row(W, "agent-1", steps_json="[{broken"),
        trajectory_row(W, "agent-1", steps=2, total_reward=math.nan),
    ]
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row("agent-0"), user_row("agent-1")])
        await copy_rows(conn, "trajectories", rows)
    result = await GameStore(pool).window_trajectories(W)
    assert len(result.trajectories) == 1 and len(result.trajectories[0].steps) == 20
    assert sorted(r.reason.split(" ")[0] for r in result.rejections) == ["stepsJson", "totalReward"]
    single = await GameStore(pool).trajectory(result.trajectories[0].trajectory_id)
    assert single is not None and single.trajectory_id == result.trajectories[0].trajectory_id
    assert await GameStore(pool).trajectory("no-such-id") is None
