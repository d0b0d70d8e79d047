"""The engine outlives database restarts: it waits, reconnects, takes its lock back before any
write, repairs and resumes; no window is trained twice, no batch is left `training`. If another
engine takes the lock meanwhile, it stops without writing.

These tests own an embedded server of their own and restart it for real (`pg_ctl restart`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from babylon_console.core.config import Settings
from babylon_console.core.db.connections import create_migrated_database
from babylon_console.core.db.embedded import start_embedded_again, start_embedded_server, stop_embedded_now
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.judges import OutcomeJudge

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class OwnServer:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.url = start_embedded_server(pgdata)

    def stop(self, mode: str = "fast") -> None:
        stop_embedded_now(self.pgdata, mode)

    def start(self) -> None:
        start_embedded_again(self.pgdata, self.url)

    def restart(self, down_s: float = 1.0) -> None:
        """Stop (fast: connections are cut), stay down a moment, start again with the same options."""
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path / "own-pg")
    yield server
    server.stop("immediate")  # pgserver's own cleanup knows only the first process


async def _database(server: OwnServer) -> str:
    return await create_migrated_database(server.url, "outage")


class PacedJudge(OutcomeJudge):
    """The outcome judge, a little slower, so restarts land in the middle of the work."""

    async def judge(self, item: Any) -> Any:
        await asyncio.sleep(0.4)
        return await super().judge(item)


def _engine(pool: asyncpg.Pool, tmp_path: Path, **config: Any) -> Engine:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    base = dict(iterations=None, windows_per_iteration=1, min_agents=3, min_steps=1, lookback_hours=48,
                poll_seconds=0.2, heartbeat_s=0.5)
    return Engine(pool, EngineConfig(**{**base, **config}), settings=settings, clock=FixedClock(), judge=PacedJudge())


async def _wait(predicate: Any, limit_s: float, what: str) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            value = await predicate()
        except Exception:  # the database is down for a while: keep asking
            value = None
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_engine_outlives_two_database_restarts(own_server: OwnServer, tmp_path: Path) -> None:
    url = await _database(own_server)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    watcher = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await seed_history(pool, Simulation(seed=5, n_agents=5, steps_per_window=4), windows=8, now=NOW)
        engine = _engine(pool, tmp_path)
        run = asyncio.create_task(engine.run())

        async def trained(n: int) -> bool:
            return await watcher.fetchval("SELECT count(*) FROM trained_models") >= n

        for restart, after in enumerate((1, 3), start=1):
            await _wait(lambda after=after: trained(after), 60, f"{after} checkpoint(s) before restart {restart}")
            await asyncio.to_thread(own_server.restart, 1.5)
        await _wait(lambda: trained(8), 90, "every window trained after the restarts")
        engine.stop()
        summary = await asyncio.wait_for(run, 30)

        assert summary.state is EngineState.STOPPED, summary.error
        assert summary.outages >= 2
        windows = [r[0] for r in await watcher.fetch("SELECT window_id FROM console_trained_windows")]
        assert len(windows) == len(set(windows)) == 8  # every window trained, none twice
        per_model = await watcher.fetch(
            'SELECT t."trainedInBatch", count(*) FROM trajectories t WHERE "usedInTraining" GROUP BY 1')
        completed = {r[0] for r in await watcher.fetch("SELECT \"batchId\" FROM training_batches "
                                                       "WHERE status = 'completed'")}
        assert {r[0] for r in per_model} <= completed  # nothing marked used by a batch that did not complete
        assert await watcher.fetchval("SELECT count(*) FROM training_batches WHERE status = 'training'") == 0
        models = await watcher.fetchval("SELECT count(*) FROM trained_models")
        assert models == len(completed)  # no checkpoint lost, none without its batch
        back = [r[0] for r in await watcher.fetch("SELECT payload->>'message' FROM console_events "
                                                  "WHERE payload->>'message' LIKE 'database was unreachable%'")]
        assert len(back) >= 2 and "lock re-acquired" in back[0]
    finally:
        await watcher.close()
        await pool.close()


async def test_an_engine_whose_lock_was_taken_during_an_outage_stops_without_writing(
    own_server: OwnServer, tmp_path: Path
) -> None:
    url = await _database(own_server)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    try:
        await seed_history(pool, Simulation(seed=5, n_agents=5, steps_per_window=4), windows=6, now=NOW)
        first = _engine(pool, tmp_path)
        run = asyncio.create_task(first.run())
        await _wait(lambda: pool.fetchval("SELECT count(*) FROM trained_models"), 60, "a first checkpoint")
        # The first engine took its lock at start; any later take is its ride-out retaking it. Hold
        # that retake until the second engine has the model: otherwise the first may notice the outage
        # only once the server is back and retake the lock before the second gets there.
        second_has_lock = asyncio.Event()
        retake = first.guard.take_lock

        async def retake_after_the_second() -> bool:
            await second_has_lock.wait()
            return await retake()

        first.guard.take_lock = retake_after_the_second  # type: ignore[method-assign]
        await asyncio.to_thread(own_server.stop)
        await asyncio.to_thread(own_server.start)
        # Before the first engine comes back, another engine takes the model (its own pool).
        other_pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        second = _engine(other_pool, tmp_path, iterations=1)
        assert await second.guard.take_lock()
        second_has_lock.set()
        before = await other_pool.fetchval("SELECT count(*) FROM training_batches")
        summary = await asyncio.wait_for(run, 60)
        error = summary.error or ""
        assert summary.state is EngineState.STOPPED and ("lost its lock" in error or "took model" in error), error
        assert await other_pool.fetchval("SELECT count(*) FROM training_batches") == before  # wrote nothing more
        await second.guard.drop_lock()
        await other_pool.close()
    finally:
        await pool.close()


async def test_writes_are_fenced_on_the_lock_token(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """An engine whose token another run took cannot commit an engine write (same transaction check)."""
    from babylon_console.core.engine.runs import LockLost

    engine = _engine(pool, tmp_path)
    await engine.guard.take_lock()
    try:
        async with engine.guard.write() as conn:  # holds the token: fine
            await conn.execute("SELECT 1")
        await pool.execute("UPDATE console_engine_tokens SET run_id = 'run-someone-else'")
        with pytest.raises(LockLost, match="run-someone-else now holds model"):
            await engine.trainer.fail_batch("no-such-batch", "never written")
    finally:
        await engine.guard.drop_lock()


def test_a_connection_left_mid_operation_by_a_restart_is_an_outage_not_a_failure() -> None:
    """Across a database restart a pooled connection raised asyncpg's InternalClientError "another
    operation is in progress": the engine took it for a bug and failed instead of riding the outage out."""
    from babylon_console.core.errors import is_outage

    assert is_outage(asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"))
    assert not is_outage(asyncpg.InternalClientError("an unexpected client state"))  # anything else stays a bug


async def test_an_engine_paused_through_a_restart_takes_its_lock_again(own_server: OwnServer, tmp_path: Path) -> None:
    """The restart takes the model's lock with its connection. A paused engine's main loop sees no error
    once the database is back, so nothing took the lock again and another engine could take the model;
    the paused engine's rollout watch meets the outage and rides it out, lock included, before resuming."""
    from babylon_console.core.engine.runs import Stage

    url = await _database(own_server)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    engine = _engine(pool, tmp_path)  # nothing seeded: it waits for windows
    run = asyncio.create_task(engine.run())
    try:
        async def waiting() -> bool:
            return engine.stage is Stage.WAIT

        async def lock_taken_again() -> bool:
            return engine.summary.outages >= 1

        await _wait(waiting, 60, "the engine to wait for windows")
        engine.pause(by="tester")
        await asyncio.to_thread(own_server.restart, 1.5)
        await _wait(lock_taken_again, 30, "the paused engine to take its lock again")
        assert engine.state is EngineState.PAUSED
        other = await asyncpg.create_pool(url, min_size=1, max_size=2)
        second = _engine(other, tmp_path, iterations=1)
        took = await second.guard.take_lock()
        if took:
            await second.guard.drop_lock()
        await other.close()
        assert not took  # the paused engine holds the model
    finally:
        engine.stop()
        summary = await asyncio.wait_for(run, 30)
        await pool.close()
    assert summary.state is EngineState.STOPPED, summary.error
