"""The simulator's rows written as the game writes them: readable with zero rejections, ready
windows, idempotent re-seeding, and a live mode with an accelerated, shared clock."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg

from babylon_console.core.clock import SystemClock
from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.game import market_clock
from babylon_console.core.game.market_clock import SimulatedClock
from babylon_console.core.game.store import GameStore
from babylon_console.core.game.windows import parse_window_id, window_id_for
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import LiveSimulation, history_starts, seed_history

NOW = datetime(2026, 11, 24, 12, 20)


def test_history_ends_at_the_last_closed_hour() -> None:
    starts = history_starts(3, NOW)
    assert [window_id_for(s) for s in starts] == ["2026-11-24T09:00", "2026-11-24T10:00", "2026-11-24T11:00"]


async def test_seeded_rows_read_back_without_rejections_and_windows_are_ready(pool: asyncpg.Pool) -> None:
    sim = Simulation(seed=7, n_agents=6, steps_per_window=8)
    report = await seed_history(pool, sim, windows=4, now=NOW)
    assert report.windows_written == 4 and report.trajectories == 24
    counts = {t: await pool.fetchval(f'SELECT count(*) FROM "{t}"')
              for t in ("User", "trajectories", "llm_call_logs", "market_outcomes")}
    assert counts["User"] == 6 and counts["trajectories"] == 24
    assert counts["llm_call_logs"] == report.llm_calls >= 24 * 8
    store = GameStore(pool)
    for window in (window_id_for(s) for s in history_starts(4, NOW)):
        result = await store.window_trajectories(window)
        assert result.rejections == [], result.rejections[:2]
        assert len(result.trajectories) == 6
        truth = await store.ground_truth(window)
        assert truth.stocks, window
    readiness = await store.window_readiness(ReadinessCriteria(min_agents=5, min_steps=8), NOW, 24)
    assert [w.ready for w in readiness] == [True] * 4
    # Every LLM call log belongs to a trajectory that exists.
    orphans = await pool.fetchval(
        'SELECT count(*) FROM llm_call_logs l LEFT JOIN trajectories t ON t."trajectoryId" = l."trajectoryId" '
        'WHERE t.id IS NULL')
    assert orphans == 0


async def test_reseeding_skips_written_windows(pool: asyncpg.Pool) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=5, steps_per_window=4), windows=3, now=NOW)
    again = await seed_history(pool, Simulation(seed=3, n_agents=5, steps_per_window=4), windows=5, now=NOW)
    assert (again.windows_written, again.windows_skipped) == (2, 3)
    assert await pool.fetchval("SELECT count(*) FROM trajectories") == 25


async def test_live_mode_writes_windows_on_an_accelerated_shared_clock(pool: asyncpg.Pool) -> None:
    sim = Simulation(seed=11, n_agents=5, steps_per_window=3)
    live = LiveSimulation(pool, sim, seconds_per_window=0.4)
    seen_clock: list[object] = []

    async def watch() -> None:
        await asyncio.sleep(0.2)
        seen_clock.append(await market_clock.current_clock(pool))

    await asyncio.gather(live.run(max_windows=2), watch())
    assert len(live.written) == 2
    assert isinstance(seen_clock[0], SimulatedClock)
    paused = await market_clock.current_clock(pool)  # the run ended: its clock stands still, never the wall clock's
    assert isinstance(paused, SimulatedClock) and not paused.running
    assert paused.now() == (await market_clock.current_clock(pool)).now() >= parse_window_id(live.written[-1])
    first_live = window_id_for(SystemClock().now())
    assert live.written[0] == first_live
    # A second live run continues after what the first one wrote.
    again = LiveSimulation(pool, Simulation(seed=11, n_agents=5, steps_per_window=3), seconds_per_window=0.4)
    await again.run(max_windows=1)
    assert again.written[0] > live.written[-1]
