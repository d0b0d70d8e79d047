"""Held-out evaluation of served checkpoints (serverless, local): recorded prompts replayed through
each model's endpoint (the W&B Training API double, a local OpenAI-compatible server standing in for
vLLM), the two answers judged side by side (`core.checkpoints.prompt_eval`, `core.checkpoints.endpoints`)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.endpoints import endpoint_for
from babylon_console.core.checkpoints.evaluation import evaluate, latest_per_model
from babylon_console.core.checkpoints.holdout import set_holdout
from babylon_console.core.checkpoints.prompt_eval import EndpointRefused, EndpointUnavailable, held_out_prompts
from babylon_console.core.config import Settings
from babylon_console.core.errors import InvalidInput, Refused
from babylon_console.core.game.rows import MarketOutcome, WindowGroundTruth
from babylon_console.core.game.windows import held_out
from babylon_console.core.names import base_name
from babylon_console.core.sim.actions import Action, format_response
from babylon_console.core.sim.observation import Observation
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.judges.outcome import score_answer
from babylon_console.core.training.tokenization import load_tokenizer
from tests.fake_openai import FakeOpenAI, serve_chat_route
from tests.fake_wandb_training import FakeWandbTraining

NOW = datetime(2026, 11, 24, 12, 0)
SHARE = 0.3
KEY = "local-test-key-" + "6c1f" * 8
RUN = "wandb-artifact:///acme/babylon-console/babylon-agent"
LORA = "local-lora:///ckpt/babylon-agent/0002?base=Qwen/Qwen3-0.6B"


# -- the outcome judge's per-answer scoring -----------------------------------------------------


def _stock(ticker: str, change: str) -> MarketOutcome:
    return MarketOutcome(id=f"mo-{ticker}", window_id="w", stock_ticker=ticker, change_percent=Decimal(change))


def _prompt_and_truth() -> tuple[str, WindowGroundTruth]:
    """A real simulator prompt, and ground truth in which its first stock rose 2% and its second
    barely moved; its first prediction market resolved YES."""
    sim = Simulation(seed=4, n_agents=2, steps_per_window=2)
    result = sim.simulate_window(NOW)
    # "userPrompt" comes before "messagesJson" in a row
    prompt = next(v for c in result.llm_calls for v in c if isinstance(v, str) and "MARKET_STATE: " in v)
    obs = Observation.from_prompt(prompt)
    assert obs is not None and len(obs.stocks) >= 2 and obs.markets
    gt = WindowGroundTruth(window_id="w", stocks=[_stock(obs.stocks[0].ticker, "2.0"),
                                                  _stock(obs.stocks[1].ticker, "0.01")],
                           predictions=[MarketOutcome(id="mo-pm", window_id="w",
                                                      prediction_market_id=obs.markets[0].market_id, outcome="YES")])
    return prompt, gt


def test_each_answer_is_scored_against_what_the_market_then_did() -> None:
    prompt, gt = _prompt_and_truth()
    obs = Observation.from_prompt(prompt)
    assert obs is not None
    up, flat, market = obs.stocks[0].ticker, obs.stocks[1].ticker, obs.markets[0].market_id

    def scored(action: Action) -> float:
        return score_answer(format_response(action, "because"), prompt, gt).score

    assert scored(Action("OPEN_LONG", ticker=up, size=100)) == 1.0
    assert scored(Action("OPEN_SHORT", ticker=up, size=100)) == 0.0
    assert scored(Action("OPEN_LONG", ticker=flat, size=100)) == 0.5  # under the neutral move
    assert scored(Action("HOLD")) == 0.5
    assert scored(Action("BUY_SHARES", market_id=market, side="YES", amount=100)) == 1.0
    assert scored(Action("BUY_SHARES", market_id=market, side="NO", amount=100)) == 0.0
    oversized = score_answer(format_response(Action("OPEN_LONG", ticker=up, size=500), "all in"), prompt, gt)
    assert 0.7 < oversized.score < 1.0 and "of the cash" in oversized.explanation
    garbage = score_answer("I would buy something nice", prompt, gt)
    assert garbage.score == 0.0 and garbage.explanation.startswith("unusable answer")
    unknown = score_answer(format_response(Action("OPEN_LONG", ticker="ZZZZ", size=100), ""), prompt, gt)
    assert unknown.score == 0.0 and "unknown ticker" in unknown.explanation


# -- where a checkpoint answers ---------------------------------------------------------------


def test_served_names_resolve_to_their_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(WANDB_API_KEY=KEY, BABYLON_SERVERLESS_BASE_URL="http://127.0.0.1:9/v1")  # type: ignore[call-arg]
    served = endpoint_for(f"{RUN}:step3", settings)
    assert (served.base_url, served.model) == ("http://127.0.0.1:9/v1", f"{RUN}:step3")
    assert base_name(f"{RUN}:step3") == f"{RUN}:step0" and base_name(LORA) == "Qwen/Qwen3-0.6B"
    with pytest.raises(InvalidInput, match="BABYLON_LOCAL_INFERENCE_URL"):
        endpoint_for(LORA, settings)
    local = endpoint_for(LORA, settings.with_overrides(local_inference_url="http://127.0.0.1:8/v1"))
    assert (local.base_url, local.model) == ("http://127.0.0.1:8/v1", LORA)
    monkeypatch.setenv("WANDB_MODE", "offline")  # no deployment of one's own: W&B's public host is refused
    with pytest.raises(InvalidInput, match="WANDB_MODE=offline forbids reaching W&B"):
        endpoint_for(f"{RUN}:step3", Settings(WANDB_API_KEY=KEY))  # type: ignore[call-arg]
    with pytest.raises(InvalidInput, match="served by W&B's Training API, which needs WANDB_API_KEY"):
        endpoint_for(f"{RUN}:step3", Settings())


# -- end to end against the doubles -------------------------------------------------------------


async def _history(pool: asyncpg.Pool) -> dict[str, WindowGroundTruth]:
    """40 simulated hours; the ground truth of each held-out window's prompts, by prompt text."""
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, SHARE, operator="tester", reason=None)
    truth = {}
    for window in await held_out_prompts(pool, SHARE, 100, 1000):
        for p in window.prompts:
            truth[p.messages[-1]["content"]] = window.ground_truth
    return truth


