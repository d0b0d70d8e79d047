"""Writing the simulator's rows into the game's tables, as the game writes them.

A window is written in one transaction (trajectories, LLM call logs, market outcomes) with COPY,
so a crash never leaves half a window, and `seed` can skip windows already written for the same
simulation namespace: re-running it is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from ..clock import to_naive_utc
from ..game import market_clock
from ..game.bulk import copy_rows, insert_rows
from ..game.market_clock import SimulatedClock
from ..game.schema import USER_COLUMNS
from ..game.store import GameStore
from ..game.windows import WINDOW_LENGTH, parse_window_id, window_id_for, window_start_of
from ..sim.simulation import Simulation, WindowResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SeedReport:
    windows_written: int = 0
    windows_skipped: int = 0
    trajectories: int = 0
    llm_calls: int = 0
    market_outcomes: int = 0
    first_window: str | None = None
    last_window: str | None = None


async def ensure_agents(conn: asyncpg.Connection | asyncpg.Pool, sim: Simulation) -> None:
    """Insert the agents' `"User"` rows; existing users are left as they are."""
    await insert_rows(conn, "User", sim.user_rows(), USER_COLUMNS, on_conflict_do_nothing=True)


async def prepare_bulk_session(conn: asyncpg.Connection) -> None:
    """Session settings for bulk simulated writes: lz4 TOAST compression where the server has it
    (several times cheaper than the default pglz on prompt text) and asynchronous commit (a crash
    may lose the last windows, which re-seeding writes again). Nothing about the tables changes."""
    await conn.execute("SET synchronous_commit = off")
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("SET default_toast_compression = 'lz4'")


async def write_window(conn: asyncpg.Connection, result: WindowResult) -> None:
    async with conn.transaction():
        await copy_rows(conn, "trajectories", result.trajectories)
        await copy_rows(conn, "llm_call_logs", result.llm_calls)
        await copy_rows(conn, "market_outcomes", result.market_outcomes)


def outcome_id_prefix(namespace: str) -> str:
    """What the ids of a simulation's market outcomes start with (`core/sim/game_rows.py`): a window
    is written for that simulation once its outcomes are."""
    return f"{namespace}-mo-"


def history_starts(windows: int, now: datetime) -> list[datetime]:
    """Starts of the `windows` hours ending with the last closed hour before `now`."""
    last_closed = window_start_of(now) - WINDOW_LENGTH
    return [last_closed - WINDOW_LENGTH * (windows - 1 - i) for i in range(windows)]


async def seed_history(
    pool: asyncpg.Pool, sim: Simulation, windows: int, now: datetime,
    progress: Callable[[int, WindowResult | None], None] | None = None,
) -> SeedReport:
    """Simulate `windows` hours ending at the last closed hour and write those not yet written."""
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    starts = history_starts(windows, now)
    report = SeedReport(first_window=window_id_for(starts[0]), last_window=window_id_for(starts[-1]))
    await ensure_agents(pool, sim)
    existing = await GameStore(pool).outcome_windows(outcome_id_prefix(sim.namespace),
                                                     [window_id_for(s) for s in starts])
    async with pool.acquire() as conn:
        await prepare_bulk_session(conn)
        for i, start in enumerate(starts):
            # The market only moves forward: every hour is simulated, written or not.
            result = await asyncio.to_thread(sim.simulate_window, start)
            if result.window_id in existing:
                report.windows_skipped += 1
                if progress:
                    progress(i + 1, None)
                continue
            await write_window(conn, result)
            report.windows_written += 1
            report.trajectories += len(result.trajectories)
            report.llm_calls += len(result.llm_calls)
            report.market_outcomes += len(result.market_outcomes)
            if progress:
                progress(i + 1, result)
    return report


class LiveSimulation:
    """Keeps writing windows with an accelerated clock: one simulated hour per `seconds_per_window`.

    The clock starts at the current (real) time, so the live windows follow a seeded history, or
    where the database's clock stands (a paused market resumes, time never goes back), and it is
    published for every other process: the database is a simulated one from then on. Each window is
    simulated and written when it closes; when the run ends the clock stands still (`market_clock.pause`).
    `before_window` lets the caller swap policies (e.g. agents driven by the promoted checkpoint).
    """

    def __init__(self, pool: asyncpg.Pool, sim: Simulation, seconds_per_window: float,
                 start: datetime | None = None) -> None:
        if seconds_per_window <= 0:
            raise ValueError("seconds_per_window must be positive")
        self.pool = pool
        self.sim = sim
        # from the wall clock's time, not its hour's start: a database turning simulated never goes back
        begin = to_naive_utc(start or datetime.now(UTC))
        self.clock = SimulatedClock(datetime.now(UTC), begin, 3600.0 / seconds_per_window)
        self.next_start = window_start_of(begin)
        self.written: list[str] = []
        self.before_window: Callable[[Simulation, str], object] | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, max_windows: int | None = None,
                  on_window: Callable[[WindowResult], object] | None = None) -> None:
        await ensure_agents(self.pool, self.sim)
        # A previous live run may have written hours ahead of the wall clock: continue after them.
        latest = await GameStore(self.pool).last_outcome_window(outcome_id_prefix(self.sim.namespace))
        epoch = self.clock.sim_epoch
        if latest and parse_window_id(latest) >= self.next_start:
            self.next_start = parse_window_id(latest) + WINDOW_LENGTH
            epoch = max(epoch, self.next_start)
        stored = await market_clock.current_clock(self.pool)
        if isinstance(stored, SimulatedClock):
            epoch = max(epoch, stored.now())
        self.clock = SimulatedClock(datetime.now(UTC), epoch, self.clock.speed)
        await market_clock.publish(self.pool, self.clock, self.sim.namespace)
        try:
            while not self._stop.is_set() and (max_windows is None or len(self.written) < max_windows):
                end = self.next_start + WINDOW_LENGTH
                wait = self.clock.real_seconds_until(end)
                while wait > 0 and not self._stop.is_set():
                    await market_clock.heartbeat(self.pool)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), min(wait, 5.0))
                    wait = self.clock.real_seconds_until(end)
                if self._stop.is_set():
                    break
                if self.before_window is not None:
                    self.before_window(self.sim, window_id_for(self.next_start))
                result = await self.sim.simulate_window_async(self.next_start)
                async with self.pool.acquire() as conn:
                    await write_window(conn, result)
                self.written.append(result.window_id)
                self.next_start = end
                if on_window is not None:
                    on_window(result)
        finally:
            with contextlib.suppress(Exception):  # the database may be gone: its clock then stands at the last beat
                await market_clock.pause(self.pool)
