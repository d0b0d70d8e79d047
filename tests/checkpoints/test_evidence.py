"""Live A/B evidence (`core.checkpoints.evidence`): arms from the model that served each trajectory's calls,
the paired difference with its CI, served-model truth, the gate, and the engine's automatic rollback."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.evidence import _Row, ab_readout, readout_from_rows
from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.config import GateSettings, Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.game.bulk import insert_rows
from babylon_console.core.game.schema import LLM_CALL_COLUMNS
from babylon_console.core.stats import paired_difference, t95

from ..factories import trajectory_row, user_row

LIVE = ("m-live", "offline://p/run:step1")
CAND = ("m-cand", "offline://p/run:step2")
GATE = GateSettings(min_windows=3, promote_after=3, max_drawdown=0.5)


def _rows(windows: int, edge: float, *, seed: int = 1, per_arm: int = 3, drawdown: float = 0.1) -> list[_Row]:
    rnd = random.Random(seed)
    rows = []
    for w in range(windows):
        wid = f"2026-11-24T{w:02d}:00"
        for i in range(per_arm):
            rows.append(_Row(wid, f"a{i}", LIVE[1], rnd.gauss(0, 2), None, drawdown))
            rows.append(_Row(wid, f"b{i}", CAND[1], rnd.gauss(edge, 2), 0.7, drawdown))
        rows.append(_Row(wid, "scripted", "sim/momentum", 5.0, None, None))  # neither arm
    return rows


def _readout(rows: list[_Row], asked: float = 0.5, known: set[str] | None = None):
    return readout_from_rows(rows, candidate=CAND, live=LIVE, asked=asked,
                             known=known if known is not None else {LIVE[1], CAND[1]}, gate=GATE)


def test_t_quantiles_and_the_paired_interval() -> None:
    assert t95(1) == 12.706 and t95(30) == 2.042 and t95(200) == 1.96
    d = paired_difference([1.0, 2.0, 3.0])
    assert d is not None and d.mean == 2.0 and abs(d.ci_low - (2 - 4.303 / 3 ** 0.5)) < 1e-9
    one = paired_difference([5.0])
    assert one is not None and one.ci_low is None and one.win_rate == 1.0


def test_a_better_candidate_is_recommended_after_the_ci_stays_above_zero() -> None:
    readout = _readout(_rows(10, edge=6.0))
    cand = next(a for a in readout.arms if a.arm == "candidate")
    assert cand.agents == 3 and cand.windows == 10 and cand.judge_score == 0.7
    assert readout.difference is not None and readout.difference.ci_low > 0
    assert readout.verdict == "promote" and readout.streak_above_zero >= 3
    assert readout.warnings == []  # served 50% as asked; the scripted agent is neither arm nor unknown


def test_a_worse_candidate_is_rolled_back_and_an_even_one_holds() -> None:
    assert _readout(_rows(8, edge=-6.0)).verdict == "rollback"
    assert _readout(_rows(8, edge=0.0, seed=3)).verdict == "hold"
    assert _readout(_rows(2, edge=6.0)).verdict == "collecting"  # fewer paired windows than the gate needs


def test_drawdown_past_the_limit_rolls_back_whatever_the_pnl() -> None:
    readout = _readout(_rows(2, edge=6.0, drawdown=0.8))
    assert readout.verdict == "rollback" and "drawdown" in readout.reasons[0]


def test_served_share_and_unknown_models_are_reported() -> None:
    rows = [*_rows(3, edge=1.0), _Row("2026-11-24T00:00", "x", "offline://p/other:step9", 1.0, None, None)]
    readout = _readout(rows, asked=0.10)
    assert all(abs(w.served - 0.5) < 1e-9 for w in readout.served)
    assert any("asked 10%" in w for w in readout.warnings)
    assert any("offline://p/other:step9" in w for w in readout.warnings)


# -- against the database: rows as the game writes them, then the engine's automatic rollback -------


async def _insert_window(pool: asyncpg.Pool, window_id: str, served: dict[str, str], pnl: dict[str, float]) -> None:
    rows, logs = [], []
    for agent, model in served.items():
        row = trajectory_row(window_id, agent, pnl=pnl[agent],
                             metadataJson=orjson.dumps({"maxDrawdown": 0.05}).decode())
        rows.append(row)
        at = datetime(2026, 11, 24, 9, 30)
        logs.append(tuple({
            "id": f"{row[1]}-log", "trajectoryId": row[1], "stepId": f"{row[1]}-step-0", "callId": f"{row[1]}-log",
            "timestamp": at, "latencyMs": 100, "model": model, "purpose": "action", "actionType": "HOLD",
            "systemPrompt": "s", "userPrompt": "u", "messagesJson": None, "response": "{}", "reasoning": None,
            "temperature": 0.7, "maxTokens": 100, "topP": None, "promptTokens": None, "completionTokens": None,
            "totalTokens": None, "metadata": None, "createdAt": at + timedelta(seconds=1),
        }[c] for c in LLM_CALL_COLUMNS))
    await insert_rows(pool, "trajectories", rows)
    await insert_rows(pool, "llm_call_logs", logs)


class _At:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


ROLLOUT_START = datetime(2026, 11, 24, 0, 30)  # the windows below (01:00 on) opened after it


async def _models(pool: asyncpg.Pool, started: datetime = ROLLOUT_START) -> None:
    for model_id, path in (LIVE, CAND):
        await pool.execute(
            'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
            '"createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
            model_id, "v", "base", f"batch-{model_id}", "registered", path)
    registry = Registry(pool, clock=_At(started))
    await registry.promote(LIVE[0], share=1.0, operator="test")
    await registry.promote(CAND[0], share=0.5, operator="test")


async def _harmful_history(pool: asyncpg.Pool, windows: int = 5) -> None:
    agents = ["agent-a", "agent-b", "agent-c", "agent-d"]
    await insert_rows(pool, "User", [user_row(a) for a in agents])
    rnd = random.Random(4)
    for w in range(windows):
        served = {"agent-a": LIVE[1], "agent-b": LIVE[1], "agent-c": CAND[1], "agent-d": CAND[1]}
        pnl = {a: (rnd.gauss(5, 1) if m == LIVE[1] else rnd.gauss(-20, 1)) for a, m in served.items()}
        await _insert_window(pool, f"2026-11-24T{w + 1:02d}:00", served, pnl)


async def test_ab_readout_and_models_ab_read_the_rows(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await _models(pool)
    await _harmful_history(pool)
    readout = await ab_readout(pool, GATE)
    assert readout.candidate_model_id == CAND[0] and readout.live_model_id == LIVE[0]
    assert readout.difference is not None and readout.difference.windows == 5 and readout.difference.mean < -20
    assert readout.verdict == "rollback" and [w.served for w in readout.served] == [0.5] * 5
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["--database-url", database_url, "--data-dir", str(tmp_path), "models", "ab",
                                  "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    assert shown["verdict"] == "rollback" and shown["difference"]["windows"] == 5
    assert {a["arm"]: a["agents"] for a in shown["arms"]} == {"live": 2, "candidate": 2}
    text = await asyncio.to_thread(
        CliRunner().invoke, app, ["--database-url", database_url, "--data-dir", str(tmp_path), "models", "ab"],
        env={"COLUMNS": "80"}, catch_exceptions=False)
    assert text.exit_code == 0 and "candidate " in text.output and "…" not in text.output, text.output


def _engine(pool: asyncpg.Pool, tmp_path: Path, auto_rollback: bool) -> Engine:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    return Engine(pool, EngineConfig(iterations=1, auto_rollback=auto_rollback), settings=settings)


async def test_the_engine_rolls_a_harmful_candidate_back_with_reason_and_evidence(pool: asyncpg.Pool,
                                                                                  tmp_path: Path) -> None:
    await _models(pool)
    await _harmful_history(pool)
    await _engine(pool, tmp_path, auto_rollback=False).watch_rollout()
    assert await Registry(pool).rollout() is not None  # off: only recommended
    warning = await pool.fetchval("SELECT payload->>'message' FROM console_events WHERE kind = 'warning'")
    assert "roll back m-cand recommended" in warning
    await _engine(pool, tmp_path, auto_rollback=True).watch_rollout()
    assert await Registry(pool).rollout() is None
    audit = (await Registry(pool).audit(1))[0]
    assert audit.action == "rollback" and audit.operator == "auto-rollback" and audit.from_model_id == CAND[0]
    assert "below zero" in (audit.note or "") and audit.evidence is not None
    assert audit.evidence["verdict"] == "rollback" and audit.evidence["difference"]["windows"] == 5
    event = await pool.fetchrow("SELECT payload FROM console_events WHERE kind = 'rolled_back'")
    assert "auto-rollback" in event["payload"]
    # nothing left to roll back: a second look changes nothing and raises nothing
    await _engine(pool, tmp_path, auto_rollback=True).watch_rollout()
    assert len([a for a in await Registry(pool).audit(10) if a.action == "rollback"]) == 1


async def test_served_share_disagreement_is_an_event_said_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _models(pool)
    await insert_rows(pool, "User", [user_row(a) for a in ("agent-a", "agent-b", "agent-c", "agent-d")])
    served = {"agent-a": LIVE[1], "agent-b": CAND[1], "agent-c": CAND[1], "agent-d": "offline://p/ghost:step7"}
    await _insert_window(pool, "2026-11-24T01:00", served, dict.fromkeys(served, 1.0))
    engine = _engine(pool, tmp_path, auto_rollback=True)
    await engine.watch_rollout()
    await engine.watch_rollout()
    messages = [r["m"] for r in await pool.fetch(
        "SELECT payload->>'message' AS m FROM console_events WHERE kind = 'warning' ORDER BY id")]
    assert len(messages) == 2  # each warning once, however often the engine looks
    assert any("served 67%" in m and "asked 50%" in m for m in messages)
    assert any("offline://p/ghost:step7" in m for m in messages)


async def test_the_cached_readout_reads_again_only_when_a_window_arrives(pool: asyncpg.Pool) -> None:
    from babylon_console.core.checkpoints.evidence import CachedReadout

    await _models(pool)
    await _harmful_history(pool, windows=3)
    cache = CachedReadout(GATE)
    first = await cache.get(pool)
    assert first.difference is not None and first.difference.windows == 3
    assert await cache.get(pool) is first  # nothing new: the rows are not read again
    served = {"agent-a": LIVE[1], "agent-c": CAND[1]}
    await _insert_window(pool, "2026-11-24T09:00", served, {"agent-a": 1.0, "agent-c": 2.0})
    again = await cache.get(pool)
    assert again is not first and again.difference is not None and again.difference.windows == 4
    await Registry(pool).rollback(operator="test")
    assert (await cache.get(pool)).verdict == "none"  # the rollout ended: read again at once


async def test_the_readouts_judge_score_is_ours_never_the_games_own_judge(pool: asyncpg.Pool) -> None:
    await _models(pool)
    await _harmful_history(pool)
    # the game's judge pre-filled its columns; our judge scored the candidate's trajectories only
    await pool.execute('UPDATE trajectories SET "aiJudgeReward" = 0.9, "aiJudgeReasoning" = \'game judge\'')
    await pool.execute(
        "INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
        """SELECT "trajectoryId", "windowId", 'outcome', 0.2, 'ours' FROM trajectories WHERE "agentId" IN """
        "('agent-c', 'agent-d')")
    arms = {a.arm: a for a in (await ab_readout(pool, GATE)).arms}
    assert arms["candidate"].judge_score == 0.2 and arms["live"].judge_score is None
