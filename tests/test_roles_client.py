"""The client follows the server: what a login may do, read from the server, decides what the CLI asks
and refuses, and the audit names the database role next to the name the client gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.db import permissions, roles
from babylon_console.core.errors import EXIT_FAILED

from .role_logins import Login, logins

runner = CliRunner()


def invoke(*args: str, url: str):
    return runner.invoke(app, list(args), env={"DATABASE_URL": url, "BABYLON_SETTLE_SECONDS": "0"},
                         catch_exceptions=False)


@pytest.fixture
async def login(database_url: str) -> AsyncIterator[Login]:
    async with logins(database_url) as make:
        yield make


async def _checkpoints(url: str) -> None:
    """Two checkpoints of ours, one live."""
    conn = await asyncpg.connect(url)
    try:
        for i, status in enumerate(("deployed", "registered")):
            await conn.execute(
                'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt", '
                '"updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, $6)',
                f"m{i}", f"step-{i}", "base", status, f"offline://m{i}", datetime(2026, 1, 5, 12, 0))
    finally:
        await conn.close()


async def test_permissions_name_the_group_each_login_acts_as(database_url: str, login: Login) -> None:
    for kind, article in (("observer", "an observer"), ("operator", "an operator"), ("engine", "an engine"),
                          ("gateway", "a gateway")):
        conn = await asyncpg.connect(await login(kind))
        try:
            allowed = await permissions.permissions(conn)
        finally:
            await conn.close()
        assert allowed.group is roles.Kind(kind)  # the widest: an operator is an observer too, by membership
        assert allowed.standing == f"database role {allowed.role} is {article}"
    observer = permissions.Permissions("alice", False, False, False, roles.Kind.OBSERVER)
    assert observer.refusal("promote").message == (
        "database role alice is an observer and may not promote: that needs babylon_operator "
        "(`babylon-console db roles grant alice operator`)")
    assert observer.refusal("promote").code == EXIT_FAILED
    nobody = permissions.Permissions("carol", False, False, False)
    assert nobody.refusal("evaluate", (roles.Kind.OPERATOR, roles.Kind.ENGINE)).message.startswith(
        "database role carol is in none of the console's groups and may not evaluate: that needs babylon_operator "
        "or babylon_engine (`babylon-console db roles grant carol operator`)")
    stale = permissions.Permissions("dave", True, False, True, roles.Kind.OPERATOR)  # its group lost a grant here
    assert "db roles create" in stale.refusal("set the hold-out").message
    conn = await asyncpg.connect(database_url)  # the superuser, as the embedded default is: in no group
    try:
        superuser = await permissions.permissions(conn)
    finally:
        await conn.close()
    assert superuser.group is None and not superuser.read_only


async def test_an_engine_login_is_refused_promote_before_any_question(database_url: str, login: Login) -> None:
    await _checkpoints(database_url)
    engine = await login("engine")
    name = urlsplit(engine).username
    promoted = await asyncio.to_thread(invoke, "models", "promote", "m1", url=engine)
    assert promoted.exit_code == EXIT_FAILED and promoted.output.splitlines() == [
        f"error: database role {name} is an engine and may not promote: that needs babylon_operator "
        f"(`babylon-console db roles grant {name} operator`)"]


async def test_the_audit_names_the_database_role_next_to_the_operator(database_url: str, login: Login) -> None:
    await _checkpoints(database_url)
    operator = await login("operator")
    name = urlsplit(operator).username
    promoted = await asyncio.to_thread(invoke, "models", "promote", "m1", "-y", "--operator", "alice", url=operator)
    assert promoted.exit_code == 0, promoted.output
    listed = await asyncio.to_thread(invoke, "models", "list", "--audit", url=operator)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if " promote " in line)
    assert f"promote  alice (db {name}): m0 -> m1" in line, line
    audit = orjson.loads((await asyncio.to_thread(invoke, "models", "list", "--json", url=operator)).output)["audit"]
    assert [(a["operator"], a["db_role"], a["db_login"]) for a in audit] == [("alice", name, name)]
