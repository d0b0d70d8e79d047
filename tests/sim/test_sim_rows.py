"""The rows the simulator writes: shapes, types, ids, timestamps, step JSON and determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from babylon_console.core.game.schema import LLM_CALL_COLUMNS, MARKET_OUTCOME_COLUMNS, TRAJECTORY_COLUMNS, USER_COLUMNS
from babylon_console.core.sim import Simulation, WindowResult
from babylon_console.core.sim.strategies import STRATEGIES

START = datetime(2026, 11, 23, 14)
ROOT = Path(__file__).resolve().parents[2]

TRAJ_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "trajectoryId": str,
    "agentId": str,
    "startTime": datetime,
    "endTime": datetime,
    "durationMs": int,
    "windowId": str,
    "windowHours": int,
    "episodeId": str,
    "scenarioId": str,
    "batchId": str,
    "stepsJson": str,
    "rewardComponentsJson": str,
    "metricsJson": str,
    "metadataJson": str,
    "totalReward": float,
    "episodeLength": int,
    "finalStatus": str,
    "finalBalance": float,
    "finalPnL": float,
    "tradesExecuted": int,
    "postsCreated": int,
    "isTrainingData": bool,
    "isEvaluation": bool,
    "usedInTraining": bool,
    "createdAt": datetime,
    "updatedAt": datetime,
}
CALL_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "trajectoryId": str,
    "stepId": str,
    "callId": str,
    "timestamp": datetime,
    "latencyMs": int,
    "model": str,
    "purpose": str,
    "actionType": str,
    "systemPrompt": str,
    "userPrompt": str,
    "messagesJson": str,
    "response": str,
    "reasoning": str,
    "temperature": float,
    "maxTokens": int,
    "topP": float,
    "promptTokens": int,
    "completionTokens": int,
    "totalTokens": int,
    "metadata": str,
    "createdAt": datetime,
}
STEP_KEYS = [
    "stepNumber",
    "timestamp",
    "environmentState",
    "providerAccesses",
    "llmCalls",
    "action",
    "reward",
]
CALL_KEYS = [
    "model",
    "systemPrompt",
    "userPrompt",
    "response",
    "reasoning",
    "temperature",
    "maxTokens",
    "latencyMs",
    "purpose",
    "actionType",
]


def simulate(seed: int, hours: int = 2, n_agents: int = 12, **kw: object) -> list[WindowResult]:
    sim = Simulation(seed=seed, n_agents=n_agents, **kw)  # type: ignore[arg-type]
    return [sim.simulate_window(START + timedelta(hours=h)) for h in range(hours)]


@pytest.fixture(scope="module")
def windows() -> list[WindowResult]:
    return simulate(seed=21, hours=3, n_agents=18)


def as_dicts(rows: list[tuple], columns: tuple[str, ...]) -> list[dict]:
    return [dict(zip(columns, r, strict=True)) for r in rows]


def test_same_seed_gives_identical_rows_and_a_different_seed_does_not() -> None:
    a, b, c = simulate(7), simulate(7), simulate(8)
    for x, y in zip(a, b, strict=True):
        assert x.trajectories == y.trajectories
        assert x.llm_calls == y.llm_calls
        assert x.market_outcomes == y.market_outcomes
    assert [w.trajectories[0][11] for w in a] != [w.trajectories[0][11] for w in c]
    assert {r[0] for w in a for r in w.trajectories}.isdisjoint({r[0] for w in c for r in w.trajectories})


_DIGEST = """
import hashlib, sys
from datetime import datetime, timedelta
from babylon_console.core.sim import Simulation
sim = Simulation(seed=5, n_agents=7, steps_per_window=6)
h = hashlib.sha256()
for k in range(2):
    r = sim.simulate_window(datetime(2026, 1, 1) + timedelta(hours=k))
    for row in r.trajectories + r.llm_calls + r.market_outcomes:
        h.update(repr(row).encode())
