"""One row per gateway process in `console_gateways`: who serves, where, its routing source and its
counts per arm, beaten every few seconds, so consoles can show the gateways that are up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

log = logging.getLogger(__name__)

_ERRORS = (Exception,)  # a beat lost to any database failure is retried at the next one


def new_gateway_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat:
    def __init__(self, pool: asyncpg.Pool, gateway_id: str, listen: str, every_s: float,
                 state: Callable[[], tuple[str, dict[str, Any]]]) -> None:
        """`state()` gives (routing source, stats) at each beat."""
        self.pool = pool
        self.gateway_id = gateway_id
        self.listen = listen
        self.every_s = every_s
        self.state = state
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        source, stats = self.state()
        async with asyncio.timeout(self.every_s):
            await self.pool.execute(
                "INSERT INTO console_gateways (id, host, pid, listen, routing_source, stats) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), "
                "routing_source = $5, stats = $6::jsonb, stopped_at = NULL",
                self.gateway_id, socket.gethostname(), os.getpid(), self.listen, source,
                orjson.dumps(stats).decode())

    async def start(self) -> None:
        with contextlib.suppress(*_ERRORS):
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="gateway heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*_ERRORS):
            async with asyncio.timeout(2):
                await self.pool.execute("UPDATE console_gateways SET stopped_at = now() WHERE id = $1",
                                        self.gateway_id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.beat()
            except _ERRORS as exc:
                log.info("gateway heartbeat not written: %s", exc)
