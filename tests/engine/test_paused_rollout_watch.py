"""A pause holds training, not the rollout gate: a paused engine still rolls back a harmful candidate
(automatic rollback on), and trains nothing meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.engine.runs import Stage

from ..checkpoints.test_evidence import CAND, _harmful_history, _models


async def _until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_paused_engine_still_rolls_a_harmful_candidate_back(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _models(pool)  # CAND at 50% beside the live model, no evidence yet
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    engine = Engine(pool, EngineConfig(iterations=None, auto_rollback=True, poll_seconds=0.2), settings=settings)
    run = asyncio.create_task(engine.run())
    try:
        async def waiting() -> bool:  # set up, and found no window to train: waiting for one
            return engine.stage is Stage.WAIT

        await _until(waiting, 60, "the engine to wait for windows")
        engine.pause(by="tester")
        assert engine.state is EngineState.PAUSED
        await _harmful_history(pool)  # five windows in which the candidate's agents lose 20 and the live arm's win 5

        async def rolled_back() -> bool:
            return await Registry(pool).rollout() is None

        await _until(rolled_back, 10, "the paused engine's gate to roll the candidate back")
        audit = (await Registry(pool).audit(1))[0]
        assert (audit.action, audit.operator, audit.from_model_id) == ("rollback", "auto-rollback", CAND[0])
        assert engine.state is EngineState.PAUSED  # training still holds
        assert engine.summary.iterations == 0 and await pool.fetchval("SELECT count(*) FROM training_batches") == 0
    finally:
        engine.stop()
        summary = await asyncio.wait_for(run, 30)
    assert summary.state is EngineState.STOPPED, summary.error


async def test_a_stop_while_paused_does_not_wait_for_the_rollout_watch(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The paused engine's watch may be a slow read (or a database that does not answer): a stop cancels it."""
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    engine = Engine(pool, EngineConfig(iterations=None, auto_rollback=True, poll_seconds=0.1), settings=settings)
    reading = asyncio.Event()

    async def slow_watch() -> None:  # slow while paused (the main loop's watch between iterations is quick)
        if engine.state is EngineState.PAUSED:
            reading.set()
            await asyncio.sleep(60)

    engine.rollout.watch = slow_watch  # type: ignore[method-assign]
    run = asyncio.create_task(engine.run())

    async def waiting() -> bool:
        return engine.stage is Stage.WAIT

    await _until(waiting, 60, "the engine to wait for windows")
    engine.pause(by="tester")
    await asyncio.wait_for(reading.wait(), 10)
    engine.stop()
    summary = await asyncio.wait_for(run, 5)
    assert summary.state is EngineState.STOPPED, summary.error
