"""Headless `seed --live` serves the promoted checkpoint to simulated agents, as the demo console does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.gateway.upstreams import response_hash
from babylon_console.core.simgame.serving import GAME_PROVIDER
from babylon_console.core.training.backends.factory import checkpoint_root
from babylon_console.core.training.backends.offline import OfflineBackend


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
    assert policies[-2:] == ["gateway:babylon-agent"] * 2  # the last two agents call the market's gateway
    assert not any(p.startswith("gateway:") for p in policies[:-2])  # the others keep their scripted strategies
    driven = [r["agentId"] for r in rows[-2:]]
    logged = await pool.fetch('SELECT l.model, l.response FROM llm_call_logs l JOIN trajectories t ON '
                              't."trajectoryId" = l."trajectoryId" WHERE t."windowId" = $1 AND t."agentId" = ANY($2)',
                              live_window, driven)
    assert logged and {r["model"] for r in logged} == {GAME_PROVIDER}  # as the newest game logs its calls
    calls = await pool.fetch("SELECT agent, arm, model_id, status, response_sha256 FROM console_gateway_calls")
    assert {(c["agent"], c["arm"], c["model_id"], c["status"]) for c in calls} == {
        (a, "live", "served-step0000", 200) for a in driven}  # the offline checkpoint's stand-in answered them
    assert {c["response_sha256"] for c in calls} == {response_hash(r["response"]) for r in logged}
    gateway = await pool.fetchrow("SELECT listen, stopped_at FROM console_gateways")
    assert gateway["listen"].startswith("127.0.0.1:") and gateway["stopped_at"] is not None  # and stopped with it


async def test_seed_live_sends_a_50_percent_rollout_through_its_gateway_and_models_ab_reads_it_from_the_gateway_log(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path) -> None:
    """A 50% rollout of a W&B checkpoint next to a live one: the driven agents call the market's own
    gateway for the alias with their agent id, the gateway (not the market) sends each agent to one
    arm for the whole rollout and forwards to the W&B double under each checkpoint's name; the calls
    are logged as the newest game logs them (`huggingface`), so `models ab --json` can only read the
    arms out of the gateway's call log (by the hash of each recorded response)."""
    from babylon_console.core.gateway.routing import on_candidate
    from babylon_console.core.sim.actions import HOLD, Action, format_response
    from babylon_console.core.sim.observation import Observation
    from babylon_console.core.training.tokenization import load_tokenizer
    from tests.fake_wandb_training import FakeWandbTraining

    run = "wandb-artifact:///acme/babylon-console/babylon-agent"
    for step in (1, 2):
        await pool.execute(
            'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, '
            '"storagePath", "createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
            f"served-step{step}", "OpenPipe/Qwen3-14B-Instruct", f"batch-{step}", "registered", f"{run}:step{step}")
    from datetime import UTC, datetime

    from babylon_console.core.game.windows import window_start_of

    from ..checkpoints.test_evidence import _At

    # started before the market: its clock starts at this hour, and the rollout counts windows from its start
    registry = Registry(pool, clock=_At(window_start_of(datetime.now(UTC))))
    await registry.promote("served-step1", share=1.0, operator="test")
    await registry.promote("served-step2", share=0.5, operator="test")
    rollout_id = (await registry.rollout()).id

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
    assert "warning" not in result.stderr, result.stderr
    live_windows = orjson.loads(result.stdout)["live_windows"]
    driven = [r["agentId"] for r in await pool.fetch(
        'SELECT DISTINCT "agentId" FROM trajectories WHERE "windowId" = $1 ORDER BY "agentId"', live_windows[0])][-6:]
    # the gateway's arms: every driven agent on one arm for the whole rollout, the arm its sticky hash says
    calls = await pool.fetch("SELECT agent, arm, model_id, status, rollout_id FROM console_gateway_calls")
    arms = {a: {(c["arm"], c["model_id"]) for c in calls if c["agent"] == a} for a in driven}
    expected = {a: {("candidate", "served-step2")} if on_candidate(a, rollout_id, 0.5) else {("live", "served-step1")}
                for a in driven}
    assert arms == expected
    on_candidate_agents = sum(1 for a in driven if ("candidate", "served-step2") in arms[a])
    assert 0 < on_candidate_agents < 6  # both arms served (fixed by the seed's agent ids and the rollout id)
    assert {c["status"] for c in calls} == {200} and {c["rollout_id"] for c in calls} == {rollout_id}
    assert {r["model"] for r in fake.chat_requests} == {f"{run}:step1", f"{run}:step2"}
    models = await pool.fetch(
        'SELECT DISTINCT l.model FROM llm_call_logs l JOIN trajectories t ON l."trajectoryId" = t."trajectoryId" '
        'WHERE t."windowId" = ANY($1::text[]) AND t."agentId" = ANY($2)', live_windows, driven)
    assert [r["model"] for r in models] == [GAME_PROVIDER]  # never the checkpoint's storagePath

    # The readout attributes the arms through the gateway's call log (core.checkpoints.evidence, by response hash):
    # with `huggingface` in llm_call_logs.model there is nothing else to read them from.
    ab = await asyncio.to_thread(CliRunner().invoke, app, [*base, "models", "ab", "--json"], catch_exceptions=False)
    assert ab.exit_code == 0, ab.output
    readout = orjson.loads(ab.stdout)
    by_arm = {a["arm"]: a for a in readout["arms"]}
    assert readout["candidate_model_id"] == "served-step2" and by_arm["candidate"]["windows"] == 3
    assert by_arm["candidate"]["agents"] == on_candidate_agents and by_arm["live"]["agents"] == 6 - on_candidate_agents
    assert by_arm["candidate"]["by_gateway"] == by_arm["candidate"]["trajectories"] == 3 * on_candidate_agents
    assert [round(w["served"], 2) for w in readout["served"]] == [round(on_candidate_agents / 6, 2)] * 3


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
        'WHERE l."trajectoryId" = t."trajectoryId" AND l.model = $2)', live_window, GAME_PROVIDER)]
    assert len(steps) == 2  # the two served agents, recorded as the game records its provider
    errors = [s["action"].get("error") for t in steps for s in t]
    assert all(e and e.startswith("endpoint error") for e in errors), errors


