"""The console follows the server's roles: a login that may do none of the console's actions opens
read-only by itself, its badge naming the role; an action the role may not do is refused naming the
group that may, before any dialog; a refusal by the server while the console runs (privileges changed)
is that sentence in a toast, and the console goes read-only. The embedded superuser: nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from babylon_console.core.config import Settings
from babylon_console.core.db import roles
from babylon_console.tui.data import ConsoleData
from babylon_console.tui.dialogs.confirm import ConfirmDialog
from babylon_console.tui.dialogs.promote import PromoteDialog

from ..role_logins import logins
from .conftest import SIZE, FixedClock, insert_model, wait_for
from .test_actions import live_model, open_checkpoints


@asynccontextmanager
async def _console_as(kind: str, database_url: str, make_app: Any,
                      tmp_path: Path) -> AsyncIterator[tuple[Any, Any, str]]:
    """The console, logged in as a new login of the group role `kind`, on the Checkpoints pane with one
    row: (app, pilot, the login's name)."""
    async with logins(database_url) as login:
        url = await login(kind)
        app = make_app(data=_data(url, tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await open_checkpoints(app, pilot, 1)
            yield app, pilot, str(urlsplit(url).username)


def _data(url: str, tmp_path: Path) -> ConsoleData:
    settings = Settings(database_url=url, data_dir=tmp_path / "data")  # type: ignore[arg-type]
    return ConsoleData(settings, clock=FixedClock(), label="test database", operator="tester")


async def test_an_observer_opens_read_only_by_itself(seeded: Any, database_url: str, make_app: Any,
                                                     tmp_path: Path) -> None:
    await insert_model(seeded, 1)
    async with _console_as("observer", database_url, make_app, tmp_path) as (app, pilot, name):
        await wait_for(lambda: app.read_only, what="read-only")
        assert app.main.read_only and app.data.read_only
        assert app.main.status.parts["mode"].plain == f"read-only: database role {name} is an observer"
        assert "READ-ONLY" in app.main.pane_bar.mode
        await pilot.press("P")  # refused before any dialog, naming the group that may
        assert app.screen is app.main and not isinstance(app.screen, PromoteDialog)
        said = (f"read-only: database role {name} is an observer and may not promote: that needs "
                f"babylon_operator (`babylon-console db roles grant {name} operator`)")
        assert any(said in t for t in app.toasts), app.toasts
        for key in ("R", "E", "space", "X"):
            await pilot.press(key)
            assert app.screen is app.main, key
        assert sum(f"database role {name} is an observer" in t for t in app.toasts) >= 5, app.toasts
        assert not any("started with --read-only" in t for t in app.toasts)  # the server's word, not a flag
    assert await live_model(seeded) is None


async def test_privileges_revoked_while_running_are_said_and_followed(seeded: Any, database_url: str, make_app: Any,
                                                                     tmp_path: Path) -> None:
    await insert_model(seeded, 1)
    async with _console_as("operator", database_url, make_app, tmp_path) as (app, pilot, name):
        assert not app.read_only and app.data.role_refusal("promote") is None
        admin = await asyncpg.connect(database_url)
        try:  # the administrator takes it back while the console runs
            await roles.grant(admin, name, roles.Kind.OPERATOR, revoke=True)
            await roles.grant(admin, name, roles.Kind.OBSERVER)
        finally:
            await admin.close()
        await pilot.press("P")
        assert isinstance(app.screen, PromoteDialog)  # the console still thinks it may
        await pilot.press("tab", "enter")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        said = f"Promotion refused: database role {name} is an observer and may not promote: that needs " \
               "babylon_operator"
        await wait_for(lambda: any(t.startswith(said) for t in app.toasts), what="refusal toast")
        assert not any("failed" in t for t in app.toasts), app.toasts  # a refusal, not a failure
        await wait_for(lambda: app.read_only, what="read-only")  # it follows the server from now on
        assert app.main.status.parts["mode"].plain == f"read-only: database role {name} is an observer"
    assert await live_model(seeded) is None


async def test_a_role_refused_one_action_is_refused_just_that(database_url: str, tmp_path: Path) -> None:
    async with logins(database_url) as login:
        operator = await login("operator")
        admin = await asyncpg.connect(database_url)
        try:  # on this database the operators may no longer send engine commands
            await admin.execute("REVOKE INSERT ON console_engine_commands FROM babylon_operator")
        finally:
            await admin.close()
        data = _data(operator, tmp_path)
        await data.connect()
        try:
            assert data.role_badge is None and data.role_refusal("promote") is None
            assert data.role_refusal("evaluate") is None and data.role_refusal("start_engine") is None
            refused = data.role_refusal("toggle_pause")
            assert refused is not None and refused.startswith(
                f"database role {urlsplit(operator).username} may not pause or resume an engine: babylon_operator "
                "does not hold the grant on this database")
        finally:
            await data.close()


async def test_the_embedded_superuser_changes_nothing(seeded: Any, make_app: Any) -> None:
    await insert_model(seeded, 1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 1)
        assert app.data.permissions is not None and app.data.permissions.group is None
        assert app.data.role_badge is None and not app.read_only and "mode" not in app.main.status.parts
        assert all(app.data.role_refusal(a) is None for a in ("promote", "rollback", "evaluate", "toggle_pause",
                                                                "stop_engine", "start_engine"))
        await pilot.press("P")
        assert isinstance(app.screen, PromoteDialog)


async def test_an_operator_promotes_and_the_audit_names_its_database_role(seeded: Any, database_url: str,
                                                                          make_app: Any, tmp_path: Path) -> None:
    from textual.widgets import Static

    from .conftest import plain

    model = await insert_model(seeded, 1)
    async with _console_as("operator", database_url, make_app, tmp_path) as (app, pilot, name):
        await pilot.press("P")
        await pilot.press("tab", "enter")
        await pilot.press("y")
        await wait_for(lambda: any(t.startswith("Promoted:") for t in app.toasts), what="promotion")
        title = app.main.query_one("#checkpoints-audit-title", Static)
        await wait_for(lambda: f"row 1, tester: database role {name}" in plain(title), what="audit title")
        assert not app.read_only and "mode" not in app.main.status.parts
    assert await live_model(seeded) == model
    assert tuple(await seeded.fetchrow("SELECT operator, db_role, db_login FROM console_promotions")) == (
        "tester", name, name)
