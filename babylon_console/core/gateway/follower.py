"""Keeps a gateway's routing table in step with the registry.

A promote or rollback commits with a NOTIFY on the events channel (`core.events.CHANNEL`): the
follower LISTENs on a connection of its own and re-reads the table at once, and also re-reads every
`every_s` seconds in case a notification was lost (a dropped LISTEN connection, a restart). When the
database cannot be read, the last table keeps serving and `source` says since when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from ..events import CHANNEL
from .routing import RoutingTable, read_table

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0
RECONNECT_S = 1.0


class RoutingFollower:
    def __init__(self, pool: asyncpg.Pool, dsn: str, every_s: float = 2.0) -> None:
        self.pool = pool
        self.dsn = dsn
        self.every_s = every_s
        self.table = RoutingTable()
        self.loaded = False  # a table was read at least once
        self.memory_since: datetime | None = None  # the first failed read of the current outage
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def source(self) -> str:
        if self.memory_since is None:
            return "database"
        return f"routing from memory since {self.memory_since:%Y-%m-%d %H:%M:%S} UTC ({self.last_error})"

    async def refresh(self) -> bool:
        """Read the table now; on failure keep the last one (and say so). True when it was read."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                self.table = await read_table(self.pool)
        except Exception as exc:  # whatever the database did (a dropped connection in any state): keep serving
            if self.memory_since is None:
                self.memory_since = datetime.now(UTC)
                log.warning("the registry cannot be read (%s): routing from memory", _first_line(exc))
            self.last_error = _first_line(exc)
            return False
        if self.memory_since is not None:
            log.warning("the registry is readable again: routing from the database")
        self.loaded, self.memory_since, self.last_error = True, None, None
        return True

    async def start(self) -> None:
        await self.refresh()
        self._tasks = [asyncio.create_task(self._reread(), name="gateway routing re-read"),
                       asyncio.create_task(self._listen(), name="gateway routing listen")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _reread(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every_s)
            self._wake.clear()
            await self.refresh()

    async def _listen(self) -> None:
        """LISTEN on the events channel, reconnecting while the database is away."""
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=READ_TIMEOUT_S * 2)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # notifications may have been missed while not listening
                await lost.wait()
            except Exception as exc:  # the LISTEN task must outlive any outage
                log.info("routing notifications unavailable: %s", _first_line(exc))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1)
            await asyncio.sleep(RECONNECT_S)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
