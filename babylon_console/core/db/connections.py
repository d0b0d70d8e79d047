"""Connections: a PostgreSQL URL from settings, or the embedded server; asyncpg pools.

Every connection failure becomes `DatabaseUnavailable`, whose message is one line naming host and
database with the password masked, so the CLI can print it and exit 2 without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ..config import Settings, describe_dsn, masked_dsn
from ..errors import DatabaseUnavailable
from .embedded import EmbeddedServerError, start_embedded_server

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where to connect. `dsn` may hold a password: show `display` instead."""

    dsn: str
    embedded: bool

    @property
    def display(self) -> str:
        return masked_dsn(self.dsn)

    @property
    def host_and_database(self) -> tuple[str, str]:
        return describe_dsn(self.dsn)


def with_database(dsn: str, database: str) -> str:
    """The same server URL pointing at another database (the socket `host` query is kept)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def resolve_target(settings: Settings) -> DatabaseTarget:
    """The configured server, or the embedded one (started now if it is not running)."""
    if settings.database_url is not None:
        return DatabaseTarget(settings.database_url.get_secret_value(), embedded=False)
    try:
        uri = start_embedded_server(settings.pgdata)
    except EmbeddedServerError as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return DatabaseTarget(with_database(uri, settings.embedded_database), embedded=True)


def _unavailable(target: DatabaseTarget, exc: BaseException) -> DatabaseUnavailable:
    host, database = target.host_and_database
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {host}, database {database!r}: {reason}")


_CONNECT_ERRORS = (
    OSError,
    socket.gaierror,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ClientConfigurationError,
    ValueError,
)


async def database_exists(admin: asyncpg.Connection, name: str) -> bool:
    """Whether the server `admin` is connected to has database `name`."""
    return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def other_sessions(admin: asyncpg.Connection, name: str) -> int:
    """How many sessions but `admin`'s own are connected to database `name`."""
    return await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """Drop database `name`, never WITH (FORCE): `asyncpg.ObjectInUseError` while a session uses it."""
    await admin.execute(f'DROP DATABASE "{name}"')


async def server_version(conn: asyncpg.Connection) -> str:
    """The server's PostgreSQL version, as it reports it."""
    return await conn.fetchval("SHOW server_version")


async def ensure_database_exists(target: DatabaseTarget) -> None:
    """Create the embedded server's database on first use (external servers are never altered)."""
    _, database = target.host_and_database
    try:
        conn = await asyncpg.connect(with_database(target.dsn, "postgres"), timeout=CONNECT_TIMEOUT_S)
    except _CONNECT_ERRORS as exc:
        raise _unavailable(target, exc) from exc
    try:
        if not await database_exists(conn, database):
            # Another process may create it first.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def create_migrated_database(server_url: str, name: str, *, fresh: bool = False) -> str:
    """URL of database `name` on the server of `server_url`, created if missing (`fresh`: dropped
    first) and migrated. For tests and benchmarks that bring their own database."""
    from .migrations import migrate

    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        if fresh:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not await database_exists(admin, name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def connect(target: DatabaseTarget) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(target.dsn, timeout=CONNECT_TIMEOUT_S)
    except _CONNECT_ERRORS as exc:
        raise _unavailable(target, exc) from exc


async def connect_unmigrated(settings: Settings) -> tuple[DatabaseTarget, asyncpg.Connection]:
    """One connection without migrating (db status/migrate and doctor inspect the schema as it is)."""
    target = await asyncio.to_thread(resolve_target, settings)
    if target.embedded:
        await ensure_database_exists(target)
    return target, await connect(target)


async def create_pool(target: DatabaseTarget, *, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            target.dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=120,
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(target, exc) from exc
    assert pool is not None
    return pool


async def open_pool(settings: Settings, *, migrate: bool = True, max_size: int = 8) -> asyncpg.Pool:
    """Resolve the target, create the embedded database if needed, migrate, and return a pool."""
    return (await open_database(settings, migrate=migrate, max_size=max_size))[1]


async def open_database(
    settings: Settings, *, migrate: bool = True, max_size: int = 8
) -> tuple[DatabaseTarget, asyncpg.Pool]:
    """Like open_pool, also returning where it connected (for LISTEN connections and other pools)."""
    target = await asyncio.to_thread(resolve_target, settings)
    if target.embedded:
        await ensure_database_exists(target)
    pool = await create_pool(target, max_size=max_size)
    if migrate:
        from .migrations import migrate as run_migrations

        async with pool.acquire() as conn:
            await run_migrations(conn)
    return target, pool


async def ping(pool: asyncpg.Pool, limit_s: float) -> None:
    """Raise when the database does not answer a trivial query within `limit_s` seconds."""
    await asyncio.wait_for(pool.fetchval("SELECT 1"), limit_s)
