from __future__ import annotations

import asyncio

import asyncpg

from babylon_console.core import events
from babylon_console.core.events import EventBus, EventKind


async def test_follow_replays_in_order_then_streams_live(pool: asyncpg.Pool, database_url: str) -> None:
    first = await events.emit(pool, EventKind.RUN_STARTED, {"message": "go"}, run_id="r1")
    for i in range(5):
        await events.emit(pool, EventKind.STEP_TRAINED, {"step": i, "metrics": {"loss/train": 0.1 * i}}, "r1")
    bus = EventBus(database_url)
    seen: list[events.Event] = []

    async def consume() -> None:
        async for event in bus.follow(after_id=first.id):
            seen.append(event)
            if len(seen) == 8:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    # Emitted from "another process": a separate connection, concurrently.
    other = await asyncpg.connect(database_url)
    try:
        await asyncio.gather(*(events.emit(other if i == 0 else pool, EventKind.WARNING, {"message": f"w{i}"})
                               for i in range(3)))
    finally:
        await other.close()
    await asyncio.wait_for(task, 10)
    ids = [e.id for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == 8
    assert [e.kind for e in seen[:5]] == [EventKind.STEP_TRAINED] * 5
    assert [e.payload["step"] for e in seen[:5]] == [0, 1, 2, 3, 4]
    assert "step 4 trained: loss 0.4000" in seen[4].summary


async def test_resume_from_an_event_id_and_run_filter(pool: asyncpg.Pool, database_url: str) -> None:
    emitted = [await events.emit(pool, EventKind.WARNING, {"message": str(i)}, run_id=f"r{i % 2}") for i in range(6)]
    bus = EventBus(database_url)
    got: list[str] = []
    async for event in bus.follow(after_id=emitted[2].id, run_id="r1"):
        got.append(event.payload["message"])
        if len(got) == 2:
            break
    assert got == ["3", "5"]


async def test_event_commits_with_the_transaction_it_reports(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await events.emit(conn, EventKind.ERROR, {"message": "rolled back"})
                raise RuntimeError("abort")
        except RuntimeError:
            pass
    assert await events.last_event_id(pool) == 0
