"""The gateway routes by the registry: the alias to the live model or, during an A/B rollout, to the
candidate for a sticky share of agents; checkpoints by name; the base model or a 503 with nothing live."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter

import asyncpg
import orjson
from aiohttp import web

from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.gateway.routing import agent_identity, on_candidate
from tests.fake_openai import FakeOpenAI, serve_chat_route

from .conftest import StartGateway, add_checkpoint

LIVE_PATH = "local-lora:///ck/m1?base=Qwen/Qwen3-4B"
CAND_PATH = "local-lora:///ck/m2?base=Qwen/Qwen3-4B"


async def _two_checkpoints(pool: asyncpg.Pool) -> Registry:
    await add_checkpoint(pool, "m1", LIVE_PATH)
    await add_checkpoint(pool, "m2", CAND_PATH)
    registry = Registry(pool)
    await registry.promote("m1", operator="test")
    return registry


def _ask(agent: str | None = None, model: str = "babylon-agent", **body: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "system", "content": "You are trader " + str(agent)},
                                         {"role": "user", "content": "what now?"}], **body}


async def test_the_alias_is_served_by_the_live_checkpoint_and_every_call_is_logged(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _two_checkpoints(pool)
    async with FakeOpenAI(default="BUY AAPL 10") as fake:
        server, client = await start_gateway(local_inference_url=fake.base_url)
        resp = await client.post("/v1/chat/completions", json=_ask(), headers={"X-Agent-Id": "agent-7"})
        body = await resp.json()
    assert resp.status == 200, body
    assert resp.headers["X-Babylon-Checkpoint"] == "m1" and resp.headers["X-Babylon-Arm"] == "live"
    assert body["model"] == "m1" and body["choices"][0]["message"]["content"] == "BUY AAPL 10"
    assert fake.requests[0]["model"] == LIVE_PATH  # the checkpoint's served name, upstream
    await server.calllog.stop()
    row = await pool.fetchrow("SELECT * FROM console_gateway_calls")
    assert (row["agent"], row["arm"], row["model_id"], row["status"]) == ("agent-7", "live", "m1", 200)
    assert row["response_sha256"] == hashlib.sha256(b"BUY AAPL 10").hexdigest()
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["latency_ms"] > 0
    assert LIVE_PATH in row["upstream"] and row["rollout_id"] is None


async def test_a_30_percent_rollout_sends_about_30_percent_of_agents_to_the_candidate_each_always_the_same(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    registry = await _two_checkpoints(pool)
    first = await registry.promote("m2", share=0.3, operator="test")
    async with FakeOpenAI(default="HOLD") as fake:
        server, client = await start_gateway(local_inference_url=fake.base_url)
        agents = [f"agent-{i}" for i in range(200)]

        async def arms() -> dict[str, str]:
            seen: dict[str, str] = {}
            for n, agent in enumerate(agents):  # identity from the header, the body's user, or the system prompt
                how = n % 3
                resp = await client.post("/v1/chat/completions",
                                         json=_ask(agent, **({"user": agent} if how == 1 else {})),
                                         headers={"X-Agent-Id": agent} if how == 0 else {})
                assert resp.status == 200
                seen[agent] = resp.headers["X-Babylon-Arm"]
                assert resp.headers["X-Babylon-Checkpoint"] == ("m2" if seen[agent] == "candidate" else "m1")
            return seen

        once, again = await arms(), await arms()
        assert once == again  # sticky: every agent on the same arm for the whole rollout
        on_candidate = Counter(once.values())["candidate"]
        assert 40 <= on_candidate <= 80, on_candidate  # 30% of 200 = 60 (binomial sd 6.5)
        second = await registry.promote("m2", share=0.3, operator="test")  # a new rollout reshuffles
        assert second.rollout_id != first.rollout_id
        await server.follower.refresh()
        reshuffled = await arms()
    assert 40 <= Counter(reshuffled.values())["candidate"] <= 80
    assert sum(once[a] != reshuffled[a] for a in agents) > 20


async def test_a_rollback_moves_every_agent_to_the_live_model_within_a_second(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    registry = await _two_checkpoints(pool)
    await registry.promote("m2", share=0.5, operator="test")
    async with FakeOpenAI(default="HOLD") as fake:
        # no periodic re-read during the test: only the registry's notification can move the table
        server, client = await start_gateway(local_inference_url=fake.base_url, refresh_s=60)
        await asyncio.sleep(0.2)  # the LISTEN connection is up
        rollout_id = server.follower.table.rollout_id
        assert rollout_id is not None
        agent = next(f"a{i}" for i in range(100) if on_candidate(f"a{i}", rollout_id, 0.5))
        await registry.rollback(operator="test")
        committed = time.monotonic()
        arm = "candidate"
        while arm == "candidate" and time.monotonic() - committed < 2:  # the agent's requests until it moves
            resp = await client.post("/v1/chat/completions", json=_ask(), headers={"X-Agent-Id": agent})
            arm = resp.headers["X-Babylon-Arm"]
        switch_s = time.monotonic() - committed
        arms: Counter[tuple[str, str]] = Counter()
        for i in range(200):
            resp = await client.post("/v1/chat/completions", json=_ask(), headers={"X-Agent-Id": f"a{i}"})
            arms[(resp.headers["X-Babylon-Arm"], resp.headers["X-Babylon-Checkpoint"])] += 1
    assert switch_s < 1.0, switch_s
    assert arms == {("live", "m1"): 200}


def test_an_agents_identity_is_its_header_else_the_user_else_its_system_prompt() -> None:
    body = {"user": "u1", "messages": [{"role": "system", "content": "I am Alice"}]}
    assert agent_identity("h1", body) == "h1"
    assert agent_identity(None, body) == "u1"
    alice = agent_identity(None, {"messages": body["messages"]})
    assert alice.startswith("system:") and alice == agent_identity("  ", {"user": "", **{"messages": body["messages"]}})
    assert alice != agent_identity(None, {"messages": [{"role": "system", "content": "I am Bob"}]})
    assert on_candidate("a", 1, 1.0) and not on_candidate("a", 1, 0.0)


async def test_a_checkpoint_named_by_model_id_or_storage_path_is_pinned_and_other_names_get_404(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _two_checkpoints(pool)
    async with FakeOpenAI(default="SELL") as fake:
        _, client = await start_gateway(local_inference_url=fake.base_url)
        for name in ("m2", CAND_PATH):
            resp = await client.post("/v1/chat/completions", json=_ask(model=name))
            assert resp.status == 200
            assert (resp.headers["X-Babylon-Arm"], resp.headers["X-Babylon-Checkpoint"]) == ("pinned", "m2")
            assert (await resp.json())["model"] == "m2"
        missing = await client.post("/v1/chat/completions", json=_ask(model="gpt-4o"))
        listed = await (await client.get("/v1/models")).json()
    error = (await missing.json())["error"]
    assert missing.status == 404 and error["code"] == "model_not_found" and "gpt-4o" in error["message"]
    assert [m["id"] for m in listed["data"]] == ["babylon-agent", "m2", "m1"]  # the alias, then newest first
    assert [r["model"] for r in fake.requests] == [CAND_PATH, CAND_PATH]


async def test_with_nothing_live_the_alias_is_the_base_model_if_served_else_a_503_that_says_what_to_do(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    _, bare = await start_gateway()
    refused = await bare.post("/v1/chat/completions", json=_ask())
    error = (await refused.json())["error"]
    assert refused.status == 503 and "models promote" in error["message"]
    assert "BABYLON_LOCAL_INFERENCE_URL" in error["message"]
    async with FakeOpenAI(default="HOLD") as fake:
        _, client = await start_gateway(local_inference_url=fake.base_url, base_model="Qwen/Qwen3-4B")
        resp = await client.post("/v1/chat/completions", json=_ask())
    assert resp.status == 200 and resp.headers["X-Babylon-Arm"] == "base"
    assert resp.headers["X-Babylon-Checkpoint"] == "Qwen/Qwen3-4B" and fake.requests[0]["model"] == "Qwen/Qwen3-4B"


async def test_a_stream_is_passed_on_chunk_by_chunk_naming_the_checkpoint(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _two_checkpoints(pool)

    async def sse(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in ("BUY ", "AAPL"):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await asyncio.sleep(0.05)
        usage = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "choices": [],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}
        await resp.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
        return resp

    runner, base_url = await serve_chat_route(sse)
    try:
        server, client = await start_gateway(local_inference_url=base_url)
        resp = await client.post("/v1/chat/completions", json=_ask(stream=True), headers={"X-Agent-Id": "s1"})
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Babylon-Checkpoint"] == "m1"
        events = [line async for line in resp.content if line.strip()]
    finally:
        await runner.cleanup()
    assert events[-1] == b"data: [DONE]\n"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert {c["model"] for c in chunks} == {"m1"}
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == "BUY AAPL"
    await server.calllog.stop()
    row = await pool.fetchrow("SELECT * FROM console_gateway_calls")
    assert row["response_sha256"] == hashlib.sha256(b"BUY AAPL").hexdigest()
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (9, 2, 200)
