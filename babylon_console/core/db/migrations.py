"""Versioned, idempotent SQL migrations.

Files `migrations/NNNN_name.sql` run in order, each in its own transaction, under a PostgreSQL
advisory lock so two processes never migrate at once. `console_schema_migrations` records what ran
(with a checksum, so an edited file that already ran is reported rather than silently skipped).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Arbitrary but fixed: hashtext('babylon_console.migrate') would do too, a literal is clearer.
MIGRATION_LOCK_KEY = 0x6261_6279_6C6F_6E31 & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied: bool
    applied_at: str | None
    checksum_matches: bool


def load_migrations() -> list[Migration]:
    folder = resources.files("babylon_console.core.db") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS console_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  checksum   TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; returns those applied now (empty when up to date)."""
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        # created only when missing: a role that may read the schema but not create in it (an observer,
        # an engine) finds nothing to do on an up-to-date database instead of a refusal
        if not await conn.fetchval("SELECT to_regclass('public.console_schema_migrations') IS NOT NULL"):
            await conn.execute(_VERSION_TABLE)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM console_schema_migrations")}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO console_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def status(conn: asyncpg.Connection) -> list[MigrationStatus]:
    has_table = await conn.fetchval("SELECT to_regclass('public.console_schema_migrations') IS NOT NULL")
    rows = (
        {r["version"]: r for r in await conn.fetch("SELECT * FROM console_schema_migrations")}
        if has_table
        else {}
    )
    result = []
    for migration in load_migrations():
        row = rows.get(migration.version)
        result.append(
            MigrationStatus(
                version=migration.version,
                name=migration.name,
                applied=row is not None,
                applied_at=row["applied_at"].isoformat(timespec="seconds") if row else None,
                checksum_matches=row is None or row["checksum"] == migration.checksum,
            )
        )
    return result