def trader(truth: dict[str, WindowGroundTruth], right: bool):  # type: ignore[no-untyped-def]
    """Answers every held-out prompt with a position on the stock that moved most: with the move
    (`right`) or against it."""
    def answer(messages: list[dict[str, Any]]) -> str:
        gt = truth[messages[-1]["content"]]
        obs = Observation.from_prompt(messages[-1]["content"])
        assert obs is not None
        shown = {q.ticker for q in obs.stocks}
        move = max((s for s in gt.stocks if s.stock_ticker in shown), key=lambda s: abs(s.change_percent or 0))
        up = (move.change_percent or 0) > 0
        kind = "OPEN_LONG" if up == right else "OPEN_SHORT"
        return format_response(Action(kind, ticker=move.stock_ticker, size=20),
                               "with the move" if right else "against the move")
    return answer


async def _register(pool: asyncpg.Pool, model_id: str, storage: str, status: str = "registered") -> None:
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
        model_id, "OpenPipe/Qwen3-14B-Instruct", f"batch-{model_id}", status, storage)


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(BABYLON_DATA_DIR=str(tmp_path), WANDB_API_KEY=KEY, BABYLON_HOLDOUT_SHARE=SHARE,  # type: ignore[call-arg]
                    **extra)


async def test_a_serverless_checkpoint_is_evaluated_on_recorded_prompts_at_the_training_api(
        pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path, resolved_hosts: list[str]) -> None:
    truth = await _history(pool)
    await _register(pool, "good", f"{RUN}:step2")
    await _register(pool, "bad", f"{RUN}:step1")
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 1, 2])
        good, bad = trader(truth, right=True), trader(truth, right=False)
        fake.answer = lambda name, messages: (good if name.endswith(":step2") else bad)(messages)
        settings = _settings(tmp_path, BABYLON_SERVERLESS_BASE_URL=fake.base_url)
        done: list[int] = []
        result = await evaluate(pool, tmp_path, "good", against="bad", windows=5, settings=settings,
                                prompts=3, progress=lambda i, n: done.append(i))
    assert (result.method, result.judge, result.n, result.prompts) == ("prompts", "outcome", 5, 15)
    assert done == [1, 2, 3, 4, 5] and all(held_out(w, SHARE) for w in result.windows)
    assert result.mean_a == pytest.approx(1.0) and result.mean_b == pytest.approx(0.0)
    assert result.ci_low is not None and result.ci_low > 0 and result.win_rate == 1.0
    assert result.unusable_a == result.unusable_b == 0 and result.examples
    assert result.endpoint_a == f"{RUN}:step2 at {fake.base_url}"
    # every prompt went to both checkpoints under their artifact names, greedy, with the key
    assert sorted({r["model"] for r in fake.chat_requests}) == [f"{RUN}:step1", f"{RUN}:step2"]
    assert len(fake.chat_requests) == 30 and {r["temperature"] for r in fake.chat_requests} == {0.0}
    assert f"Bearer {KEY}" in fake.auth_headers
    assert all(r["messages"][-1]["role"] == "user" and "MARKET_STATE" in r["messages"][-1]["content"]
               for r in fake.chat_requests)
    assert set(resolved_hosts) <= {"127.0.0.1", "localhost"}
    stored = (await latest_per_model(pool))["good"]
    assert stored.id == result.id and stored.method == "prompts" and stored.prompts == 15