print(h.hexdigest())
"""


def test_rows_are_byte_identical_across_processes_and_hash_seeds() -> None:
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_a_subset_of_agents_gets_the_same_rows_as_a_full_run() -> None:
    full = Simulation(seed=4, n_agents=10).simulate_window(START)
    part = Simulation(seed=4, n_agents=10).simulate_window(START, agents=[3, 7])
    assert part.trajectories == [full.trajectories[3], full.trajectories[7]]
    assert part.market_outcomes == full.market_outcomes


def test_row_tuples_have_the_schema_shape_and_types(windows: list[WindowResult]) -> None:
    sim = Simulation(seed=21, n_agents=18)
    users = sim.user_rows(datetime(2026, 1, 1))
    assert len(users) == 18 and all(len(u) == len(USER_COLUMNS) for u in users)
    for u in as_dicts(users, USER_COLUMNS):
        assert (
            isinstance(u["id"], str) and isinstance(u["username"], str) and isinstance(u["displayName"], str)
        )
        assert u["isAgent"] is True and isinstance(u["createdAt"], datetime)
    assert len({u[1] for u in users}) == len(users)  # usernames are unique (the game indexes them)
    agent_ids = {u[0] for u in users}

    for w in windows:
        assert all(len(r) == len(TRAJECTORY_COLUMNS) for r in w.trajectories)
        assert all(len(r) == len(LLM_CALL_COLUMNS) for r in w.llm_calls)
        assert all(len(r) == len(MARKET_OUTCOME_COLUMNS) for r in w.market_outcomes)
        for t in as_dicts(w.trajectories, TRAJECTORY_COLUMNS):
            for col, typ in TRAJ_TYPES.items():
                assert (
                    type(t[col]) is typ
                    or (isinstance(t[col], typ) and not isinstance(t[col], bool))
                    or (typ is bool and t[col] in (True, False))
                ), (col, t[col])
            assert t["agentId"] in agent_ids
            for k in ("startTime", "endTime", "createdAt", "updatedAt"):
                assert t[k].tzinfo is None and t[k].microsecond % 1000 == 0
            for k in ("stepsJson", "rewardComponentsJson", "metricsJson", "metadataJson"):
                orjson.loads(t[k])
            assert len(t["batchId"]) <= 100 and len(t["episodeId"]) <= 100 and len(t["windowId"]) <= 50
        for c in as_dicts(w.llm_calls, LLM_CALL_COLUMNS):
            for col, typ in CALL_TYPES.items():
                assert isinstance(c[col], typ) and not (typ is int and isinstance(c[col], bool)), (
                    col,
                    c[col],
                )
            assert c["timestamp"].tzinfo is None and c["timestamp"].microsecond % 1000 == 0
            assert c["id"] == c["callId"]
            msgs = orjson.loads(c["messagesJson"])
            assert msgs == [
                {"role": "system", "content": c["systemPrompt"]},
                {"role": "user", "content": c["userPrompt"]},
            ]
            assert orjson.loads(c["metadata"])["simulated"] is True
            assert c["totalTokens"] == c["promptTokens"] + c["completionTokens"]
        for o in w.market_outcomes:
            for v in o:
                assert v is None or isinstance(v, (str, Decimal, datetime)), v
            orjson.loads(o[7]) if o[7] is not None else None


def test_ids_are_unique_and_well_formed(windows: list[WindowResult]) -> None:
    traj_ids = [r[1] for w in windows for r in w.trajectories]
    call_ids = [r[3] for w in windows for r in w.llm_calls]
    outcome_ids = [r[0] for w in windows for r in w.market_outcomes]
    assert len(set(traj_ids)) == len(traj_ids) == 3 * 18
    assert len(set(call_ids)) == len(call_ids)
    assert len(set(outcome_ids)) == len(outcome_ids)
    for w in windows:
        by_tid = {r[1]: r for r in w.trajectories}
        for c in w.llm_calls:
            assert c[1] in by_tid
            step = int(c[2].rsplit("-step-", 1)[1])
            assert c[2] == f"{c[1]}-step-{step}"
            assert c[3].startswith(f"{c[1]}-s{step}-c")


def test_windows_and_timestamps_fall_inside_the_hour(windows: list[WindowResult]) -> None:
    for h, w in enumerate(windows):
        start = START + timedelta(hours=h)
        end = start + timedelta(hours=1)
        assert w.window_id == start.strftime("%Y-%m-%dT%H:00")
        start_ms = int((start - datetime(1970, 1, 1)).total_seconds() * 1000)
        for t in as_dicts(w.trajectories, TRAJECTORY_COLUMNS):
            assert t["windowId"] == t["scenarioId"] == w.window_id and t["windowHours"] == 1
            assert start <= t["startTime"] <= t["endTime"] < end
            assert t["durationMs"] == (t["endTime"] - t["startTime"]) // timedelta(milliseconds=1)
            stamps = [s["timestamp"] for s in orjson.loads(t["stepsJson"])]
            assert stamps == sorted(stamps)
            assert all(start_ms <= x < start_ms + 3_600_000 for x in stamps)
        for c in as_dicts(w.llm_calls, LLM_CALL_COLUMNS):
            assert start <= c["timestamp"] <= c["createdAt"] < end


def test_step_json_has_the_game_shape_and_agrees_with_the_columns(windows: list[WindowResult]) -> None:
    two_call_steps = 0
    for w in windows:
        calls_by_tid: dict[str, list[tuple]] = {}
        for c in w.llm_calls:
            calls_by_tid.setdefault(c[1], []).append(c)
        for t in as_dicts(w.trajectories, TRAJECTORY_COLUMNS):
            steps = orjson.loads(t["stepsJson"])
            assert len(steps) == t["episodeLength"] == 20
            assert [s["stepNumber"] for s in steps] == list(range(20))
            recorded_calls = []
            for s in steps:
                assert list(s) == STEP_KEYS
                env = s["environmentState"]
                assert set(env) == {"agentBalance", "agentPnL", "openPositions", "activeMarkets"}
                assert env["activeMarkets"] == 5 + 3
                pa = s["providerAccesses"]
                assert pa[0]["providerName"] == "BABYLON_MARKETS" and set(pa[0]) == {
                    "providerName",
                    "data",
                    "purpose",
                }
                assert 1 <= len(s["llmCalls"]) <= 2
                two_call_steps += len(s["llmCalls"]) == 2
                for call in s["llmCalls"]:
                    assert list(call) == CALL_KEYS
                recorded_calls += s["llmCalls"]
                assert s["llmCalls"][-1]["purpose"] == "action"
                act = s["action"]
                assert list(act) == ["actionType", "parameters", "success", "result", "error", "reasoning"]
                assert act["success"] is (act["error"] is None)
                assert act["actionType"] == s["llmCalls"][-1]["actionType"]
                assert isinstance(s["reward"], float) and abs(s["reward"]) <= 10
            # Every call in the steps is a row in llm_call_logs, with the same texts.
            rows = calls_by_tid[t["trajectoryId"]]
            assert len(rows) == len(recorded_calls)
            for row, call in zip(rows, recorded_calls, strict=True):
                assert (row[6], row[9], row[10], row[12], row[13], row[5], row[7]) == (
                    call["model"],
                    call["systemPrompt"],
                    call["userPrompt"],
                    call["response"],
                    call["reasoning"],
                    call["latencyMs"],
                    call["purpose"],
                )
            metrics = orjson.loads(t["metricsJson"])
            assert metrics == {
                "episodeLength": 20,
                "finalStatus": "completed",
                "finalBalance": t["finalBalance"],
                "finalPnL": t["finalPnL"],
                "tradesExecuted": t["tradesExecuted"],
                "postsCreated": 0,
                "errorCount": sum(not s["action"]["success"] for s in steps),
            }
            assert t["tradesExecuted"] == sum(
                s["action"]["success"] and s["action"]["actionType"] != "HOLD" for s in steps
            )
            assert t["totalReward"] == pytest.approx(sum(s["reward"] for s in steps), abs=1e-9)
            # Rewards are the P&L in percent of the 1000 starting balance, clipped to +-10 per step.
            if all(abs(s["reward"]) < 10 for s in steps):
                assert t["totalReward"] == pytest.approx(t["finalPnL"] / 10, abs=0.01)
            else:
                assert abs(t["totalReward"]) < abs(t["finalPnL"] / 10)
            assert t["finalBalance"] == pytest.approx(1000 + t["finalPnL"], abs=0.011)
            assert t["finalStatus"] == "completed"
            assert (t["isTrainingData"], t["isEvaluation"], t["usedInTraining"]) == (True, False, False)
            meta = orjson.loads(t["metadataJson"])
            assert meta["simulated"] is True and meta["seed"] == 21 and meta["strategy"] in STRATEGIES
            assert steps[0]["environmentState"]["agentBalance"] == 1000.0
    assert two_call_steps > 0  # some steps carry a reasoning call before the action call


def test_market_state_line_in_every_prompt_matches_the_step(windows: list[WindowResult]) -> None:
    from babylon_console.core.sim import Observation

    w = windows[1]
    for t in as_dicts(w.trajectories[:6], TRAJECTORY_COLUMNS):
        for s in orjson.loads(t["stepsJson"]):
            obs = Observation.from_prompt(s["llmCalls"][-1]["userPrompt"])
            assert obs is not None
            assert obs.step == s["stepNumber"] and obs.total_steps == 20
            assert obs.balance == s["environmentState"]["agentBalance"]
            assert obs.pnl == s["environmentState"]["agentPnL"]
            assert len(obs.positions) + len(obs.holdings) == s["environmentState"]["openPositions"]
            assert {q.ticker: q.price for q in obs.stocks} == s["providerAccesses"][0]["data"]["prices"]


def test_steps_per_window_and_population_are_configurable() -> None:
    sim = Simulation(seed=1, n_agents=4, steps_per_window=7, strategies=["momentum", "cautious"])
    r = sim.simulate_window(START)
    assert [a.strategy for a in sim.agents] == ["momentum", "cautious", "momentum", "cautious"]
    assert all(len(orjson.loads(t[11])) == 7 for t in r.trajectories)
    assert {s.steps for s in r.stats} == {7}
    with pytest.raises(ValueError, match="unknown strategy"):
        Simulation(strategies=["yolo"])


def test_prompt_sizes_stay_compact(windows: list[WindowResult]) -> None:
    calls = windows[0].llm_calls
    systems = {c[9] for c in calls}
    assert all(250 <= len(s) <= 600 for s in systems)
    users = [len(c[10]) for c in calls if c[7] == "action" and "Your analysis" not in c[10]]
    assert 300 <= sum(users) / len(users) <= 800
