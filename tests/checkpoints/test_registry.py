from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
import pytest

from babylon_console.core.checkpoints.registry import Registry, RegistryError


async def _add_model(pool: asyncpg.Pool, model_id: str, status: str = "registered") -> None:
    now = datetime(2026, 11, 24)
    await pool.execute(
        """INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "avgReward",
           "createdAt", "updatedAt") VALUES ($1, $1, 'v', 'base', $2, $3, 0.5, $4, $4)""",
        model_id, status, f"offline://p/r:{model_id}", now,
    )


async def _deployed(pool: asyncpg.Pool) -> list[str]:
    return [r[0] for r in await pool.fetch("""SELECT "modelId" FROM trained_models WHERE status = 'deployed'""")]


async def test_promote_archives_previous_and_audits(pool: asyncpg.Pool) -> None:
    for m in ("m1", "m2"):
        await _add_model(pool, m)
    registry = Registry(pool)
    first = await registry.promote("m1", operator="alice")
    assert first.from_model_id is None and await _deployed(pool) == ["m1"]
    second = await registry.promote("m2", operator="bob", note="better reward")
    assert second.from_model_id == "m1" and await _deployed(pool) == ["m2"]
    statuses = dict(await pool.fetch('SELECT "modelId", status FROM trained_models'))
    assert statuses == {"m1": "archived", "m2": "deployed"}
    audit = await registry.audit()
    assert [(a.action, a.operator, a.from_model_id, a.to_model_id) for a in audit] == [
        ("promote", "bob", "m1", "m2"), ("promote", "alice", None, "m1")]
    kinds = [r[0] for r in await pool.fetch("SELECT kind FROM console_events ORDER BY id")]
    assert kinds == ["promoted", "promoted"]


async def test_ab_rollout_then_rollback_and_serving_view(pool: asyncpg.Pool) -> None:
    for m in ("m1", "m2"):
        await _add_model(pool, m)
    registry = Registry(pool)
    await registry.promote("m1", operator="a")
    result = await registry.promote("m2", share=0.25, operator="a")
    assert result.action == "rollout" and await _deployed(pool) == ["m1"]
    serving = {r["model_id"]: (r["role"], r["share"]) for r in await pool.fetch("SELECT * FROM console_serving")}
    assert serving == {"m1": ("live", 0.75), "m2": ("candidate", 0.25)}
    back = await registry.rollback(operator="b")
    assert "cancelled" in back.message and await registry.rollout() is None
    await registry.promote("m2", operator="a")
    back = await registry.rollback(operator="b")
    assert back.to_model_id == "m1" and await _deployed(pool) == ["m1"]


async def test_refusals_change_nothing(pool: asyncpg.Pool) -> None:
    await _add_model(pool, "m1")
    await _add_model(pool, "bad", status="failed")
    registry = Registry(pool)
    with pytest.raises(RegistryError, match="status is 'failed'"):
        await registry.promote("bad", operator="a")
    with pytest.raises(RegistryError, match="no checkpoint"):
        await registry.promote("nope", operator="a")
    with pytest.raises(RegistryError, match="share must be"):
        await registry.promote("m1", share=0, operator="a")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        await registry.rollback(operator="a")
    await registry.promote("m1", operator="a")
    with pytest.raises(RegistryError, match="already live"):
        await registry.promote("m1", operator="a")
    assert len(await registry.audit()) == 1


async def test_two_concurrent_promoters_keep_one_deployed(pool: asyncpg.Pool, database_url: str) -> None:
    models = [f"m{i}" for i in range(6)]
    for m in models:
        await _add_model(pool, m)
    violations: list[int] = []

    async def watcher(stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                n = await conn.fetchval("SELECT count(*) FROM trained_models WHERE status = 'deployed'")
                if n > 1:
                    violations.append(n)
                await asyncio.sleep(0)
        finally:
            await conn.close()

    async def promoter(name: str, offset: int) -> int:
        own_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        assert own_pool is not None
        registry, done = Registry(own_pool), 0
        try:
            for i in range(100):
                try:
                    await registry.promote(models[(i + offset) % len(models)], operator=name)
                    done += 1
                except RegistryError:
                    pass  # the other promoter made it live first
        finally:
            await own_pool.close()
        return done

    stop = asyncio.Event()
    watch = asyncio.create_task(watcher(stop))
    done = await asyncio.gather(promoter("p1", 0), promoter("p2", 3))
    stop.set()
    await watch
    assert violations == []
    assert len(await _deployed(pool)) == 1
    audit_count = await pool.fetchval("SELECT count(*) FROM console_promotions")
    assert audit_count == sum(done) and sum(done) > 100