async def test_the_base_of_a_serverless_run_is_its_step_0_and_the_same_prompts_come_back(
        pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path) -> None:
    truth = await _history(pool)
    await _register(pool, "good", f"{RUN}:step2")
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 2])
        good, bad = trader(truth, right=True), trader(truth, right=False)
        fake.answer = lambda name, messages: (good if name.endswith(":step2") else bad)(messages)
        settings = _settings(tmp_path, BABYLON_SERVERLESS_BASE_URL=fake.base_url)
        first = await evaluate(pool, tmp_path, "good", against="base", windows=3, settings=settings, prompts=2)
        asked = [r["messages"] for r in fake.chat_requests]
        again = await evaluate(pool, tmp_path, "good", against="base", windows=3, settings=settings, prompts=2)
    assert first.against_storage_path == f"{RUN}:step0" and first.against_model_id is None
    assert again.windows == first.windows and again.mean_diff == first.mean_diff
    assert [r["messages"] for r in fake.chat_requests[len(asked):]] == asked  # the same prompts, the same order


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")  # litellm's own response types
async def test_a_local_checkpoint_is_asked_at_its_vllm_and_judged_by_ruler_side_by_side(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The local LoRA against its base model at a vLLM stand-in; RULER (at a second local server)
    sees the ground truth and the prompt once in <context> and both answers; the answers' order
    alternates between prompts and each score goes back to the model that answered."""
    truth = await _history(pool)
    await _register(pool, "lora", LORA)
    good, bad = trader(truth, right=True), trader(truth, right=False)

    def same(messages: list[dict[str, Any]]) -> bool:  # a third of the prompts: both models hold
        return hashlib.sha256(messages[-1]["content"].encode()).digest()[0] % 3 == 0

    def vllm(body: dict[str, Any]) -> str:
        if same(body["messages"]):
            return format_response(Action("HOLD"), "wait")
        return (good if body["model"] == LORA else bad)(body["messages"])

    good_first: list[bool] = []

    def ruler(body: dict[str, Any]) -> str:
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        assert "<context>" in text and "JUDGE-ONLY GROUND TRUTH" in text and "MARKET_STATE" in text
        blocks = re.findall(r'<trajectory id="(\d+)">(.*?)</trajectory>', text, re.S)
        assert [i for i, _ in blocks] == ["1", "2"] and "MARKET_STATE" not in "".join(b for _, b in blocks)
        good_first.append("with the move" in blocks[0][1])
        return orjson.dumps({"scores": [{"trajectory_id": i, "explanation": "judged",
                                         "score": 0.9 if "with the move" in block else 0.2}
                                        for i, block in blocks]}).decode()

    async with FakeOpenAI(vllm) as server, FakeOpenAI(ruler) as judge:
        settings = _settings(tmp_path, BABYLON_LOCAL_INFERENCE_URL=server.base_url, BABYLON_JUDGE="ruler",
                             BABYLON_JUDGE_MODEL="judge-model", BABYLON_JUDGE_BASE_URL=judge.base_url)
        result = await evaluate(pool, tmp_path, "lora", against="base", windows=3, settings=settings, prompts=4)
        judged = len(judge.requests)
    assert result.against_storage_path == "Qwen/Qwen3-0.6B" and result.judge == "ruler"
    assert {r["model"] for r in server.requests} == {LORA, "Qwen/Qwen3-0.6B"}
    n_same = sum(same(r["messages"]) for r in server.requests) // 2
    assert 0 < n_same < 12
    assert judged == 12 - n_same  # one RULER call per prompt the models answered differently, none otherwise
    assert good_first.count(True) == good_first.count(False) or abs(good_first.count(True) * 2 - judged) == 1
    assert 0.5 < result.mean_a < 0.9 and 0.2 < result.mean_b < 0.5  # the same answers share 0.5
    assert result.mean_diff == pytest.approx(result.mean_a - result.mean_b)


async def test_an_endpoint_that_does_not_answer_or_serve_the_model_says_which_and_records_nothing(
        pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path, database_url: str) -> None:
    truth = await _history(pool)
    await _register(pool, "good", f"{RUN}:step2")
    await _register(pool, "other", f"{RUN}:step7")  # the service does not hold this step
    await _register(pool, "lora", LORA)
    await _register(pool, "offline", "offline://babylon-console/run/step1")
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 2])
        fake.answer = lambda name, messages: trader(truth, True)(messages)
        settings = _settings(tmp_path, BABYLON_SERVERLESS_BASE_URL=fake.base_url)
        with pytest.raises(EndpointRefused, match=r"other \(wandb-artifact:///.*:step7 at .*\) answered HTTP 404"):
            await evaluate(pool, tmp_path, "good", against="other", windows=3, settings=settings)
        base_url = fake.base_url
    # the service is gone: a closed port on 127.0.0.1
    with pytest.raises(EndpointUnavailable, match=f"the endpoint of good .*{base_url}.* does not answer"):
        await evaluate(pool, tmp_path, "good", against="base", windows=3,
                       settings=_settings(tmp_path, BABYLON_SERVERLESS_BASE_URL=base_url, BABYLON_EVAL_TIMEOUT_S=2))
    with pytest.raises(Refused, match="cannot be compared"):
        await evaluate(pool, tmp_path, "good", against="offline", windows=3, settings=settings)
    with pytest.raises(InvalidInput, match="BABYLON_LOCAL_INFERENCE_URL"):
        await evaluate(pool, tmp_path, "lora", against="base", windows=3, settings=settings)
    with pytest.raises(InvalidInput, match="the ruler judge needs OPENAI_API_KEY"):
        await evaluate(pool, tmp_path, "good", against="base", windows=3,
                       settings=settings.with_overrides(judge="ruler"))
    await set_holdout(pool, 0.01, operator="tester", reason="too few held out")
    with pytest.raises(InvalidInput, match="with recorded prompts and ground truth"):
        await evaluate(pool, tmp_path, "good", against="base", windows=3, settings=settings)
    await set_holdout(pool, SHARE, operator="tester", reason="back")
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations") == 0
    # the CLI says the same in one line, with the exit code of an outage
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path), "models", "eval", "good", "--against", "base",
        "--windows", "3"], env={"BABYLON_HOLDOUT_SHARE": str(SHARE), "WANDB_API_KEY": KEY,
                                "BABYLON_SERVERLESS_BASE_URL": base_url, "BABYLON_EVAL_TIMEOUT_S": "2"},
        catch_exceptions=False)
    assert result.exit_code == 2 and result.output.startswith("error: the endpoint of good"), result.output
    assert "Traceback" not in result.output


async def test_models_eval_json_against_the_training_api_double(
        pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path, database_url: str) -> None:
    truth = await _history(pool)
    await _register(pool, "good", f"{RUN}:step2")
    await _register(pool, "live", f"{RUN}:step1", status="deployed")
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 1, 2])
        good, bad = trader(truth, right=True), trader(truth, right=False)
        fake.answer = lambda name, messages: (good if name.endswith(":step2") else bad)(messages)
        env = {"BABYLON_HOLDOUT_SHARE": str(SHARE), "WANDB_API_KEY": KEY, "BABYLON_SERVERLESS_BASE_URL": fake.base_url}
        args = ["--database-url", database_url, "--data-dir", str(tmp_path), "models", "eval", "good",
                "--windows", "3", "--prompts", "2"]
        shown = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"], env=env, catch_exceptions=False)
        text = await asyncio.to_thread(CliRunner().invoke, app, args, env=env, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    data = orjson.loads(shown.stdout)
    assert (data["against"], data["against_model_id"], data["method"], data["prompts"]) == ("live", "live",
                                                                                             "prompts", 6)
    assert data["mean_diff"] == pytest.approx(1.0)
    assert text.exit_code == 0, text.output
    assert "6 recorded prompts judged by outcome" in text.output and "outcome score per answer" in text.output


async def test_the_serverless_engine_evaluates_its_new_checkpoint_under_the_name_art_registered(
        pool: asyncpg.Pool, database_url: str, tokenizer_dir: Path) -> None:
    """`train --backend serverless` with BABYLON_EVAL_EVERY=1: the checkpoint ART registered is asked
    under its inference name at the double, against the run's step 0, and the result is an event."""
    from babylon_console.core.clock import SystemClock
    from tests.factories import hour_with_held_out

    now = hour_with_held_out(SystemClock().now(), windows=14, share=0.4, held=(4, 10))
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=4), windows=14, now=now)
    await set_holdout(pool, 0.4, operator="tester", reason=None)
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.answer = lambda name, messages: format_response(Action("HOLD"), f"{name} holds")
        env = {"DATABASE_URL": database_url, "WANDB_API_KEY": KEY, "WANDB_ENTITY": "acme", "WANDB_MODE": "disabled",
               "BABYLON_SERVERLESS_BASE_URL": fake.base_url, "BABYLON_TOKENIZER": str(tokenizer_dir),
               "BABYLON_SETTLE_SECONDS": "0", "BABYLON_MIN_STEPS": "3", "BABYLON_HOLDOUT_SHARE": "0.4",
               "BABYLON_EVAL_EVERY": "1", "BABYLON_EVAL_PROMPTS": "2"}
        trained = await asyncio.to_thread(CliRunner().invoke, app, [
            "train", "--backend", "serverless", "--iterations", "1", "--windows-per-iteration", "1", "--json"],
            env=env, catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    storage = await pool.fetchval('SELECT "storagePath" FROM trained_models')
    assert storage == f"{RUN}:step1"
    assert {r["model"] for r in fake.chat_requests} == {f"{RUN}:step1", f"{RUN}:step0"}
    (payload,) = [orjson.loads(r) for (r,) in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'checkpoint_evaluated'")]
    assert payload["unit"] == "outcome score per answer" and payload["mean_diff"] == 0.0  # both held
    evaluation = (await latest_per_model(pool))["babylon-agent-serverless-step0001"]
    assert evaluation.method == "prompts" and evaluation.n >= 3 and evaluation.against_model_id is None


async def test_an_endpoint_that_fails_mid_run_garbles_or_trickles_stops_the_evaluation_with_a_sentence(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    from aiohttp import web

    from babylon_console.core.errors import Failed
    from tests.fake_openai import FakeError

    truth = await _history(pool)
    await _register(pool, "lora", LORA)
    answered = 0

    def flaky(body: dict[str, Any]) -> Any:
        nonlocal answered
        answered += 1
        return trader(truth, True)(body["messages"]) if answered <= 9 else FakeError(503, "vLLM is restarting")

    async with FakeOpenAI(flaky) as server:  # the second window's requests fail while others are in flight
        with pytest.raises(EndpointUnavailable, match="answered HTTP 503: vLLM is restarting"):
            await evaluate(pool, tmp_path, "lora", against="base", windows=3, prompts=4,
                           settings=_settings(tmp_path, BABYLON_LOCAL_INFERENCE_URL=server.base_url))

    async def garbled(request: web.Request) -> web.Response:
        return web.Response(text="not json at all", content_type="application/json")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(200):  # a byte at a time, never the whole answer
            await response.write(b" ")
            await asyncio.sleep(0.1)
        return response

    for handler, error, words in ((garbled, Failed, "answered something unreadable"),
                                  (trickle, EndpointUnavailable, "did not finish answering within 2.9 s")):
        runner, url = await serve_chat_route(handler)
        try:
            with pytest.raises(error, match=words):
                await evaluate(pool, tmp_path, "lora", against="base", windows=3, prompts=2,
                               settings=_settings(tmp_path, BABYLON_LOCAL_INFERENCE_URL=url,
                                                  BABYLON_EVAL_TIMEOUT_S=0.3))
        finally:
            await runner.cleanup()
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations") == 0
