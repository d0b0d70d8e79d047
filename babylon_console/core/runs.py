"""The `console_runs` table: one row per engine run, its stage and its heartbeat; liveness rules.

An engine writes its row when it starts, its stage at every stage change, and a heartbeat every
`heartbeat_s` seconds from a task of its own (so a long stage still beats). Any process reads the
rows: a run whose heartbeat is later than `STALE_AFTER` intervals is *stale*, later than
`DEAD_AFTER` intervals *dead*. A dead run's row is closed by the next engine that takes the
model's lock (the lock proves the old one is gone).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

STALE_AFTER = 3.0  # heartbeat intervals
DEAD_AFTER = 6.0
ACTIVE_STATES = ("starting", "running", "paused", "stopping")


class Liveness(StrEnum):
    LIVE = "live"
    STALE = "stale"
    DEAD = "dead"
    ENDED = "ended"  # the run stopped (or failed) and said so


class Stage(StrEnum):
    STARTING = "starting"
    SELECT = "select"
    READ = "read"
    JUDGE = "judge"
    TRAIN = "train"
    REGISTER = "register"
    WAIT = "waiting for windows"
    OUTAGE = "database unreachable"


class RunRow(BaseModel):
    id: str
    model_name: str
    backend: str
    judge: str
    state: str
    stage: str | None = None
    host: str | None = None
    pid: int | None = None
    iteration: int = 0
    step: int = 0
    error: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    heartbeat_s: float = 5.0
    heartbeat_age_s: float | None = None
    stage_age_s: float | None = None
    config: dict[str, Any] = {}

    @property
    def liveness(self) -> Liveness:
        return liveness(self.state, self.heartbeat_age_s, self.heartbeat_s)

    @property
    def run_id(self) -> str:
        return self.id

    @property
    def active(self) -> bool:
        """Running (or paused) and still beating, if late."""
        return self.liveness in (Liveness.LIVE, Liveness.STALE)


def liveness(state: str, heartbeat_age_s: float | None, heartbeat_s: float) -> Liveness:
    if state not in ACTIVE_STATES:
        return Liveness.ENDED
    if heartbeat_age_s is None:
        return Liveness.DEAD
    if heartbeat_age_s > DEAD_AFTER * heartbeat_s:
        return Liveness.DEAD
    if heartbeat_age_s > STALE_AFTER * heartbeat_s:
        return Liveness.STALE
    return Liveness.LIVE


_SELECT = ("SELECT *, extract(epoch FROM now() - heartbeat_at) AS heartbeat_age, "
           "extract(epoch FROM now() - stage_started_at) AS stage_age FROM console_runs")


def _row(r: asyncpg.Record) -> RunRow:
    config = r["config"]
    if isinstance(config, str):
        config = orjson.loads(config)
    return RunRow(
        id=r["id"], model_name=r["model_name"], backend=r["backend"], judge=r["judge"], state=r["state"],
        stage=r["stage"], host=r["host"], pid=r["pid"], iteration=r["iteration"], step=r["step"],
        error=r["error"], started_at=r["started_at"], stopped_at=r["stopped_at"], heartbeat_s=r["heartbeat_s"],
        heartbeat_age_s=None if r["heartbeat_age"] is None else float(r["heartbeat_age"]),
        stage_age_s=None if r["stage_age"] is None else float(r["stage_age"]),
        config=config or {},
    )


async def latest(pool: asyncpg.Pool | asyncpg.Connection, limit: int = 1) -> list[RunRow]:
    return [_row(r) for r in await pool.fetch(f"{_SELECT} ORDER BY started_at DESC LIMIT $1", limit)]


async def latest_per_model(pool: asyncpg.Pool | asyncpg.Connection) -> list[RunRow]:
    """The newest run of each (model, backend), newest first."""
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (model_name, backend) * FROM ({_SELECT}) r "
        "ORDER BY model_name, backend, started_at DESC")
    return sorted((_row(r) for r in rows), key=lambda r: r.started_at or datetime.min, reverse=True)


async def holder(pool: asyncpg.Pool | asyncpg.Connection, model_name: str, backend: str) -> RunRow | None:
    """The newest run of this model that says it is active (who holds the model, for messages)."""
    row = await pool.fetchrow(f"{_SELECT} WHERE model_name = $1 AND backend = $2 AND state = ANY($3::text[]) "
                              "ORDER BY started_at DESC LIMIT 1", model_name, backend, list(ACTIVE_STATES))
    return _row(row) if row is not None else None


async def start(pool: asyncpg.Pool, run_id: str, model_name: str, backend: str, judge: str,
                config: dict[str, Any], heartbeat_s: float) -> None:
    await pool.execute(
        "INSERT INTO console_runs (id, model_name, backend, judge, config, state, host, pid, stage, "
        "stage_started_at, heartbeat_s) VALUES ($1, $2, $3, $4, $5::jsonb, 'running', $6, $7, 'starting', now(), $8)",
        run_id, model_name, backend, judge, orjson.dumps(config).decode(), socket.gethostname(), os.getpid(),
        heartbeat_s,
    )


async def close_dead(pool: asyncpg.Pool, run_id: str, model_name: str, backend: str) -> list[str]:
    """Close the rows of runs of this model that still say they are active: called while holding
    the model's lock, which no live engine of the model can hold at the same time."""
    rows = await pool.fetch(
        "UPDATE console_runs SET state = 'dead', stopped_at = now(), "
        "error = coalesce(error, 'heartbeat stopped at ' || to_char(heartbeat_at, 'YYYY-MM-DD HH24:MI:SS TZ') "
        "|| '; closed by run ' || $1) "
        "WHERE model_name = $2 AND backend = $3 AND id <> $1 AND state = ANY($4::text[]) RETURNING id",
        run_id, model_name, backend, list(ACTIVE_STATES))
    return [r["id"] for r in rows]


async def set_stage(pool: asyncpg.Pool, run_id: str, stage: Stage) -> None:
    await pool.execute("UPDATE console_runs SET stage = $2, stage_started_at = now() WHERE id = $1",
                       run_id, stage.value)


async def heartbeat(pool: asyncpg.Pool, run_id: str, state: str, iteration: int, step: int) -> None:
    await pool.execute(
        "UPDATE console_runs SET heartbeat_at = now(), iteration = $2, step = $3, state = $4 WHERE id = $1",
        run_id, iteration, step, state)


async def finish(pool: asyncpg.Pool, run_id: str, state: str, error: str | None, iteration: int) -> None:
    await pool.execute(
        "UPDATE console_runs SET state = $2, stopped_at = now(), error = $3, iteration = $4, stage = NULL "
        "WHERE id = $1", run_id, state, error, iteration)
