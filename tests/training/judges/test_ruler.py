"""RulerJudge against a scripted judge endpoint on 127.0.0.1 (real ART RULER, real litellm)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest

from babylon_console.core.training.judges import JudgeError, JudgeInput, RulerJudge, ground_truth_text, judge_windows
from babylon_console.core.training.judges.ruler import GROUND_TRUTH_HEADER, TRADING_RUBRIC
from tests.fake_openai import FakeError

from .fakes import JudgeFake, held, ruler_scores, usage_cost, user_text
from .helpers import simulated_window

# litellm's known serializer warning (ART silences it at import, but pytest resets warning filters).
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")

MODEL = "judge-small"  # an unpriced model served by the endpoint


def ruler(server: JudgeFake, **kwargs) -> RulerJudge:
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("timeout_s", 5)
    return RulerJudge(kwargs.pop("judge_model", MODEL), base_url=server.base_url, api_key="sk-test-secret", **kwargs)


def fake(*script, default=None) -> JudgeFake:
    return JudgeFake(list(script), default=default if default is not None else ruler_scores())


@pytest.fixture(scope="module")
def window() -> JudgeInput:
    return simulated_window(seed=3, n_agents=6, steps=10)


async def test_ground_truth_reaches_judge_but_not_training_messages(window: JudgeInput) -> None:
    before = copy.deepcopy(window.messages)
    async with fake() as server:
        judgment = await ruler(server).judge(window)
    assert window.messages == before  # untouched
    flat = json.dumps(window.messages)
    assert GROUND_TRUTH_HEADER not in flat and "what the markets actually did" not in flat
    [body] = server.requests
    assert body["model"] == MODEL  # "openai/" added for litellm and stripped again on the wire
    assert body["response_format"]["type"] == "json_schema"
    text = user_text(body)
    context = text.split("<context>", 1)[1].split("</context>", 1)[0]
    gt = window.ground_truth
    assert GROUND_TRUTH_HEADER in context
    stock = gt.stocks[0]
    assert f"{stock.stock_ticker} " in context and f"({float(stock.change_percent):+.2f}%" in context
    assert gt.predictions, "the simulated window resolves at least one prediction market"
    pm = gt.predictions[0]
    assert json.dumps(pm.question)[1:-1] in context and f"-> {pm.outcome}" in context
    assert json.dumps(ground_truth_text(gt))[1:-1] in context
    # Each trajectory's own messages follow the shared context, in order.
    for i, messages in enumerate(window.messages, start=1):
        assert json.dumps(messages[-1]["content"])[1:-1] in text.split(f'<trajectory id="{i}">', 1)[1]
    system = body["messages"][0]["content"]
    assert "JUDGE-ONLY GROUND TRUTH" in system and "Babylon market game" in system
    # Scores map back to the right trajectories (the fake scores trajectory N as 0.1 * N).
    assert [s.trajectory_id for s in judgment.scores] == [t.trajectory_id for t in window.trajectories]
    assert [s.score for s in judgment.scores] == [round(0.1 * i, 3) for i in range(1, 7)]
    assert judgment.scores[2].explanation == "trajectory 3 judged"
    assert judgment.judge == "ruler" and judgment.judge_model == MODEL and judgment.attempts == 1
    assert judgment.cost_usd is None  # litellm has no price for this model
    assert judgment.duration_s > 0
    assert server.headers[0]["Authorization"] == "Bearer sk-test-secret"


async def test_scores_are_clamped(window: JudgeInput) -> None:
    n = len(window.trajectories)
    values = [-0.5, 1.7, 0.4] + [0.5] * (n - 3)
    content = json.dumps({"scores": [
        {"trajectory_id": str(i + 1), "explanation": "x", "score": v} for i, v in enumerate(values)
    ]})
    async with fake(content) as server:
        judgment = await ruler(server).judge(window)
    assert [s.score for s in judgment.scores][:3] == [0.0, 1.0, 0.4]


async def test_malformed_json_is_retried_then_succeeds(window: JudgeInput) -> None:
    fenced = "```json\n" + json.dumps({"scores": []}) + "\n```"
    async with fake("I think trajectory 2 is best.", fenced) as server:
        judgment = await ruler(server).judge(window)
    assert len(server.requests) == 3 and judgment.attempts == 3
    assert [s.score for s in judgment.scores] == [round(0.1 * i, 3) for i in range(1, 7)]


async def test_malformed_http_body_is_retried(window: JudgeInput) -> None:
    async with fake({"object": "chat.completion", "choices": "nope"}, {"unexpected": True}) as server:
        judgment = await ruler(server).judge(window)
    assert judgment.attempts == 3 and len(judgment.scores) == 6


async def test_always_malformed_raises_after_max_attempts_others_succeed() -> None:
    items = [simulated_window(seed=11, n_agents=4, hour=h, steps=4) for h in (10, 11, 12, 13)]
    broken = items[2].window_id
    marker = f"Window {broken} (UTC hour)"
    scores = ruler_scores()

    def reply(body: dict) -> str:
        return '{"scores": [{"trajectory_id": "1", "score": "high"' if marker in user_text(body) else scores(body)

    results = []
    async with JudgeFake(reply) as server:
        out = await judge_windows(ruler(server, max_attempts=3), items, concurrency=2, on_result=results.append)
    assert isinstance(out[2], JudgeError)
    assert out[2].window_id == broken and out[2].attempts == 3
    assert f"window {broken}" in str(out[2]) and "malformed judge output" in str(out[2])
    assert "sk-test-secret" not in str(out[2])
    for i in (0, 1, 3):
        assert not isinstance(out[i], JudgeError) and out[i].window_id == items[i].window_id
        assert len(out[i].scores) == 4
    assert len([b for b in server.requests if marker in user_text(b)]) == 3
    assert sorted(r.window_id for r in results) == sorted(i.window_id for i in items)


async def test_timeout_is_retried_then_judge_error(window: JudgeInput) -> None:
    async with fake(default=held(2.0, ruler_scores())) as server:
        judge = ruler(server, timeout_s=0.3, max_attempts=2)
        started = time.perf_counter()
        with pytest.raises(JudgeError) as info:
            await judge.judge(window)
        elapsed = time.perf_counter() - started
    assert len(server.requests) == 2  # no hidden client retries
    assert info.value.attempts == 2 and "timeout" in str(info.value)
    assert window.window_id in str(info.value)
    assert elapsed < 1.5


async def test_timeout_then_success(window: JudgeInput) -> None:
    async with fake(held(2.0, ruler_scores())) as server:
        judgment = await ruler(server, timeout_s=0.3).judge(window)
    assert judgment.attempts == 2 and len(judgment.scores) == len(window.trajectories)


async def test_server_error_retried_client_error_fails_fast(window: JudgeInput) -> None:
    async with fake(FakeError(503, "overloaded")) as server:
        judgment = await ruler(server).judge(window)
    assert judgment.attempts == 2
    async with fake(default=FakeError(401, "invalid api key", "invalid_request_error")) as server:
        with pytest.raises(JudgeError) as info:
            await ruler(server).judge(window)
    assert info.value.attempts == 1 and len(server.requests) == 1
    assert "401" in str(info.value) and "sk-test-secret" not in str(info.value)


async def test_transport_error_retried_then_judge_error(window: JudgeInput) -> None:
    async with fake() as server:
        url = server.base_url  # nothing listens there once the server is stopped
    judge = RulerJudge(MODEL, base_url=url, api_key=None, max_attempts=2, backoff_s=0.01, timeout_s=2)
    with pytest.raises(JudgeError) as info:
        await judge.judge(window)
    assert info.value.attempts == 2 and "failed after 2 attempt(s)" in str(info.value)


async def test_cost_recorded_when_litellm_prices_the_model(window: JudgeInput) -> None:
    async with fake() as server:
        judgment = await ruler(server, judge_model="openai/gpt-4o-mini").judge(window)
    [body] = server.requests
    assert body["model"] == "gpt-4o-mini"
    # gpt-4o-mini: $0.15 per million prompt tokens, $0.60 per million completion tokens.
    expected = usage_cost(body, ruler_scores()(body), 0.15, 0.60)
    assert judgment.cost_usd == pytest.approx(expected) and judgment.cost_usd > 0


async def test_cost_sums_over_retries(window: JudgeInput) -> None:
    async with fake("nope") as server:
        judgment = await ruler(server, judge_model="openai/gpt-4o-mini").judge(window)
    first, second = server.requests
    assert judgment.attempts == 2
    expected = usage_cost(first, "nope", 0.15, 0.60) + usage_cost(second, ruler_scores()(second), 0.15, 0.60)
    assert judgment.cost_usd == pytest.approx(expected)


async def test_custom_rubric_and_empty_window(window: JudgeInput) -> None:
    async with fake() as server:
        await ruler(server, rubric="- Reward whoever shorted HELX.").judge(window)
        empty = JudgeInput(window_id="2026-01-01T00:00", ground_truth=window.ground_truth.model_copy(),
                           trajectories=[], messages=[])
        nothing = await ruler(server).judge(empty)
    assert "Reward whoever shorted HELX." in server.requests[0]["messages"][0]["content"]
    assert len(server.requests) == 1 and nothing.scores == []
    assert "Babylon" in TRADING_RUBRIC


def test_repr_hides_key_and_model_prefixing() -> None:
    judge = RulerJudge("Qwen/Qwen3-8B", base_url="http://127.0.0.1:9/v1", api_key="sk-abc")
    assert "sk-abc" not in repr(judge)
    assert judge.litellm_model() == "openai/Qwen/Qwen3-8B"
    assert RulerJudge("hosted_vllm/x", base_url="http://127.0.0.1:9/v1").litellm_model() == "hosted_vllm/x"
    assert RulerJudge("openai/o4-mini", base_url=None).litellm_model() == "openai/o4-mini"
    assert RulerJudge("m", base_url="http://127.0.0.1:9/v1").litellm_params()["api_key"] == "EMPTY"
    with pytest.raises(ValueError):
        RulerJudge("m", max_attempts=0)


def test_importing_judges_does_not_import_art_or_litellm() -> None:
    code = (
        "import sys, babylon_console.core.training.judges as j; "
        "j.RulerJudge('m'); j.OutcomeJudge(); "
        "print(sorted(m for m in ('art', 'litellm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
