"""One clock per database: the simulated market's clock, shared through the database.

sim_now = sim_epoch + (real_now - real_epoch) * speed. A live simulation (`seed --live`, the demo)
publishes its clock in `console_sim_clock`; from then on the database is a simulated one and every
process reading it (windows, train, engine, status, consoles) takes "now" from `current_clock`.
While the market's heartbeat is fresh the clock runs; when the market stops (or its heartbeat goes
stale) the clock stands still at the simulated time it had reached: the market is paused. It never
falls back to the wall clock, which would make a simulated past look open again (or its future
look closed). A database with no record uses the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from ..clock import Clock, SystemClock
from ..errors import Refused


class MarketRunning(Refused, RuntimeError):
    """The database's simulated market is running: its clock cannot be taken away under it."""

    title = "Market running"


STALE_AFTER = timedelta(seconds=30)  # a heartbeat lets the clock run this long (the market beats every 5 s)


@dataclass(frozen=True, slots=True)
class SimulatedClock:
    real_epoch: datetime  # aware, UTC
    sim_epoch: datetime  # naive UTC
    speed: float  # simulated seconds per real second
    runs_until: datetime | None = None  # aware, UTC: the clock stands still from then on (None: runs on)

    def now(self) -> datetime:
        real = datetime.now(UTC)
        if self.runs_until is not None:
            real = min(real, self.runs_until)
        return self.sim_epoch + (real - self.real_epoch) * self.speed

    @property
    def running(self) -> bool:
        return self.runs_until is None or datetime.now(UTC) < self.runs_until

    def real_seconds_until(self, sim_moment: datetime) -> float:
        return max(0.0, (sim_moment - self.now()).total_seconds() / self.speed)


async def publish(conn: asyncpg.Connection | asyncpg.Pool, clock: SimulatedClock, namespace: str) -> None:
    await conn.execute(
        "INSERT INTO console_sim_clock (singleton, real_epoch, sim_epoch, speed, namespace, heartbeat_at, runs_until) "
        "VALUES (true, $1, $2, $3, $4, now(), now() + $5::interval) ON CONFLICT (singleton) DO UPDATE SET "
        "real_epoch = $1, sim_epoch = $2, speed = $3, namespace = $4, heartbeat_at = now(), runs_until = now() + $5",
        clock.real_epoch, clock.sim_epoch, clock.speed, namespace, STALE_AFTER,
    )


async def heartbeat(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    await conn.execute("UPDATE console_sim_clock SET heartbeat_at = now(), runs_until = now() + $1::interval",
                       STALE_AFTER)


async def pause(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """The market stops: its clock stands still at the simulated time of this moment."""
    await conn.execute("UPDATE console_sim_clock SET heartbeat_at = now(), runs_until = now()")


async def current_clock(conn: asyncpg.Connection | asyncpg.Pool) -> Clock:
    """The database's clock: its simulated market's (running, or standing still while the market is
    paused), or the wall clock when no market ever published one."""
    row = await conn.fetchrow(
        # a heartbeat's lease, cut short by a clean stop (LEAST ignores a NULL runs_until: an older writer)
        "SELECT real_epoch, sim_epoch, speed, LEAST(runs_until, heartbeat_at + $1::interval) AS runs_until "
        "FROM console_sim_clock", STALE_AFTER,
    )
    if row is None:
        return SystemClock()
    return SimulatedClock(row["real_epoch"], row["sim_epoch"], row["speed"], row["runs_until"])


async def has_market_clock(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether a simulated market's clock is this database's clock (one was published here)."""
    return bool(await conn.fetchval("SELECT count(*) FROM console_sim_clock"))


async def return_to_wall_clock(conn: asyncpg.Connection | asyncpg.Pool) -> SimulatedClock | None:
    """Make the wall clock this database's clock again (its market's record deleted); the clock that
    was in force, or None when there was none. Refused while the market runs (its heartbeat is fresh)."""
    clock = await current_clock(conn)
    if not isinstance(clock, SimulatedClock):
        return None
    if clock.running:
        raise MarketRunning("a simulated market is running on this database: stop it first (Ctrl-C in its "
                            "`seed --live`, or quit the demo), then return to the wall clock")
    await conn.execute("DELETE FROM console_sim_clock")
    return clock


def describe(clock: Clock) -> dict[str, object]:
    """The clock for `status` and `--json`: which kind, "now", and whether a simulated one runs."""
    if not isinstance(clock, SimulatedClock):
        return {"kind": "wall", "now": clock.now().isoformat()}
    return {"kind": "simulated", "now": clock.now().isoformat(), "running": clock.running, "speed": clock.speed}


class DatabaseClock:
    """The database's clock for a long-lived reader (the engine): `refresh()` re-reads it (at each
    iteration), `now()` is then synchronous. Before the first refresh it is the wall clock."""

    def __init__(self, conn: asyncpg.Pool) -> None:
        self._conn = conn
        self.clock: Clock = SystemClock()

    async def refresh(self) -> Clock:
        self.clock = await current_clock(self._conn)
        return self.clock

    def now(self) -> datetime:
        return self.clock.now()


def is_market_clock(clock: Clock) -> bool:
    """Whether `clock` is a market's time rather than the wall clock (a simulated or fixed clock)."""
    if isinstance(clock, DatabaseClock):
        clock = clock.clock
    return not isinstance(clock, SystemClock)
