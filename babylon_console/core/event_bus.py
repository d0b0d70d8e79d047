"""Following events across processes: a dedicated LISTEN connection that first replays what a
follower missed (`core.events.fetch_after`) and then waits for the NOTIFY each emit sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .events import CHANNEL, Event, fetch_after, last_event_id

POLL_FALLBACK_S = 2.0  # a follower also polls, in case a notification is lost on reconnect


class EventBus:
    """Follow events of any process through a dedicated LISTEN connection."""

    BATCH = 1000

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def follow_batches(
        self, after_id: int | None = None, run_id: str | None = None, coalesce_s: float = 0.0
    ) -> AsyncIterator[list[Event]]:
        """Batches of events with id > after_id (None: only new ones), in id order, forever.

        After a wake-up it waits `coalesce_s` before reading, so a burst of notifications costs one
        query (a console at 500 events/s reads a few batches a second, not 500 rows one by one).
        Raises ConnectionError when the connection is lost, so the caller can reconnect."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=10)
        wake = asyncio.Event()
        conn.add_termination_listener(lambda *_: wake.set())
        await conn.add_listener(CHANNEL, lambda *_: wake.set())
        try:
            last = await last_event_id(conn) if after_id is None else after_id
            while True:
                wake.clear()
                batch = await fetch_after(conn, last, limit=self.BATCH, run_id=run_id)
                if batch:
                    last = batch[-1].id or last
                    yield batch
                if len(batch) == self.BATCH:
                    continue  # more to replay
                if conn.is_closed():
                    raise ConnectionError("the event connection was closed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_FALLBACK_S)
                if coalesce_s > 0:
                    await asyncio.sleep(coalesce_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def follow(self, after_id: int | None = None, run_id: str | None = None) -> AsyncIterator[Event]:
        """Events one by one (see follow_batches)."""
        async for batch in self.follow_batches(after_id, run_id):
            for event in batch:
                yield event
