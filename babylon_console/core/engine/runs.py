"""Engine runs: the `console_runs` table (one row per run, its stage and its heartbeat), liveness
rules, and the model's lock (`console_engine_tokens` plus an advisory lock).

Lock: an engine trains a model only while it holds the model's advisory lock, on a connection of
its own, and the fencing token naming its run. Every engine write checks the token in its own
transaction (`fenced_write`), so a run that lost its lock with its connection (a database restart)
and was replaced writes nothing more, even before it notices.

An engine writes its row when it starts, its stage at every stage change, and a heartbeat every
`heartbeat_s` seconds from a task of its own (so a long stage still beats). Any process reads the
rows: a run whose heartbeat is later than `STALE_AFTER` intervals is *stale*, later than
`DEAD_AFTER` intervals *dead*. A dead run's row is closed by the next engine that takes the
model's lock (the lock proves the old one is gone).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from ..errors import EXIT_BUSY, Failed
from ..jsonvalue import decoded

LOCK_NAMESPACE = 0x656E67  # "eng": advisory lock (namespace, hash of the training key)
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
    EVALUATE = "evaluate"  # a new checkpoint on held-out windows (BABYLON_EVAL_EVERY)
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
    return RunRow(
        id=r["id"], model_name=r["model_name"], backend=r["backend"], judge=r["judge"], state=r["state"],
        stage=r["stage"], host=r["host"], pid=r["pid"], iteration=r["iteration"], step=r["step"],
        error=r["error"], started_at=r["started_at"], stopped_at=r["stopped_at"], heartbeat_s=r["heartbeat_s"],
        heartbeat_age_s=None if r["heartbeat_age"] is None else float(r["heartbeat_age"]),
        stage_age_s=None if r["stage_age"] is None else float(r["stage_age"]),
        config=decoded(r["config"]) or {},
    )


async def latest(pool: asyncpg.Pool | asyncpg.Connection, limit: int = 1) -> list[RunRow]:
    return [_row(r) for r in await pool.fetch(f"{_SELECT} ORDER BY started_at DESC LIMIT $1", limit)]


async def latest_per_model(pool: asyncpg.Pool | asyncpg.Connection) -> list[RunRow]:
    """The newest run of each (model, backend), newest first."""
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (model_name, backend) * FROM ({_SELECT}) r "
        "ORDER BY model_name, backend, started_at DESC")
    return sorted((_row(r) for r in rows), key=lambda r: r.started_at or datetime.min, reverse=True)


async def latest_of_model(pool: asyncpg.Pool | asyncpg.Connection, model_name: str) -> RunRow | None:
    """The newest run of this model (any backend, any process): the one a console follows."""
    row = await pool.fetchrow(f"{_SELECT} WHERE model_name = $1 ORDER BY started_at DESC LIMIT 1", model_name)
    return _row(row) if row is not None else None


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


# -- the model's lock and the write fence ----------------------------------------------------------


class LockLost(Failed, RuntimeError):
    """This run no longer holds its model's lock (another engine took it); it stops without writing.
    Not an outage: trying again cannot help while the other engine holds the lock."""

    exit_code = EXIT_BUSY
    title = "Lock lost"


async def take_lock(pool: asyncpg.Pool, training_key: str, run_id: str) -> asyncpg.Connection | None:
    """The model's advisory lock on a connection of its own (None: another engine holds it), and the
    fencing token naming this run. The caller keeps the connection until `drop_lock`."""
    conn = await pool.acquire()
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_NAMESPACE, training_key):
            await pool.release(conn)
            return None
        await conn.execute(
            "INSERT INTO console_engine_tokens (training_key, run_id) VALUES ($1, $2) ON CONFLICT (training_key) "
            "DO UPDATE SET run_id = EXCLUDED.run_id, taken_at = now()", training_key, run_id)
    except BaseException:
        with contextlib.suppress(Exception):  # the connection may be dead already: the original error matters
            await pool.release(conn)
        raise
    return conn


async def drop_lock(pool: asyncpg.Pool, conn: asyncpg.Connection, training_key: str) -> None:
    with contextlib.suppress(Exception):  # a lock lost with its connection is gone already
        await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_NAMESPACE, training_key)
    with contextlib.suppress(Exception):
        await pool.release(conn)


@contextlib.asynccontextmanager
async def fenced_write(pool: asyncpg.Pool, training_key: str, run_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction committed only while `run_id` holds the model's fencing token. FOR SHARE makes
    a takeover wait for writes in flight, and those writes see the takeover."""
    async with pool.acquire() as conn, conn.transaction():
        holder = await conn.fetchval(
            "SELECT run_id FROM console_engine_tokens WHERE training_key = $1 FOR SHARE", training_key)
        if holder != run_id:
            raise LockLost(f"run {holder} now holds model {training_key!r}: this run "
                           f"({run_id}) lost its lock and writes nothing more")
        yield conn
