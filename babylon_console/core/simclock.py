"""The accelerated clock of a live simulation, shared through the database.

sim_now = sim_epoch + (real_now - real_epoch) * speed. The live simulator publishes its clock in
`console_sim_clock` and refreshes a heartbeat; readers use it while the heartbeat is fresh and
fall back to the wall clock otherwise (a stopped demo leaves no frozen time behind).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from .clock import Clock, SystemClock

STALE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class SimulatedClock:
    real_epoch: datetime  # aware, UTC
    sim_epoch: datetime  # naive UTC
    speed: float  # simulated seconds per real second

    def now(self) -> datetime:
        elapsed = datetime.now(UTC) - self.real_epoch
        return self.sim_epoch + elapsed * self.speed

    def real_seconds_until(self, sim_moment: datetime) -> float:
        return max(0.0, (sim_moment - self.now()).total_seconds() / self.speed)


async def publish(conn: asyncpg.Connection | asyncpg.Pool, clock: SimulatedClock, namespace: str) -> None:
    await conn.execute(
        "INSERT INTO console_sim_clock (singleton, real_epoch, sim_epoch, speed, namespace, heartbeat_at) "
        "VALUES (true, $1, $2, $3, $4, now()) ON CONFLICT (singleton) DO UPDATE SET real_epoch = $1, "
        "sim_epoch = $2, speed = $3, namespace = $4, heartbeat_at = now()",
        clock.real_epoch, clock.sim_epoch, clock.speed, namespace,
    )


async def heartbeat(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    await conn.execute("UPDATE console_sim_clock SET heartbeat_at = now()")


async def retire(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    await conn.execute("DELETE FROM console_sim_clock")


async def current_clock(conn: asyncpg.Connection | asyncpg.Pool) -> Clock:
    """The live simulation's clock while its heartbeat is fresh, else the wall clock."""
    row = await conn.fetchrow(
        "SELECT real_epoch, sim_epoch, speed FROM console_sim_clock WHERE heartbeat_at > now() - $1::interval",
        STALE_AFTER,
    )
    if row is None:
        return SystemClock()
    return SimulatedClock(row["real_epoch"], row["sim_epoch"], row["speed"])
