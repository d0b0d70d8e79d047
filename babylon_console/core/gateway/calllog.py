"""The gateway's call log: one row per call, written in batches off the request path.

A request only appends its row to a bounded buffer; a writer task copies the buffer to
`console_gateway_calls` every `flush_s` (or sooner when a batch is full). While the database is
away the rows wait in the buffer, up to `max_buffered`; beyond that the oldest are dropped and
counted (`dropped`). Rows older than the retention are deleted now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

log = logging.getLogger(__name__)

COLUMNS = ("at", "gateway_id", "agent", "rollout_id", "arm", "model_id", "upstream", "status", "latency_ms",
           "prompt_tokens", "completion_tokens", "response_sha256", "error")
BATCH = 1000
PURGE_EVERY_S = 3600.0
WRITE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CallRow:
    at: datetime
    gateway_id: str
    agent: str
    rollout_id: int | None
    arm: str
    model_id: str | None
    upstream: str | None
    status: int
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    response_sha256: str | None = None
    error: str | None = None


def _record(row: CallRow) -> tuple[object, ...]:
    return tuple(getattr(row, column) for column in COLUMNS)  # dataclasses.astuple deep-copies: slower


class CallLog:
    def __init__(self, pool: asyncpg.Pool, *, retention_days: float, flush_s: float = 0.25,
                 max_buffered: int = 100_000) -> None:
        self.pool = pool
        self.retention = timedelta(days=retention_days)
        self.flush_s = flush_s
        self.max_buffered = max_buffered
        self.buffer: deque[CallRow] = deque()
        self.written = 0
        self.dropped = 0
        self.failing_since: datetime | None = None
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_purge = 0.0

    def add(self, row: CallRow) -> None:
        """Queue a row (never blocks, never raises): the oldest row goes when the buffer is full."""
        if len(self.buffer) >= self.max_buffered:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(row)
        if len(self.buffer) >= BATCH:
            self._full.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway call log")

    async def stop(self, drain_s: float = 2.0) -> None:
        """Stop the writer, writing what is buffered (within `drain_s`, if the database answers)."""
        if self._task is not None:
            # the writer finishes the batch it is writing (a cancelled COPY may or may not have been
            # written: its rows would be lost or written twice), then returns; cancelled only if it hangs
            self._stopping = True
            self._full.set()
            done, _ = await asyncio.wait({self._task}, timeout=drain_s)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                while self.buffer and await self.flush():
                    pass

    async def flush(self) -> bool:
        """Write one batch; False when the database refused it (the rows stay buffered)."""
        batch = [self.buffer.popleft() for _ in range(min(BATCH, len(self.buffer)))]
        if not batch:
            return True
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.pool.copy_records_to_table("console_gateway_calls", records=[_record(r) for r in batch],
                                                      columns=COLUMNS)
        except Exception as exc:  # any database failure: the rows wait in the buffer
            room = self.max_buffered - len(self.buffer)
            keep = batch[-room:] if room > 0 else []
            self.dropped += len(batch) - len(keep)
            self.buffer.extendleft(reversed(keep))
            if self.failing_since is None:
                self.failing_since = datetime.now().astimezone()
                log.warning("gateway call log not written (%s): buffering up to %d rows", exc, self.max_buffered)
            return False
        self.written += len(batch)
        self.failing_since = None
        return True

    async def purge(self) -> int:
        """Delete rows older than the retention; the number deleted."""
        status = await self.pool.execute(
            "DELETE FROM console_gateway_calls WHERE at < now() - $1::interval", self.retention)
        return int(status.split()[-1])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_s)
            self._full.clear()
            if self._stopping:
                return  # `stop` drains what is buffered
            while self.buffer and await self.flush():
                if len(self.buffer) < BATCH:
                    break
            if loop.time() - self._last_purge > PURGE_EVERY_S and self.failing_since is None:
                self._last_purge = loop.time()
                try:
                    await self.purge()
                except Exception as exc:  # the writer task must outlive any outage
                    log.info("old gateway calls not purged: %s", exc)