async def test_with_nothing_live_the_policy_agents_keep_their_strategies_and_never_ask_the_gateway(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path / "data"), "seed", "--windows", "1",
        "--agents", "4", "--steps", "2", "--live", "--simulated-database", "--live-windows", "1",
        "--seconds-per-window", "0.5", "--policy-agents", "2", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr, result.stderr  # a gateway with nothing to serve is no fault
    live_window = orjson.loads(result.stdout)["live_windows"][0]
    policies = [orjson.loads(r["metadataJson"]).get("policy") for r in await pool.fetch(
        'SELECT "metadataJson" FROM trajectories WHERE "windowId" = $1', live_window)]
    assert len(policies) == 4 and not any(p.startswith("gateway:") for p in policies)
    assert await pool.fetchval("SELECT count(*) FROM console_gateway_calls") == 0  # not asked: it would say 503
    gateway = await pool.fetchrow("SELECT stopped_at FROM console_gateways")
    assert gateway is not None and gateway["stopped_at"] is not None  # started with the market, stopped with it


async def test_a_live_model_the_gateway_cannot_serve_leaves_the_agents_on_their_strategies_said_once(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The live checkpoint is on W&B and no key is set: the gateway answers 503 naming what to set; the
    driven agents trade with their scripted strategies (logged under the strategy's name), the
    operator is told once, and the gateway is not asked again at every step."""
    storage = "wandb-artifact:///acme/babylon-console/babylon-agent:step1"
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
        "served-step1", "OpenPipe/Qwen3-14B-Instruct", "batch-1", "registered", storage)
    await Registry(pool).promote("served-step1", share=1.0, operator="test")
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path / "data"), "seed", "--windows", "1",
        "--agents", "4", "--steps", "3", "--live", "--simulated-database", "--live-windows", "2",
        "--seconds-per-window", "0.5", "--policy-agents", "2", "--json"], env={"WANDB_API_KEY": ""},
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning") == 1 and "serves nothing now" in result.stderr, result.stderr
    live = orjson.loads(result.stdout)["live_windows"]
    models = {r["model"] for r in await pool.fetch(
        'SELECT DISTINCT l.model FROM llm_call_logs l JOIN trajectories t ON l."trajectoryId" = t."trajectoryId" '
        'WHERE t."windowId" = ANY($1::text[])', live)}
    assert models and all(m.startswith("sim/") for m in models)  # scripted decisions, no failed model calls
    errors = await pool.fetch("SELECT status FROM console_gateway_calls")
    # asked at most once by each agent already in flight (of 2 agents x 3 steps x 2 windows), then left alone
    assert {e["status"] for e in errors} == {503} and len(errors) <= 2
