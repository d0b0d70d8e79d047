"""Bulk writes with COPY (asyncpg's binary copy), one definition of column order (schema.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from .schema import LLM_CALL_COLUMNS, MARKET_OUTCOME_COLUMNS, TRAJECTORY_COLUMNS, USER_COLUMNS

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "User": USER_COLUMNS,
    "trajectories": TRAJECTORY_COLUMNS,
    "llm_call_logs": LLM_CALL_COLUMNS,
    "market_outcomes": MARKET_OUTCOME_COLUMNS,
}


async def copy_rows(
    conn: asyncpg.Connection,
    table: str,
    records: Iterable[Sequence[Any]],
    columns: Sequence[str] | None = None,
) -> int:
    """COPY `records` (tuples in `columns` order, default schema.py's) into `table`; returns the count."""
    records = list(records)
    if not records:
        return 0
    await conn.copy_records_to_table(table, records=records, columns=list(columns or TABLE_COLUMNS[table]))
    return len(records)


async def insert_rows(
    conn: asyncpg.Connection,
    table: str,
    records: Iterable[Sequence[Any]],
    columns: Sequence[str] | None = None,
    on_conflict_do_nothing: bool = False,
) -> int:
    """Row-by-row INSERT (the slow path COPY is measured against, and idempotent upserts of users)."""
    cols = list(columns or TABLE_COLUMNS[table])
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    quoted = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders})'
    if on_conflict_do_nothing:
        sql += " ON CONFLICT DO NOTHING"
    records = list(records)
    await conn.executemany(sql, records)
    return len(records)
