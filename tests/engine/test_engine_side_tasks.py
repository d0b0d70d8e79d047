"""The engine's side tasks (heartbeat, command listener, announcements of pause, resume and stop
requests) are watched: one that fails stops the run, named in the reason, instead of failing unseen."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from babylon_console.core.config import Settings
from babylon_console.core.engine.guard import RunGuard, SideTaskFailed
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState, RunSummary
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


async def test_a_failing_announcement_stops_the_run_and_names_it(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The database refuses the pause event (a rule, not an outage): the announcement's failure used
    to be dropped, leaving the run paused as if nothing had happened."""
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), windows=2, now=NOW)
    await pool.execute("""
        CREATE FUNCTION refuse_pause_events() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'pause events are refused here'; END $$;
        CREATE TRIGGER refuse_pause_events BEFORE INSERT ON console_events
        FOR EACH ROW WHEN (NEW.kind = 'run_paused') EXECUTE FUNCTION refuse_pause_events();
    """)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = EngineConfig(iterations=None, poll_seconds=0.05, windows_per_iteration=1, min_agents=5, min_steps=4,
                          lookback_hours=48, max_per_group=6)
    engine = Engine(pool, config, settings=settings, clock=FixedClock())
    task = asyncio.create_task(engine.run())
    for _ in range(500):
        if engine.state is EngineState.RUNNING:
            break
        await asyncio.sleep(0.02)
    engine.pause()
    summary = await asyncio.wait_for(task, 30)
    assert summary.state is EngineState.FAILED
    assert "pause announcement failed" in (summary.error or ""), summary.error
    state, error = await pool.fetchrow("SELECT state, error FROM console_runs WHERE id = $1", engine.run_id)
    assert state == "failed" and "pause announcement failed" in error


async def test_a_side_task_that_fails_ends_the_work_it_watched() -> None:
    config = EngineConfig()
    guard = RunGuard(None, config, "run-x", RunSummary(run_id="run-x", state=EngineState.RUNNING),  # type: ignore[arg-type]
                     stop=asyncio.Event(), emit=None, apply_commands=None)  # type: ignore[arg-type]
    work_cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            work_cancelled.set()
            raise
        return "finished"

    async def beat() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    guard.spawn("heartbeat", beat())
    with pytest.raises(SideTaskFailed, match="heartbeat failed: boom"):
        await asyncio.wait_for(guard.watching(work()), 10)
    assert work_cancelled.is_set()


async def test_work_that_ends_first_is_what_the_watch_returns() -> None:
    guard = RunGuard(None, EngineConfig(), "run-x", RunSummary(run_id="run-x", state=EngineState.RUNNING),  # type: ignore[arg-type]
                     stop=asyncio.Event(), emit=None, apply_commands=None)  # type: ignore[arg-type]

    async def work() -> str:
        return "no ready windows"

    beat = guard.spawn("heartbeat", asyncio.sleep(60))
    assert await guard.watching(work()) == "no ready windows"
    assert guard.failure is None
    beat.cancel()
