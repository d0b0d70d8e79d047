"""Typed engine events: written to `console_events`, announced with NOTIFY, read back in order.

Every stage of the engine emits events; a console in another process (or on another machine)
follows them with `EventBus.follow(after_id=...)`, which first replays what it missed and then
waits for notifications. The embedded engine uses the same path, so there is one way to watch.

Ordering: emits take a transaction-level advisory lock, so ids commit in increasing order and a
follower that reads "id > last" never skips an event committed late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

CHANNEL = "babylon_console_events"
_EMIT_LOCK = 0x6576_656E_7473  # "events"
POLL_FALLBACK_S = 2.0  # a follower also polls, in case a notification is lost on reconnect


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_STOPPED = "run_stopped"
    RUN_PAUSED = "run_paused"
    RUN_RESUMED = "run_resumed"
    ITERATION_STARTED = "iteration_started"
    WINDOW_SELECTED = "window_selected"
    WINDOW_JUDGED = "window_judged"
    WINDOW_SKIPPED = "window_skipped"
    STEP_TRAINED = "step_trained"
    CHECKPOINT_REGISTERED = "checkpoint_registered"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    WARNING = "warning"
    ERROR = "error"


class Event(BaseModel):
    id: int | None = None
    run_id: str | None = None
    kind: EventKind
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def summary(self) -> str:
        """One line for logs and the console's event tail."""
        p = self.payload
        match self.kind:
            case EventKind.STEP_TRAINED:
                m = p.get("metrics", {})
                return (f"step {p.get('step')} trained: loss {m.get('loss/train', float('nan')):.4f}, "
                        f"reward {m.get('train/reward', float('nan')):.3f}")
            case EventKind.WINDOW_JUDGED:
                return (f"window {p.get('window_id')} judged by {p.get('judge')}: "
                        f"mean {p.get('mean', 0):.3f} ± {p.get('std', 0):.3f} over {p.get('n')}")
            case EventKind.CHECKPOINT_REGISTERED:
                return f"checkpoint {p.get('model_id')} registered (step {p.get('step')})"
            case EventKind.PROMOTED | EventKind.ROLLED_BACK:
                return f"{self.kind.value.replace('_', ' ')}: {p.get('message', '')}"
            case _:
                return p.get("message") or self.kind.value.replace("_", " ")


def _decode_payload(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return orjson.loads(value)
    return dict(value or {})


def _row_to_event(row: asyncpg.Record) -> Event:
    return Event(id=row["id"], run_id=row["run_id"], kind=EventKind(row["kind"]),
                 payload=_decode_payload(row["payload"]), created_at=row["created_at"])


async def emit(
    conn: asyncpg.Connection | asyncpg.Pool, kind: EventKind, payload: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> Event:
    """Write one event and NOTIFY followers. Inside the caller's transaction when given a connection
    that is in one (so an event and the change it reports commit together)."""
    body = orjson.dumps(payload or {}, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()

    async def write(c: asyncpg.Connection) -> Event:
        await c.execute("SELECT pg_advisory_xact_lock($1)", _EMIT_LOCK)
        row = await c.fetchrow(
            "INSERT INTO console_events (run_id, kind, payload) VALUES ($1, $2, $3::jsonb) "
            "RETURNING id, run_id, kind, payload, created_at",
            run_id, kind.value, body,
        )
        await c.execute("SELECT pg_notify($1, $2)", CHANNEL, str(row["id"]))
        return _row_to_event(row)

    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c, c.transaction():
            return await write(c)
    if conn.is_in_transaction():
        return await write(conn)
    async with conn.transaction():
        return await write(conn)


async def fetch_after(conn: asyncpg.Connection | asyncpg.Pool, after_id: int, limit: int = 1000,
                      run_id: str | None = None) -> list[Event]:
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events "
        "WHERE id > $1 AND ($3::text IS NULL OR run_id = $3) ORDER BY id LIMIT $2",
        after_id, limit, run_id,
    )
    return [_row_to_event(r) for r in rows]


async def last_event_id(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT coalesce(max(id), 0) FROM console_events")


async def recent(conn: asyncpg.Connection | asyncpg.Pool, limit: int = 200) -> list[Event]:
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events ORDER BY id DESC LIMIT $1", limit
    )
    return [_row_to_event(r) for r in reversed(rows)]


async def of_kinds(conn: asyncpg.Connection | asyncpg.Pool, kinds: list[EventKind], limit: int) -> list[Event]:
    """The latest `limit` events of the given kinds, oldest first (chart history)."""
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events "
        "WHERE kind = ANY($2::text[]) ORDER BY id DESC LIMIT $1",
        limit, [k.value for k in kinds],
    )
    return [_row_to_event(r) for r in reversed(rows)]


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
