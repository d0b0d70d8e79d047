"""The gateway's faults, each with its error: a bad upstream, bad requests, a client that leaves
mid-stream, a database outage, missing keys. None of them stops the gateway."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import web

from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.db.connections import with_database
from babylon_console.core.errors import InvalidInput
from babylon_console.core.gateway.server import check_bind
from tests.fake_openai import FakeError, FakeOpenAI, serve_chat_route

from .conftest import StartGateway, add_checkpoint, gateway_settings

PATH = "local-lora:///ck/m1?base=Qwen/Qwen3-4B"
ASK = {"model": "babylon-agent", "messages": [{"role": "user", "content": "hi"}]}


async def _live(pool: asyncpg.Pool) -> None:
    await add_checkpoint(pool, "m1", PATH)
    await Registry(pool).promote("m1", operator="test")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_upstream_that_refuses_answers_5xx_or_times_out_gives_502_or_504_naming_it_counted_per_arm(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _live(pool)
    refused_url = f"http://127.0.0.1:{_closed_port()}/v1"
    server, client = await start_gateway(local_inference_url=refused_url, local_inference_api_key="sk-upstream-secret")
    refused = await client.post("/v1/chat/completions", json=ASK)
    text = await refused.text()
    assert refused.status == 502 and f"{PATH} at {refused_url}" in text and "sk-upstream-secret" not in text
    assert refused.headers["X-Babylon-Arm"] == "live"

    async with FakeOpenAI([FakeError(503, "overloaded")]) as fake:
        _, client = await start_gateway(local_inference_url=fake.base_url)
        failed = await client.post("/v1/chat/completions", json=ASK)
        error = (await failed.json())["error"]
    assert failed.status == 502 and "HTTP 503: overloaded" in error["message"] and fake.base_url in error["message"]

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    runner, slow_url = await serve_chat_route(slow)
    try:
        _, client = await start_gateway(local_inference_url=slow_url, gateway_timeout_s=0.3)
        timed_out = await client.post("/v1/chat/completions", json=ASK)
        error = (await timed_out.json())["error"]
    finally:
        await runner.cleanup()
    assert timed_out.status == 504 and "within 0.3 s" in error["message"] and slow_url in error["message"]
    assert server.gateway.stats["live"] == {"requests": 1, "errors": 1, "upstream_errors": 1}
    await server.calllog.stop()
    logged = await pool.fetchval("SELECT error FROM console_gateway_calls WHERE status = 502 LIMIT 1")
    assert "sk-upstream-secret" not in logged


async def test_malformed_json_gets_400_and_a_body_over_the_limit_413(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _live(pool)
    async with FakeOpenAI(default="ok") as fake:
        _, client = await start_gateway(local_inference_url=fake.base_url, gateway_max_body_bytes=2048)
        bad = await client.post("/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"})
        huge = {**ASK, "messages": [{"role": "user", "content": "x" * 4096}]}
        big = await client.post("/v1/chat/completions", json=huge)
        fine = await client.post("/v1/chat/completions", json=ASK)
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_json"
    assert big.status == 413 and "2048 bytes" in (await big.json())["error"]["message"]
    assert fine.status == 200 and len(fake.requests) == 1


async def test_a_client_that_leaves_mid_stream_cancels_the_upstream_request(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _live(pool)
    cancelled = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n')
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):  # the gateway closed its upstream connection
            cancelled.set()
            raise

    runner, url = await serve_chat_route(endless)
    try:
        server, client = await start_gateway(local_inference_url=url)
        resp = await client.post("/v1/chat/completions", json={**ASK, "stream": True})
        assert (await resp.content.readline()).startswith(b"data: ")
        resp.close()  # the client goes away
        await asyncio.wait_for(cancelled.wait(), 3)
    finally:
        await runner.cleanup()
    await server.calllog.stop()
    assert await pool.fetchval("SELECT status FROM console_gateway_calls") == 499


async def test_a_database_outage_keeps_the_last_routing_table_and_buffers_the_log_counting_drops(
        pool: asyncpg.Pool, database_url: str, start_gateway: StartGateway) -> None:
    await _live(pool)
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(with_database(database_url, "postgres"))
    own = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with FakeOpenAI(default="HOLD") as fake:
            server, client = await start_gateway(local_inference_url=fake.base_url, gateway_pool=own)
            server.calllog.max_buffered = 3
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            assert not await server.follower.refresh()
            health = await (await client.get("/healthz")).json()
            answers = [await client.post("/v1/chat/completions", json=ASK) for _ in range(5)]
            assert [a.headers["X-Babylon-Checkpoint"] for a in answers] == ["m1"] * 5  # served from memory
            assert not await server.calllog.flush()
            assert (len(server.calllog.buffer), server.calllog.dropped) == (3, 2)
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert await server.follower.refresh() and await server.calllog.flush()
            healthy = await (await client.get("/healthz")).json()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert health["status"] == "degraded" and health["routing"].startswith("routing from memory since ")
    assert health["live"] == "m1"
    assert healthy["routing"] == "database" and healthy["call_log"]["dropped"] == 2
    assert await own.fetchval("SELECT count(*) FROM console_gateway_calls") == 3
    await own.close()


async def test_keys_are_required_when_set_and_without_keys_only_loopback_is_served(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _live(pool)
    async with FakeOpenAI(default="ok") as fake:
        _, client = await start_gateway(local_inference_url=fake.base_url, gateway_keys="k-one, k-two")
        missing = await client.post("/v1/chat/completions", json=ASK)
        wrong = await client.post("/v1/chat/completions", json=ASK, headers={"Authorization": "Bearer k-three"})
        right = await client.post("/v1/chat/completions", json=ASK, headers={"Authorization": "Bearer k-two"})
        models = await client.get("/v1/models")
        health = await client.get("/healthz")  # for load balancers: no key, no secret in it
        assert "k-one" not in await health.text()
    assert (missing.status, wrong.status, right.status, models.status, health.status) == (401, 401, 200, 401, 200)
    assert (await wrong.json())["error"]["code"] == "invalid_api_key"
    assert "k-two" not in str(fake.headers[0].get("Authorization"))
    with pytest.raises(InvalidInput, match="BABYLON_GATEWAY_KEYS"):
        check_bind("0.0.0.0", gateway_settings())
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, gateway_settings())
    check_bind("0.0.0.0", gateway_settings(gateway_keys="k"))


async def test_an_offline_checkpoint_is_answered_by_its_stand_in_policy_labelled_as_one(
        pool: asyncpg.Pool, start_gateway: StartGateway, tmp_path: Path) -> None:
    from babylon_console.core.sim.policy import LinearSoftmaxPolicy
    from babylon_console.core.training.backends.factory import checkpoint_root
    from babylon_console.core.training.backends.offline import POLICY_FILE, OfflineBackend

    data_dir = tmp_path / "gw-data"
    backend = OfflineBackend(checkpoint_root(data_dir, "offline"))
    LinearSoftmaxPolicy.zeros().save(backend.run_dir("p", "r") / "checkpoints" / "0001" / POLICY_FILE)
    await add_checkpoint(pool, "off1", "offline://p/r:step1")
    await Registry(pool).promote("off1", operator="test")
    _, client = await start_gateway(data_dir=data_dir)
    plain = await client.post("/v1/chat/completions", json=ASK)
    streamed = await client.post("/v1/chat/completions", json={**ASK, "stream": True})
    lines = [line async for line in streamed.content if line.strip()]
    body = await plain.json()
    assert plain.status == 200 and plain.headers["X-Babylon-Checkpoint"] == "off1"
    assert "stand-in" in plain.headers["X-Babylon-Upstream"]
    assert body["model"] == "off1" and body["system_fingerprint"] == "babylon-offline-standin"
    assert streamed.status == 200 and lines[-1] == b"data: [DONE]\n"


async def test_an_upstream_that_echoes_its_key_in_a_refusal_never_gets_it_into_the_answer_or_the_log(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    """A 4xx is passed on as the upstream said it, and its words are logged: the key it echoes is
    scrubbed from both, plain and streamed (the log kept it)."""
    await _live(pool)
    key = "sk-upstream-secret-echoed"

    async def refuses(request: web.Request) -> web.Response:
        sent = request.headers["Authorization"].removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"Incorrect API key provided: {sent}"}}, status=401)

    runner, url = await serve_chat_route(refuses)
    try:
        server, client = await start_gateway(local_inference_url=url, local_inference_api_key=key)
        for stream in (False, True):
            answer = await client.post("/v1/chat/completions", json={**ASK, "stream": stream})
            text = await answer.text()
            assert answer.status == 401 and "Incorrect API key provided" in text and key not in text
    finally:
        await runner.cleanup()
    await server.calllog.stop()
    logged = [r["error"] for r in await pool.fetch("SELECT error FROM console_gateway_calls")]
    assert len(logged) == 2 and all("Incorrect API key provided" in e and key not in e for e in logged), logged


async def test_an_odd_event_in_a_stream_is_passed_on_without_breaking_it(
        pool: asyncpg.Pool, start_gateway: StartGateway) -> None:
    await _live(pool)

    async def odd(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"model": "x", "choices": 3}\n\n')  # not a list
        await resp.write(b'data: {"model": "x", "choices": [{"delta": {"content": "HOLD"}}]}\n\ndata: [DONE]\n\n')
        return resp

    runner, url = await serve_chat_route(odd)
    try:
        _, client = await start_gateway(local_inference_url=url)
        answer = await client.post("/v1/chat/completions", json={**ASK, "stream": True})
        events = [line async for line in answer.content if line.strip()]
    finally:
        await runner.cleanup()
    assert answer.status == 200 and events[-1] == b"data: [DONE]\n" and len(events) == 3


async def test_stopping_the_call_log_mid_write_loses_no_row_and_writes_none_twice(pool: asyncpg.Pool) -> None:
    """The writer was cancelled in the middle of its COPY: the batch it had taken from the buffer was
    neither written nor put back nor counted (the last calls of a demo or `seed --live`)."""
    from datetime import datetime

    from babylon_console.core.gateway.calllog import CallLog, CallRow

    class SlowCopies:
        def __init__(self, real: asyncpg.Pool) -> None:
            self.real, self.copying = real, asyncio.Event()

        async def copy_records_to_table(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.copying.set()
            await asyncio.sleep(0.3)
            return await self.real.copy_records_to_table(*args, **kwargs)

    slow = SlowCopies(pool)
    calllog = CallLog(slow, retention_days=1, flush_s=0.01)  # type: ignore[arg-type]
    calllog._last_purge = asyncio.get_running_loop().time()  # no purge in this test
    for n in range(5):
        calllog.add(CallRow(at=datetime.now().astimezone(), gateway_id="g", agent=f"a{n}", rollout_id=None,
                            arm="live", model_id="m1", upstream="u", status=200, latency_ms=1.0))
    calllog.start()
    await asyncio.wait_for(slow.copying.wait(), 5)
    await calllog.stop()
    assert await pool.fetchval("SELECT count(*) FROM console_gateway_calls") == 5
    assert (calllog.written, calllog.dropped, len(calllog.buffer)) == (5, 0, 0)
