"""The A/B readout from the gateway's call log: arms by the hash of each recorded response (the
newest game logs `huggingface` as the model), the model-name fallback, per-arm traffic (requests,
error rate, p50/p99 latency), the error-rate rollback, and promoting again after the gate rolled a
candidate back."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.evidence import ab_readout
from babylon_console.core.checkpoints.promotion import promote_on_evidence
from babylon_console.core.checkpoints.registry import Registry, RegistryError
from babylon_console.core.config import GateSettings, Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.game.bulk import insert_rows
from babylon_console.core.game.schema import LLM_CALL_COLUMNS
from babylon_console.core.gateway.upstreams import response_hash

from ..factories import trajectory_row, user_row
from .test_evidence import CAND, GATE, LIVE, _engine, _models

AGENTS = ("agent-a", "agent-b", "agent-c", "agent-d")
WINDOWS = [f"2026-11-24T{h:02d}:00" for h in range(1, 6)]  # opened after ROLLOUT_START (00:30)


def _log(trajectory_id: str, model: str, response: str, n: int) -> tuple[object, ...]:
    at = datetime(2026, 11, 24, 9, 30)
    values = {
        "id": f"{trajectory_id}-log{n}", "trajectoryId": trajectory_id, "stepId": f"{trajectory_id}-step-{n}",
        "callId": f"{trajectory_id}-log{n}", "timestamp": at, "latencyMs": 100, "model": model, "purpose": "action",
        "actionType": "HOLD", "systemPrompt": "s", "userPrompt": "u", "messagesJson": None, "response": response,
        "reasoning": None, "temperature": 0.7, "maxTokens": 100, "topP": None, "promptTokens": None,
        "completionTokens": None, "totalTokens": None, "metadata": None, "createdAt": at + timedelta(seconds=1),
    }
    return tuple(values[c] for c in LLM_CALL_COLUMNS)


async def _gateway_call(pool: asyncpg.Pool, rollout_id: int | None, arm: str, model_id: str, *,
                        response: str | None = None, status: int = 200, latency_ms: float = 10.0) -> None:
    await pool.execute(
        "INSERT INTO console_gateway_calls (at, gateway_id, agent, rollout_id, arm, model_id, upstream, status, "
        "latency_ms, response_sha256) VALUES (now(), 'gw-1', 'agent', $1, $2, $3, 'offline', $4, $5, $6)",
        rollout_id, arm, model_id, status, latency_ms, None if response is None else response_hash(response))


async def _served_through_the_gateway(pool: asyncpg.Pool, rollout_id: int, *, model: str = "huggingface",
                                      log_by: dict[str, str] | None = None) -> None:
    """Windows where agent-a/b are served by the live model, agent-c/d by the candidate (losing 20), every
    call logged by the game as `model` and by the gateway under this rollout with the hash of its text.
    `log_by`: agents whose calls the gateway did not serve, logged by the model name given instead."""
    await insert_rows(pool, "User", [user_row(a) for a in AGENTS])
    arms = {"agent-a": LIVE, "agent-b": LIVE, "agent-c": CAND, "agent-d": CAND}
    for w, window_id in enumerate(WINDOWS):
        rows, logs = [], []
        for agent, (model_id, _path) in arms.items():
            pnl = 5.0 + w * 0.1 if model_id == LIVE[0] else -20.0 - w * 0.1 + (agent == "agent-d")
            row = trajectory_row(window_id, agent, pnl=pnl, metadataJson=orjson.dumps({"maxDrawdown": 0.05}).decode())
            rows.append(row)
            for n in range(2):
                text = f'{{"action": "HOLD", "why": "é {agent} {window_id} {n}"}}'  # not ASCII: the hash is of UTF-8
                if log_by is not None and agent in log_by:
                    logs.append(_log(row[1], log_by[agent], text, n))
                    continue
                logs.append(_log(row[1], model, text, n))
                await _gateway_call(pool, rollout_id, "candidate" if model_id == CAND[0] else "live", model_id,
                                    response=text)
        await insert_rows(pool, "trajectories", rows)
        await insert_rows(pool, "llm_call_logs", logs)


async def _rollout(pool: asyncpg.Pool) -> int:
    await _models(pool)
    rollout = await Registry(pool).rollout()
    assert rollout is not None and rollout.id is not None
    return rollout.id


def _cli(database_url: str, tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["--database-url", database_url, "--data-dir", str(tmp_path), *args],
                              env={"COLUMNS": "200"}, catch_exceptions=False)


# -- arms by the response's hash ----------------------------------------------------------------


async def test_the_databases_hash_of_a_response_is_the_gateways(pool: asyncpg.Pool) -> None:
    text = '{"action": "BUY", "note": "café ✓"}'
    assert await pool.fetchval("SELECT encode(sha256(convert_to($1::text, 'UTF8')), 'hex')", text) == \
        response_hash(text)


async def test_arms_are_attributed_by_response_hash_when_the_game_logs_huggingface(
        pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    rollout = await _rollout(pool)
    await _served_through_the_gateway(pool, rollout)
    readout = await ab_readout(pool, GATE)
    arms = {a.arm: a for a in readout.arms}
    assert arms["candidate"].agents == 2 and arms["live"].agents == 2
    assert arms["candidate"].by_gateway == 10 and arms["live"].by_gateway == 10  # 2 agents x 5 windows each
    assert readout.difference is not None and readout.difference.windows == 5 and readout.difference.mean < -20
    assert readout.verdict == "rollback" and readout.warnings == []  # 'huggingface' is no unknown checkpoint
    shown = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "ab", "--json")
    assert shown.exit_code == 0, shown.output
    assert {a["arm"]: a["by_gateway"] for a in orjson.loads(shown.stdout)["arms"]} == {"live": 10, "candidate": 10}


async def test_calls_the_gateway_served_in_another_rollout_attribute_nothing(pool: asyncpg.Pool) -> None:
    rollout = await _rollout(pool)
    await _served_through_the_gateway(pool, rollout)
    await pool.execute("UPDATE console_gateway_calls SET rollout_id = $1", rollout + 100)
    readout = await ab_readout(pool, GATE)
    assert readout.difference is None and all(a.trajectories == 0 for a in readout.arms)


async def test_the_model_name_is_the_fallback_and_an_ambiguous_hash_names_no_arm(pool: asyncpg.Pool) -> None:
    rollout = await _rollout(pool)
    # agent-d's calls did not go through the gateway: the game named the checkpoint's storagePath
    await _served_through_the_gateway(pool, rollout, log_by={"agent-d": CAND[1]})
    # the same text answered by both arms names neither: that call falls back to the model name
    await pool.execute("INSERT INTO console_gateway_calls (at, gateway_id, agent, rollout_id, arm, model_id, status, "
                       "latency_ms, response_sha256) SELECT at, gateway_id, agent, rollout_id, 'live', $1, status, "
                       "latency_ms, response_sha256 FROM console_gateway_calls WHERE arm = 'candidate'", LIVE[0])
    arms = {a.arm: a for a in (await ab_readout(pool, GATE)).arms}
    assert arms["candidate"].agents == 1 and arms["candidate"].trajectories == 5  # agent-d, by its storagePath
    assert arms["candidate"].by_gateway == 0
    assert arms["live"].agents == 2 and arms["live"].by_gateway == 10


# -- per-arm traffic and the error-rate gate ---------------------------------------------------------


async def test_the_readout_reports_requests_error_rate_and_latency_per_arm(pool: asyncpg.Pool, database_url: str,
                                                                           tmp_path: Path) -> None:
    rollout = await _rollout(pool)
    for ms in range(1, 101):  # live: 100 calls of 1..100 ms, 1 upstream error, 2 client errors (not counted)
        await _gateway_call(pool, rollout, "live", LIVE[0], latency_ms=float(ms),
                            status=502 if ms == 1 else 400 if ms in (2, 3) else 200)
    for ms in (10.0, 20.0, 30.0, 40.0):
        await _gateway_call(pool, rollout, "candidate", CAND[0], latency_ms=ms, status=504 if ms == 40 else 200)
    await _gateway_call(pool, rollout, "pinned", CAND[0])  # neither arm
    await _gateway_call(pool, rollout + 1, "candidate", CAND[0], status=500)  # another rollout
    arms = {a.arm: a for a in (await ab_readout(pool, GATE)).arms}
    live, cand = arms["live"], arms["candidate"]
    assert (live.requests, live.errors, live.error_rate) == (100, 1, 0.01)
    assert live.p50_ms == pytest.approx(50.5) and live.p99_ms == pytest.approx(99.01)
    assert (cand.requests, cand.errors, cand.error_rate) == (4, 1, 0.25)
    assert cand.p50_ms == pytest.approx(25.0) and cand.p99_ms == pytest.approx(39.7)
    text = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "ab")
    assert text.exit_code == 0, text.output
    assert "gateway: live 100 requests, 1.0% errors, p50 50 ms, p99 99 ms" in text.output
    assert "candidate 4 requests, 25.0% errors, p50 25 ms, p99 40 ms" in text.output


async def test_a_candidate_erring_past_the_limit_is_rolled_back_with_the_evidence(pool: asyncpg.Pool,
                                                                                   tmp_path: Path) -> None:
    rollout = await _rollout(pool)
    gate = GateSettings(min_windows=3, max_error_rate=0.05, min_requests=20)
    for n in range(19):  # under the minimum of requests: no verdict from 3 errors in 19
        await _gateway_call(pool, rollout, "candidate", CAND[0], status=502 if n < 3 else 200)
    assert (await ab_readout(pool, gate)).verdict == "collecting"
    await _gateway_call(pool, rollout, "candidate", CAND[0])
    readout = await ab_readout(pool, gate)
    assert readout.verdict == "rollback"
    assert readout.reasons == ["candidate error rate 15.0% (3 of 20 requests through the gateway) passes the limit "
                               "5.0%"]
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"), BABYLON_GATE_MIN_REQUESTS="20")  # type: ignore[call-arg]
    await Engine(pool, EngineConfig(iterations=1, auto_rollback=True), settings=settings).watch_rollout()
    assert await Registry(pool).rollout() is None
    audit = (await Registry(pool).audit(1))[0]
    assert audit.action == "rollback" and audit.operator == "auto-rollback" and audit.rollout_id == rollout
    assert "candidate error rate 15.0%" in (audit.note or "")
    cand = next(a for a in audit.evidence["arms"] if a["arm"] == "candidate")
    assert (cand["requests"], cand["errors"], cand["error_rate"]) == (20, 3, 0.15)


async def test_the_error_rate_limit_is_a_setting() -> None:
    settings = Settings(BABYLON_GATE_MAX_ERROR_RATE="0.2", BABYLON_GATE_MIN_REQUESTS="10")  # type: ignore[call-arg]
    assert (settings.gate().max_error_rate, settings.gate().min_requests) == (0.2, 10)
    assert (Settings().gate().max_error_rate, Settings().gate().min_requests) == (0.05, 50)  # type: ignore[call-arg]


async def test_the_cached_readout_reads_the_gateway_again_without_a_new_window(pool: asyncpg.Pool) -> None:
    from babylon_console.core.checkpoints.evidence import CachedReadout

    rollout = await _rollout(pool)
    cache = CachedReadout(GateSettings(min_requests=5), traffic_every_s=0.0)
    assert (await cache.get(pool)).verdict == "collecting"
    for _ in range(5):
        await _gateway_call(pool, rollout, "candidate", CAND[0], status=503)
    again = await cache.get(pool)
    assert again.verdict == "rollback" and next(a for a in again.arms if a.arm == "candidate").requests == 5


# -- promoting again after the gate rolled a candidate back ---------------------------------------------


async def test_promoting_a_candidate_the_gate_rolled_back_needs_a_reason(pool: asyncpg.Pool, tmp_path: Path) -> None:
    rollout = await _rollout(pool)
    await _served_through_the_gateway(pool, rollout)
    await _engine(pool, tmp_path, auto_rollback=True).watch_rollout()
    assert await Registry(pool).rollout() is None  # rolled back on its P&L
    with pytest.raises(RegistryError, match=f"against the evidence \\(rollout {rollout} was rolled back: candidate - "
                                            "live P&L"):
        await promote_on_evidence(pool, CAND[0], share=0.5, operator="op")
    done = await promote_on_evidence(pool, CAND[0], share=0.5, operator="op", reason="fixed the prompt")
    audit = (await Registry(pool).audit(1))[0]
    assert done.rollout_id != rollout and audit.note.endswith("): fixed the prompt")
    assert audit.evidence["rolled_back"]["rollout_id"] == rollout


async def test_a_rollback_recorded_without_evidence_is_no_evidence_against(pool: asyncpg.Pool) -> None:
    await _rollout(pool)
    await Registry(pool).rollback(operator="op")  # the operator's own call: nothing was judged
    done = await promote_on_evidence(pool, CAND[0], share=0.5, operator="op")
    assert (await Registry(pool).audit(1))[0].evidence == {
        "none": "never evaluated on held-out windows, no paired A/B windows"}
    assert done.rollout_id is not None

