"""Controlling an engine that runs in another process or on another machine, through the database.

A console (or `babylon-console control`) writes a command row (pause, resume or stop, with the
operator) and announces it with NOTIFY; the engine listens, and also looks on every heartbeat in
case a notification was lost. It applies the command, then acknowledges it with what it did. The
sender waits for the acknowledgement and says so when none comes within its timeout.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

CHANNEL = "console_engine_commands"
Command = Literal["pause", "resume", "stop"]


class CommandRow(BaseModel):
    id: int
    run_id: str
    command: str
    operator: str
    created_at: datetime | None = None
    acked_at: datetime | None = None
    result: str | None = None


def default_operator() -> str:
    """Who acts, as recorded with commands and promotions: user@host."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "operator"
    return f"{user}@{socket.gethostname()}"


async def send(pool: asyncpg.Pool, run_id: str, command: Command, operator: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        command_id = await conn.fetchval(
            "INSERT INTO console_engine_commands (run_id, command, operator) VALUES ($1, $2, $3) RETURNING id",
            run_id, command, operator)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, run_id)
    return int(command_id)


async def wait_ack(pool: asyncpg.Pool, command_id: int, timeout_s: float) -> CommandRow | None:
    """The acknowledged command, or None when the engine did not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await pool.fetchrow("SELECT * FROM console_engine_commands WHERE id = $1", command_id)
        if row is not None and row["acked_at"] is not None:
            return CommandRow(**dict(row))
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.1)


async def pending(conn: asyncpg.Pool | asyncpg.Connection, run_id: str) -> list[CommandRow]:
    rows = await conn.fetch("SELECT * FROM console_engine_commands WHERE run_id = $1 AND acked_at IS NULL "
                            "ORDER BY id", run_id)
    return [CommandRow(**dict(r)) for r in rows]


async def ack(conn: asyncpg.Pool | asyncpg.Connection, command_id: int, result: str) -> None:
    await conn.execute("UPDATE console_engine_commands SET acked_at = now(), result = $2 WHERE id = $1",
                       command_id, result)
