"""Endpoint agents against the fake OpenAI-compatible server on 127.0.0.1, and the fake itself."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI

from babylon_console.core.sim import AsyncPolicy, EndpointPolicy, Observation, Simulation
from tests.fake_openai import FakeError, FakeOpenAI

START = datetime(2026, 11, 23, 14)


def trader_reply(body: dict[str, Any]) -> str:
    """What a sensible LLM would answer: read the state from the prompt, buy the top mover."""
    obs = Observation.from_prompt(body["messages"][-1]["content"])
    assert obs is not None
    if obs.positions:
        return '{"action": {"actionType": "HOLD", "parameters": {}}, "reasoning": "let it run"}'
    q = max(obs.stocks, key=lambda q: abs(q.momentum))
    side = "OPEN_LONG" if q.momentum >= 0 else "OPEN_SHORT"
    return (
        f"{q.ticker} is the strongest mover.\n"
        f'{{"action": {{"actionType": "{side}", "parameters": {{"ticker": "{q.ticker}", "size": 150}}}}, '
        f'"reasoning": "momentum {q.momentum:+.1f}"}}'
    )


def endpoint(fake: FakeOpenAI, **kw: Any) -> EndpointPolicy:
    return EndpointPolicy("fake-trader-7b", fake.base_url, api_key="test-key", timeout=5, max_retries=0, **kw)


async def test_endpoint_agent_produces_valid_trajectories() -> None:
    async with FakeOpenAI(trader_reply, latency=0.02) as fake:
        sim = Simulation(seed=3, n_agents=4, steps_per_window=6)
        policy = endpoint(fake, temperature=0.3, max_tokens=128)
        assert isinstance(policy, AsyncPolicy)
        sim.set_policy(0, policy)
        sim.set_policy(2, policy)
        r = await sim.simulate_window_async(START)
        await policy.aclose()
    assert len(fake.requests) == 2 * 6
    assert fake.headers[0]["Authorization"] == "Bearer test-key"
    by_agent = {t[2]: t for t in r.trajectories}
    for i in (0, 2):
        agent = sim.agents[i]
        t = by_agent[agent.agent_id]
        steps = orjson.loads(t[11])
        assert len(steps) == 6
        assert steps[0]["action"]["actionType"] in ("OPEN_LONG", "OPEN_SHORT")
        assert all(s["action"]["success"] for s in steps)
        assert t[20] == 1  # tradesExecuted: one open, then holds
        calls = [c for c in r.llm_calls if c[1] == t[1]]
        for c, s in zip(calls, steps, strict=True):
            assert c[6] == "fake-trader-7b" and s["llmCalls"][0]["model"] == "fake-trader-7b"
            assert c[5] >= 20  # the measured latency, in ms
            assert c[14] == 0.3 and c[15] == 128
            assert c[17] is not None and c[17] > 0  # usage reported by the server
        # What was sent is exactly what was recorded, and what came back is recorded verbatim.
        sent = [b for b in fake.requests if b["messages"][0]["content"] == agent.system_prompt]
        assert [b["messages"][1]["content"] for b in sent] == [c[10] for c in calls]
        assert [trader_reply(b) for b in sent] == [c[12] for c in calls]
        assert all(b["model"] == "fake-trader-7b" and b["temperature"] == 0.3 for b in sent)
    # Scripted agents in the same window are recorded as usual.
    assert orjson.loads(by_agent[sim.agents[1].agent_id][14])["policy"] == sim.agents[1].strategy


async def test_garbage_from_the_endpoint_is_recorded_as_failed_actions() -> None:
    replies = [
        "I think the market will go up!",
        '{"action": {"actionType": "FLY_TO_MOON", "parameters": {}}}',
        '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "ZZZZ", "size": 10}}, '
        '"reasoning": "?"}',
        '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": 10',
        FakeError(500, "upstream exploded"),
        {"id": "x", "object": "chat.completion", "choices": []},
    ]
    async with FakeOpenAI(replies) as fake:
        sim = Simulation(seed=3, n_agents=2, steps_per_window=6)
        sim.set_policy(1, endpoint(fake))
        r = await sim.simulate_window_async(START)
    t = r.trajectories[1]
    steps = orjson.loads(t[11])
    errors = [s["action"]["error"] for s in steps]
    assert all(s["action"]["success"] is False for s in steps)
    assert "no JSON object" in errors[0]
    assert "unknown actionType 'FLY_TO_MOON'" in errors[1]
    assert steps[1]["action"]["actionType"] == "FLY_TO_MOON"
    assert "unknown ticker 'ZZZZ'" in errors[2] and steps[2]["action"]["parameters"] == {
        "ticker": "ZZZZ",
        "size": 10,
    }
    assert "invalid JSON" in errors[3]
    assert "endpoint error" in errors[4] and "500" in errors[4] and "test-key" not in errors[4]
    assert "empty response" in errors[5]
    # The raw text is recorded as the response; the portfolio treated every step as HOLD.
    assert steps[0]["llmCalls"][0]["response"] == "I think the market will go up!"
    assert t[18] == 1000.0 and t[19] == 0.0 and t[20] == 0  # finalBalance, finalPnL, tradesExecuted
    assert orjson.loads(t[13])["errorCount"] == 6
    assert r.stats[1].errors == 6


async def test_unreachable_endpoint_is_a_failed_step_not_a_crash() -> None:
    async with FakeOpenAI() as fake:
        url = fake.base_url
    sim = Simulation(seed=3, n_agents=1, steps_per_window=2)
    sim.set_policy(0, EndpointPolicy("m", url, timeout=2, max_retries=0))
    r = await sim.simulate_window_async(START)
    steps = orjson.loads(r.trajectories[0][11])
    assert all(not s["action"]["success"] and "endpoint error" in s["action"]["error"] for s in steps)


async def test_sync_simulation_refuses_async_policies(fake_openai: FakeOpenAI) -> None:
    sim = Simulation(seed=1, n_agents=1, steps_per_window=2)
    sim.set_policy(0, endpoint(fake_openai))
    with pytest.raises(TypeError, match="simulate_window_async"):
        sim.simulate_window(START)
    assert fake_openai.requests == []
    # The refusal did not move the market: the same hour can still be simulated.
    r = await sim.simulate_window_async(START)
    assert len(fake_openai.requests) == 2  # nothing scripted: HTTP 500s, recorded as failed steps
    assert r.stats[0].errors == 2


# -- the fake server ----------------------------------------------------------------------------


async def test_fake_openai_scripts_replies_and_records_requests() -> None:
    async def slow_echo(body: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "echo: " + body["messages"][-1]["content"]

    async with FakeOpenAI(["first", slow_echo, FakeError(429, "slow down", "rate_limit_error")]) as fake:
        assert fake.base_url.startswith("http://127.0.0.1:")
        client = AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        msgs = [{"role": "user", "content": "hi"}]
        r1 = await client.chat.completions.create(model="m1", messages=msgs)  # type: ignore[arg-type]
        r2 = await client.chat.completions.create(model="m2", messages=msgs)  # type: ignore[arg-type]
        assert r1.choices[0].message.content == "first" and r1.model == "m1"
        assert r2.choices[0].message.content == "echo: hi"
        assert (
            r1.usage is not None
            and r1.usage.total_tokens == r1.usage.prompt_tokens + r1.usage.completion_tokens
        )
        with pytest.raises(Exception, match="slow down") as exc:
            await client.chat.completions.create(model="m3", messages=msgs)  # type: ignore[arg-type]
        assert getattr(exc.value, "status_code", None) == 429
        with pytest.raises(Exception, match="no scripted reply left"):
            await client.chat.completions.create(model="m4", messages=msgs)  # type: ignore[arg-type]
        fake.push("later")
        assert fake.pending == 1
        r5 = await client.chat.completions.create(model="m5", messages=msgs)  # type: ignore[arg-type]
        assert r5.choices[0].message.content == "later"
        models = await client.models.list()
        assert [m.id for m in models.data] == ["fake-model"]
        await client.close()
    assert [b["model"] for b in fake.requests] == ["m1", "m2", "m3", "m4", "m5"]


async def test_fake_openai_latency_and_default_reply() -> None:
    async with FakeOpenAI(default="always", latency=0.05, model="served-name") as fake:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        rs = await asyncio.gather(
            *(
                client.chat.completions.create(model="x", messages=[{"role": "user", "content": str(i)}])
                for i in range(5)
            )
        )
        elapsed = loop.time() - t0
        await client.close()
    assert all(r.choices[0].message.content == "always" and r.model == "served-name" for r in rs)
    assert 0.05 <= elapsed < 1.0  # requests wait concurrently
    assert sorted(b["messages"][0]["content"] for b in fake.requests) == ["0", "1", "2", "3", "4"]
