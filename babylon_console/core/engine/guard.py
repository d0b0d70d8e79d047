"""A run's guard: the model's lock and write fence, the side tasks that keep the run visible and
steerable (heartbeat, command listener, announcements), and the ride-out of a database outage.

Side tasks are watched: one that fails stops the run (`watching` cancels the work and raises
`SideTaskFailed` naming it), instead of leaving a run with no heartbeat or no ears."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from ..errors import EXIT_BUSY, Failed, Refused, is_outage
from ..events import EngineWarning, EventData
from . import control, runs
from .run_config import EngineConfig
from .run_state import Emit, RunSummary
from .runs import LockLost

log = logging.getLogger(__name__)
T = TypeVar("T")


class EngineLocked(Refused, RuntimeError):
    """Another engine already trains this model."""

    exit_code = EXIT_BUSY
    title = "Engine busy"


class SideTaskFailed(Failed, RuntimeError):
    """A side task of the run (its heartbeat, its command listener, an announcement) failed: the run
    stops rather than go on unseen or deaf."""

    title = "Engine side task failed"


class RunGuard:
    """The lock, the fence and the side tasks of one run. `apply_commands` applies operators'
    pending commands (the engine's business); the guard calls it when one is announced."""

    def __init__(self, pool: asyncpg.Pool, config: EngineConfig, run_id: str, summary: RunSummary, *,
                 stop: asyncio.Event, emit: Emit, apply_commands: Callable[[], Awaitable[None]]) -> None:
        self.pool = pool
        self.config = config
        self.run_id = run_id
        self.summary = summary
        self._stop = stop
        self._emit = emit
        self._apply_commands = apply_commands
        self._commands_lock = asyncio.Lock()  # the listener and the heartbeat may both look at once
        self._lock_conn: asyncpg.Connection | None = None
        self._side_tasks: dict[asyncio.Task[Any], str] = {}
        self._keepers: list[asyncio.Task[Any]] = []  # the heartbeat and the command listener
        self.failure: SideTaskFailed | None = None  # the first side task that failed
        self._failed = asyncio.Event()

    # -- the model's lock and the write fence --------------------------------------------------

    async def acquire(self) -> None:
        """Take the model's lock for this run; EngineLocked (naming the holder) when another engine has it."""
        if not await self.take_lock():
            holder = await runs.holder(self.pool, self.config.model_name, self.config.backend)
            where = f" (run {holder.id} on {holder.host}, pid {holder.pid})" if holder else ""
            raise EngineLocked(f"another engine is already training model {self.config.model_name!r} "
                               f"on the {self.config.backend} backend{where}")

    async def take_lock(self) -> bool:
        """The model's advisory lock and fencing token (`runs.take_lock`); False: another engine holds it."""
        self._lock_conn = await runs.take_lock(self.pool, self.config.training_key, self.run_id)
        return self._lock_conn is not None

    async def drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            await runs.drop_lock(self.pool, conn, self.config.training_key)

    def write(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """A transaction for an engine write, committed only while this run holds the model's
        fencing token (`runs.fenced_write`); LockLost otherwise."""
        return runs.fenced_write(self.pool, self.config.training_key, self.run_id)

    # -- watched side tasks --------------------------------------------------------------------

    def spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` beside the run, watched: if it fails, the run stops with `name` in the reason."""
        task = asyncio.ensure_future(work)
        task.set_name(f"{name} ({self.run_id})")
        self._side_tasks[task] = name
        task.add_done_callback(self._side_task_done)
        return task

    def _side_task_done(self, task: asyncio.Task[Any]) -> None:
        name = self._side_tasks.pop(task, task.get_name())
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("%s of run %s failed", name, self.run_id, exc_info=exc)
        if self.failure is None:
            self.failure = SideTaskFailed(f"{name} failed: {exc}")
            self._failed.set()

    def announce(self, name: str, event: EventData) -> None:
        """Write `event` from a side task (for callers that cannot wait: pause, resume, a stop request)."""
        self.spawn(name, self._announce(event))

    async def _announce(self, event: EventData) -> None:
        try:
            await self._emit(event)
        except Exception as exc:  # the database gone: nowhere to write it, as for a missed heartbeat
            if not is_outage(exc):
                raise
            log.warning("run %s: %s event not written: %s", self.run_id, event.kind.value, exc)

    def start_keepers(self) -> None:
        """Start the heartbeat and the command listener."""
        self._keepers = [self.spawn("heartbeat", self._beat()), self.spawn("command listener", self._listen())]

    def stop_keepers(self) -> None:
        for task in self._keepers:
            task.cancel()

    async def watching(self, work: Coroutine[Any, Any, T]) -> T:
        """Await `work` while the side tasks run. When one fails first, `work` is cancelled (abandoned
        as a crash abandons a stage: the next start repairs it) and SideTaskFailed says which."""
        task = asyncio.ensure_future(work)
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait((task, failed), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # interrupted: the work ends as it would have in this task
            task.cancel()
            await _ended(task)
            raise
        finally:
            failed.cancel()
        if not task.done():
            task.cancel()
            await _ended(task)
            assert self.failure is not None
            raise self.failure
        return task.result()

    # -- the heartbeat and operators' commands -------------------------------------------------

    async def heartbeat(self) -> None:
        s = self.summary
        await runs.heartbeat(self.pool, self.run_id, s.state.value, s.iterations, s.steps[-1] if s.steps else 0)

    async def _beat(self) -> None:
        """Beat every `heartbeat_s`, whatever stage runs (a long training step included), and look
        for operators' commands in case a notification was lost."""
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                await self.heartbeat()
                await self._commands()
            except Exception as exc:  # a missed beat is what staleness is for; never stop the run
                log.warning("heartbeat of %s failed: %s", self.run_id, exc)

    async def _listen(self) -> None:
        """Apply commands as soon as they are announced (LISTEN on a connection of its own)."""
        wake = asyncio.Event()

        def announced(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == self.run_id:
                wake.set()

        while True:
            try:
                conn = await self.pool.acquire()
            except Exception as exc:
                log.debug("command listener waits for the database: %s", exc)
                await asyncio.sleep(self.config.heartbeat_s)
                continue
            try:
                await conn.add_listener(control.CHANNEL, announced)
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.config.heartbeat_s)
                    if wake.is_set():
                        wake.clear()
                        await self._commands()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("command listener lost its connection: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(control.CHANNEL, announced)
                with contextlib.suppress(Exception):
                    await self.pool.release(conn)

    async def _commands(self) -> None:
        async with self._commands_lock:
            await self._apply_commands()

    # -- a database outage ---------------------------------------------------------------------

    async def ride_out_outage(self, exc: BaseException) -> bool:
        """The database is gone (restart, network): retry with backoff and take the lock again before
        any write; then the caller repairs as after a crash. False: asked to stop meanwhile. LockLost
        if another engine took the model meanwhile."""
        since = datetime.now(UTC)
        log.warning("database unreachable since %s: %s", since.isoformat(timespec="seconds"), exc)
        await self.drop_lock()
        delay = 0.5
        while True:
            if self._stop.is_set():
                return False
            try:
                taken = await self.take_lock()
            except Exception as retry_exc:
                if not is_outage(retry_exc):
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            if not taken:
                raise LockLost(f"another engine took model {self.config.training_key!r} while the database was "
                               "unreachable; this run stops without writing")
            break
        down_s = (datetime.now(UTC) - since).total_seconds()
        self.summary.outages += 1
        log.warning("database back after %.1f s; lock re-acquired", down_s)
        await self.heartbeat()
        await self._emit(EngineWarning(
            stage="database", since=since.isoformat(), down_s=down_s,
            message=f"database was unreachable from {since:%H:%M:%S} UTC for {down_s:.1f} s; lock re-acquired, "
                    "repairing and resuming"))
        return True


async def _ended(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled task to end; what it ended with was superseded (logged, not raised)."""
    await asyncio.wait((task,))
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("cancelled work ended with %r", exc)
