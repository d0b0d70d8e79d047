"""Login roles for tests that act as one kind of client: the group roles of `db roles create` on a
test database, and new login roles made members of one (roles are cluster-wide: unique names,
dropped afterwards). The embedded test server trusts its unix socket, so a login needs no password."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from babylon_console.core.db import roles

Login = Callable[[str], Awaitable[str]]


def as_login(url: str, login: str) -> str:
    """The same database, logged in as `login`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{login}@{parts.hostname or ''}"))


@asynccontextmanager
async def logins(url: str) -> AsyncIterator[Login]:
    """Create the group roles on `url`'s database (as the superuser the tests run as); yields
    `await make("observer")`: the URL of a new login role, member of that group."""
    made: list[str] = []
    admin = await asyncpg.connect(url)
    try:
        await roles.create(admin)

        async def make(kind: str) -> str:
            name = f"t_{kind}_{uuid.uuid4().hex[:8]}"
            await admin.execute(f'CREATE ROLE "{name}" LOGIN')
            made.append(name)
            await roles.grant(admin, name, roles.Kind(kind))
            return as_login(url, name)

        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()
