"""Headless `seed --live` serves the promoted checkpoint to simulated agents, as the demo console does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.backends.factory import checkpoint_root
from babylon_console.core.backends.offline import OfflineBackend
from babylon_console.core.registry import Registry


async def _offline_checkpoint(data_dir: Path) -> str:
    import art

    model = art.TrainableModel(name="served", project="babylon", base_model="sim/linear-softmax", run_name="run-1",
                               report_metrics=[])
    await model.register(OfflineBackend(checkpoint_root(data_dir, "offline")))
    return "offline://babylon/run-1:step0"


async def test_seed_live_drives_agents_with_the_live_checkpoint(database_url: str, pool: asyncpg.Pool,
                                                                tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    storage = await _offline_checkpoint(data_dir)
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
        "served-step0000", "step-0", "sim/linear-softmax", "batch-0", "registered", storage)
    await Registry(pool).promote("served-step0000", share=1.0, operator="test")

    result = await asyncio.to_thread(
        CliRunner().invoke, app,
        ["--database-url", database_url, "--data-dir", str(data_dir), "seed", "--windows", "1", "--agents", "6",
         "--steps", "2", "--live", "--simulated-database", "--live-windows", "1", "--seconds-per-window", "0.5",
         "--policy-agents", "2", "--json"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    live_window = orjson.loads(result.stdout)["live_windows"][0]
    rows = await pool.fetch('SELECT "agentId", "metadataJson" FROM trajectories WHERE "windowId" = $1 '
                            'ORDER BY "agentId"', live_window)
    policies = [orjson.loads(r["metadataJson"]).get("policy") for r in rows]
    assert len(rows) == 6
    served = storage.rsplit("/", 1)[-1]  # the policy is recorded by its short name, "run-1:step0"
    assert policies[-2:] == [served, served]  # the last two agents trade with the live model
    assert served not in policies[:-2]  # the others keep their scripted strategies


async def test_seed_live_serves_a_serverless_rollout_through_the_training_api_and_models_ab_reads_it_out(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path) -> None:
    """A 50% rollout of a W&B checkpoint next to a live one: the driven agents ask the W&B double
    under each checkpoint's name, their calls are logged under it, and `models ab --json` reads the
    two arms out of those rows."""
    from babylon_console.core.sim.actions import HOLD, Action, format_response
    from babylon_console.core.sim.observation import Observation
    from babylon_console.core.tokenization import load_tokenizer
    from tests.fake_wandb_training import FakeWandbTraining

    run = "wandb-artifact:///acme/babylon-console/babylon-agent"
    for step in (1, 2):
        await pool.execute(
            'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, '
            '"storagePath", "createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
            f"served-step{step}", "OpenPipe/Qwen3-14B-Instruct", f"batch-{step}", "registered", f"{run}:step{step}")
    from datetime import UTC, datetime

    from babylon_console.core.windows import window_start_of

    from .test_evidence import _At

    # started before the market: its clock starts at this hour, and the rollout counts windows from its start
    registry = Registry(pool, clock=_At(window_start_of(datetime.now(UTC))))
    await registry.promote("served-step1", share=1.0, operator="test")
    await registry.promote("served-step2", share=0.5, operator="test")

    def answer(name: str, messages: list[dict]) -> str:
        obs = Observation.from_prompt(messages[-1]["content"])
        if name.endswith(":step2") and obs is not None and obs.stocks:
            return format_response(Action("OPEN_LONG", ticker=obs.stocks[0].ticker, size=50), "buy")
        return format_response(HOLD, "wait")

    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 1, 2])
        fake.answer = answer
        env = {"WANDB_API_KEY": "k" * 40, "BABYLON_SERVERLESS_BASE_URL": fake.base_url}
        base = ["--database-url", database_url, "--data-dir", str(tmp_path / "data")]
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            *base, "seed", "--windows", "1", "--agents", "8", "--steps", "2", "--live", "--simulated-database",
            "--live-windows", "3", "--seconds-per-window", "0.5", "--policy-agents", "6", "--json"], env=env,
            catch_exceptions=False)
    assert result.exit_code == 0, result.output
    live_windows = orjson.loads(result.stdout)["live_windows"]
    rows = await pool.fetch(
        'SELECT t."windowId" AS w, l.model, count(DISTINCT t."agentId") AS agents FROM trajectories t '
        'JOIN llm_call_logs l ON l."trajectoryId" = t."trajectoryId" WHERE t."windowId" = ANY($1::text[]) '
        "GROUP BY 1, 2", live_windows)
    per_window = {(r["w"], r["model"]): r["agents"] for r in rows}
    for window in live_windows:  # 6 served agents: 3 on each arm, every window
        assert per_window[(window, f"{run}:step1")] == 3 and per_window[(window, f"{run}:step2")] == 3
    assert {r["model"] for r in fake.chat_requests} == {f"{run}:step1", f"{run}:step2"}
    ab = await asyncio.to_thread(CliRunner().invoke, app, [*base, "models", "ab", "--json"], catch_exceptions=False)
    assert ab.exit_code == 0, ab.output
    readout = orjson.loads(ab.stdout)
    arms = {a["arm"]: a for a in readout["arms"]}
    assert readout["candidate_model_id"] == "served-step2" and arms["candidate"]["windows"] == 3
    assert arms["candidate"]["agents"] == 3 and arms["live"]["agents"] == 3
    assert readout["unknown_models"] == []
    assert [round(w["served"], 2) for w in readout["served"]] == [0.5, 0.5, 0.5] and not readout["warnings"]


async def test_a_served_endpoint_that_never_answers_cannot_stall_the_live_market(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The live W&B checkpoint's endpoint accepts calls and never answers: each call is cut off, the
    agents hold (failed actions with the reason), the endpoint is left alone for a while, the
    windows keep coming, and the operator is told once."""
    import time

    from aiohttp import web

    from tests.fake_openai import serve_chat_route

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.json_response({})

    runner, url = await serve_chat_route(silent)
    storage = "wandb-artifact:///acme/babylon-console/babylon-agent:step1"
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
        "served-step1", "OpenPipe/Qwen3-14B-Instruct", "batch-1", "registered", storage)
    await Registry(pool).promote("served-step1", share=1.0, operator="test")
    try:
        started = time.monotonic()
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "--database-url", database_url, "--data-dir", str(tmp_path / "data"), "seed", "--windows", "1",
            "--agents", "4", "--steps", "4", "--live", "--simulated-database", "--live-windows", "2",
            "--seconds-per-window", "0.5", "--policy-agents", "2", "--json"],
            env={"WANDB_API_KEY": "k" * 40, "BABYLON_SERVERLESS_BASE_URL": url, "BABYLON_EVAL_TIMEOUT_S": "0.5"},
            catch_exceptions=False)
        elapsed = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert result.exit_code == 0, result.output
    assert elapsed < 20, elapsed  # 2 windows x 2 agents x 4 steps at 1.5 s a call would be 24 s and more
    assert result.stderr.count("cannot serve its simulated agents") == 1, result.stderr
    live_window = orjson.loads(result.stdout)["live_windows"][0]
    steps = [orjson.loads(r["stepsJson"]) for r in await pool.fetch(
        'SELECT t."stepsJson" FROM trajectories t WHERE t."windowId" = $1 AND EXISTS (SELECT 1 FROM llm_call_logs l '
        'WHERE l."trajectoryId" = t."trajectoryId" AND l.model = $2)', live_window, storage)]
    assert len(steps) == 2  # the two served agents, recorded under the checkpoint's name
    errors = [s["action"].get("error") for t in steps for s in t]
    assert all(e and e.startswith("endpoint error") for e in errors), errors
