"""Who may act, enforced by the server: the group roles of `db roles create`, tried as login roles
through the real code paths (the registry, the engine, the gateway's routing and call log, the CLI) and
with hand-written SQL. After each refusal nothing has changed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.clock import SystemClock
from babylon_console.core.config import Settings
from babylon_console.core.db import permissions, roles
from babylon_console.core.db.connections import with_database
from babylon_console.core.errors import EXIT_FAILED, Refused, as_console_error
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from tests.factories import hour_with_held_out

runner = CliRunner()
REFUSED = asyncpg.InsufficientPrivilegeError


def invoke(*args: str, url: str, **env: str):
    return runner.invoke(app, list(args), env={"DATABASE_URL": url, "BABYLON_SETTLE_SECONDS": "0", **env},
                         catch_exceptions=False)


def as_login(url: str, login: str) -> str:
    """The same database, logged in as `login` (the embedded server trusts its unix socket)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{login}@{parts.hostname or ''}"))


Login = Callable[[str], Awaitable[str]]


@pytest.fixture
async def roles_url(database_url: str) -> str:
    """A migrated database with the group roles created (as the superuser the tests run as)."""
    conn = await asyncpg.connect(database_url)
    try:
        await roles.create(conn)
    finally:
        await conn.close()
    return database_url


@pytest.fixture
async def login(roles_url: str) -> AsyncIterator[Login]:
    """`await login("operator")`: the URL of a new login role, member of that group (roles are
    cluster-wide: unique names, dropped afterwards)."""
    made: list[str] = []
    admin = await asyncpg.connect(roles_url)

    async def make(kind: str) -> str:
        name = f"t_{kind}_{uuid.uuid4().hex[:8]}"
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        made.append(name)
        await roles.grant(admin, name, roles.Kind(kind))
        return as_login(roles_url, name)

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


async def _checkpoints(url: str) -> None:
    """Three checkpoints of ours, one live, and a recorded earlier promotion (what rollback returns to)."""
    conn = await asyncpg.connect(url)
    now = datetime(2026, 1, 5, 12, 0)
    try:
        for i, status in enumerate(("archived", "deployed", "registered")):
            await conn.execute(
                'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt", '
                '"updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, $6)',
                f"m{i}", f"step-{i}", "base", status, f"offline://m{i}", now)
        await conn.execute("INSERT INTO console_promotions (action, operator, from_model_id, to_model_id, share) "
                           "VALUES ('promote', 'setup', 'm0', 'm1', 1.0)")
    finally:
        await conn.close()


async def _state(url: str) -> dict[str, object]:
    """What a refused action must leave as it was."""
    conn = await asyncpg.connect(url)
    try:
        return {
            "models": [tuple(r) for r in await conn.fetch(
                'SELECT "modelId", status, "deployedAt", "archivedAt", "updatedAt" FROM trained_models ORDER BY 1')],
            "rollout": [tuple(r) for r in await conn.fetch("SELECT * FROM console_rollout")],
            "rollouts": await conn.fetchval("SELECT count(*) FROM console_rollouts"),
            "audit": await conn.fetchval("SELECT count(*) FROM console_promotions"),
            "events": await conn.fetchval("SELECT count(*) FROM console_events"),
            "trajectories": [tuple(r) for r in await conn.fetch(
                'SELECT "trajectoryId", "usedInTraining", "trainedInBatch" FROM trajectories ORDER BY 1')],
        }
    finally:
        await conn.close()


async def _pool(url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    return pool


# -- create, grant, list -------------------------------------------------------------------------


async def test_create_is_idempotent_and_print_shows_what_it_runs(roles_url: str) -> None:
    script = roles.script()
    assert script.startswith("BEGIN;") and script.rstrip().endswith("COMMIT;")
    assert all(f"{s};" in script for s in roles.create_statements())
    conn = await asyncpg.connect(roles_url)
    try:
        before = await roles.groups(conn)
        assert await roles.create(conn) == len(roles.create_statements())  # a rerun changes nothing
        assert await roles.groups(conn) == before
        # a privilege granted by hand beyond the list is taken back by a rerun
        await conn.execute("GRANT UPDATE ON trajectories TO babylon_operator")
        await roles.create(conn)
        assert await roles.groups(conn) == before
    finally:
        await conn.close()
    groups, guarded = before
    assert guarded
    held = {g.kind: g.privileges for g in groups}
    # observer: reads what the console shows, writes nothing
    assert set(held[roles.Kind.OBSERVER]) >= {"trained_models", "trajectories", "console_events", "console_serving"}
    assert all(p == ("SELECT",) for p in held[roles.Kind.OBSERVER].values())

    def writes(kind: roles.Kind) -> set[str]:
        return {t for t, p in held[kind].items() if set(p) - {"SELECT"}}

    # operator: the registry, the rollout, the hold-out, engine commands; no game trajectories, no training
    assert writes(roles.Kind.OPERATOR) == {
        "trained_models", "console_promotions", "console_rollout", "console_rollouts", "console_events",
        "console_holdout", "console_engine_commands", "console_evaluations", "console_alarms"}
    # engine: what training writes, and what ending a rollout writes; the rollout is never started
    assert writes(roles.Kind.ENGINE) == {
        "training_batches", "trained_models", "trajectories", "console_runs", "console_engine_tokens",
        "console_engine_commands", "console_events", "console_judgments", "console_trained_windows",
        "console_window_verdicts", "console_evaluations", "console_rollout", "console_rollouts",
        "console_promotions", "console_step_health", "console_alarms"}
    assert held[roles.Kind.ENGINE]["console_rollout"] == ("SELECT", "DELETE")
    # gateway: the routing and its own log, nothing else
    assert held[roles.Kind.GATEWAY] == {
        "trained_models": ("SELECT",), "console_rollout": ("SELECT",), "console_rollouts": ("SELECT",),
        "console_serving": ("SELECT",), "console_schema_migrations": ("SELECT",),
        "console_gateway_calls": ("SELECT", "INSERT", "DELETE"), "console_gateways": ("SELECT", "INSERT", "UPDATE")}


async def test_cli_create_grant_list_and_bad_input(roles_url: str, login: Login) -> None:
    printed = await asyncio.to_thread(invoke, "db", "roles", "create", "--print", url="postgresql://x@127.0.0.1:9/d")
    assert printed.exit_code == 0 and "CREATE ROLE babylon_observer NOLOGIN" in printed.output  # no connection made
    created = await asyncio.to_thread(invoke, "db", "roles", "create", "--json", url=roles_url)
    assert created.exit_code == 0, created.output
    assert orjson.loads(created.output)["roles"] == [k.role_name for k in roles.GROUPS]

    name = f"t_alice_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(roles_url)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        granted = await asyncio.to_thread(invoke, "db", "roles", "grant", name, "operator", url=roles_url)
        assert granted.exit_code == 0 and f"{name} is now a member of babylon_operator" in granted.output
        again = await asyncio.to_thread(invoke, "db", "roles", "grant", name, "operator", url=roles_url)
        assert again.exit_code == 0 and "already a member" in again.output
        listed = orjson.loads((await asyncio.to_thread(invoke, "db", "roles", "list", "--json", url=roles_url)).output)
        members = {r["role"]: r["members"] for r in listed["roles"]}
        assert name in members["babylon_operator"] and name not in members["babylon_observer"]
        assert listed["guard"] is True
        table = await asyncio.to_thread(invoke, "db", "roles", "list", url=roles_url)
        assert table.exit_code == 0 and "babylon_gateway" in table.output and "installed" in table.output
        revoked = await asyncio.to_thread(invoke, "db", "roles", "revoke", name, "operator", url=roles_url)
        assert revoked.exit_code == 0 and "no longer a member" in revoked.output

        unknown = await asyncio.to_thread(invoke, "db", "roles", "grant", "t_nobody_here", "observer", url=roles_url)
        assert unknown.exit_code == 2 and "no role 't_nobody_here'" in unknown.output
        assert "CREATE ROLE" in unknown.output and "Traceback" not in unknown.output
        bad_kind = await asyncio.to_thread(invoke, "db", "roles", "grant", name, "admin", url=roles_url)
        assert bad_kind.exit_code == 2
        group = await asyncio.to_thread(invoke, "db", "roles", "grant", "babylon_engine", "operator", url=roles_url)
        assert group.exit_code == 2 and "group roles" in group.output

        # a role that may not create roles is told who may, in one line, exit 1
        observer = await login("observer")
        denied = await asyncio.to_thread(invoke, "db", "roles", "create", url=observer)
        assert denied.exit_code == EXIT_FAILED, denied.output
        assert denied.output.startswith("error: database role t_observer_") and "CREATEROLE" in denied.output
        assert "--print" in denied.output and "Traceback" not in denied.output
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


# -- observer --------------------------------------------------------------------------------------


async def test_an_observer_reads_and_is_refused_every_write_by_the_server(roles_url: str, login: Login) -> None:
    await _checkpoints(roles_url)
    observer = await login("observer")
    before = await _state(roles_url)

    listed = await asyncio.to_thread(invoke, "models", "list", "--json", url=observer)  # opens (and migrates) as it
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.output)["live"] == "m1"
    for command in (["windows", "--json"], ["status"], ["db", "status"], ["models", "ab", "--json"], ["holdout"],
                    ["db", "roles", "list"]):
        shown = await asyncio.to_thread(invoke, *command, url=observer)
        assert shown.exit_code == 0, (command, shown.output)

    # the CLI asks the server what this login may do before it asks anything: one line naming the group
    promoted = await asyncio.to_thread(invoke, "models", "promote", "m2", url=observer)  # no -y: refused unasked
    assert promoted.exit_code == EXIT_FAILED
    name = urlsplit(observer).username
    assert promoted.output.splitlines() == [
        f"error: database role {name} is an observer and may not promote: that needs babylon_operator "
        f"(`babylon-console db roles grant {name} operator`)"], promoted.output
    rolled = await asyncio.to_thread(invoke, "models", "rollback", url=observer)
    assert rolled.exit_code == EXIT_FAILED and rolled.output.startswith(
        f"error: database role {name} is an observer and may not roll back: that needs babylon_operator"), rolled.output
    held = await asyncio.to_thread(invoke, "holdout", "--share", "0.2", "--reason", "why", url=observer)
    assert held.exit_code == EXIT_FAILED and held.output.startswith(
        f"error: database role {name} is an observer and may not set the hold-out: that needs babylon_operator"), \
        held.output
    paused = await asyncio.to_thread(invoke, "control", "pause", url=observer)
    assert paused.exit_code == EXIT_FAILED and "may not pause an engine: that needs babylon_operator" in paused.output

    pool = await _pool(observer)
    try:
        with pytest.raises(REFUSED):
            await Registry(pool).promote("m2", operator="eve")
        with pytest.raises(REFUSED):
            await Registry(pool).rollback(operator="eve")
        for sql in ("UPDATE trained_models SET status = 'deployed' WHERE \"modelId\" = 'm2'",
                    "UPDATE trained_models SET status = 'archived'",
                    "INSERT INTO console_rollout (candidate_model_id, candidate_share) VALUES ('m2', 0.5)",
                    "DELETE FROM console_rollout",
                    "INSERT INTO console_promotions (action, operator) VALUES ('promote', 'eve')",
                    "INSERT INTO console_holdout (share, rule, set_by) VALUES (0.2, 'v1', 'eve')",
                    "INSERT INTO console_engine_commands (run_id, command, operator) VALUES ('r', 'stop', 'eve')",
                    "INSERT INTO console_events (kind) VALUES ('forged')",
                    'UPDATE trajectories SET "usedInTraining" = true'):
            with pytest.raises(REFUSED):
                await pool.execute(sql)
        # LISTEN needs no grant: an observer follows events
        async with pool.acquire() as conn:
            def heard(*_: object) -> None:
                pass

            await conn.add_listener("babylon_console_events", heard)
            await conn.remove_listener("babylon_console_events", heard)
    finally:
        await pool.close()
    assert await _state(roles_url) == before


# -- operator --------------------------------------------------------------------------------------


async def test_an_operator_promotes_and_rolls_back_and_is_refused_the_game_and_training(
        roles_url: str, login: Login) -> None:
    await _checkpoints(roles_url)
    operator = await login("operator")
    name = urlsplit(operator).username
    pool = await _pool(operator)
    try:
        registry = Registry(pool)
        ab = await registry.promote("m2", share=0.25, operator="alice")
        assert ab.action == "rollout" and (await registry.rollout()).candidate_model_id == "m2"
        live = await registry.promote("m2", operator="alice")
        assert live.action == "promote" and (await registry.live()).model_id == "m2"
        back = await registry.rollback(operator="alice")
        assert back.to_model_id == "m1" and (await registry.live()).model_id == "m1"

        before = await _state(roles_url)
        for sql in ('UPDATE trajectories SET "usedInTraining" = true',
                    'INSERT INTO trajectories (id) VALUES (\'forged\')',
                    "INSERT INTO training_batches (id) VALUES ('forged')",
                    "INSERT INTO trained_models (id) VALUES ('forged')",
                    "UPDATE trained_models SET \"avgReward\" = 1",
                    "INSERT INTO console_runs (id, model_name, backend, judge) VALUES ('r', 'm', 'b', 'j')",
                    "INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
                    "VALUES ('t', 'w', 'j', 1, 'x')",
                    "DELETE FROM console_gateway_calls"):
            with pytest.raises(REFUSED):
                await pool.execute(sql)
        assert await _state(roles_url) == before
    finally:
        await pool.close()
    # the CLI too
    promoted = await asyncio.to_thread(invoke, "models", "promote", "m2", "-y", "--operator", "alice", url=operator)
    assert promoted.exit_code == 0 and "m2 is live" in promoted.output
    # every audit row and event names the database role, next to the name the client gave
    conn = await asyncpg.connect(roles_url)
    try:
        audit = await conn.fetch("SELECT operator, db_role, db_login FROM console_promotions WHERE operator = 'alice'")
        assert len(audit) == 4 and all((r["db_role"], r["db_login"]) == (name, name) for r in audit)
        rollouts = await conn.fetch("SELECT db_role FROM console_rollouts")
        assert [r["db_role"] for r in rollouts] == [name]
        events = await conn.fetch("SELECT kind, db_role FROM console_events WHERE kind IN ('promoted', 'rolled_back')")
        assert len(events) == 4 and {r["db_role"] for r in events} == {name}
        setup = await conn.fetchrow("SELECT db_role FROM console_promotions WHERE operator = 'setup'")
        assert setup["db_role"] == await conn.fetchval("SELECT current_user")  # the superuser who wrote it
    finally:
        await conn.close()


async def test_operator_hold_out_and_engine_commands_are_recorded_with_the_database_role(
        roles_url: str, login: Login) -> None:
    from babylon_console.core.checkpoints.holdout import set_holdout
    from babylon_console.core.engine import control

    operator = await login("operator")
    name = urlsplit(operator).username
    pool = await _pool(operator)
    try:
        await set_holdout(pool, 0.2, operator="alice", reason=None)
        await control.send(pool, "run-1", "pause", "alice")
        # a client naming another role is overruled by the server
        await pool.execute("INSERT INTO console_holdout (share, rule, set_by, reason, db_role, db_login) "
                           "VALUES (0.3, 'v1', 'alice', 'why', 'postgres', 'postgres')")
    finally:
        await pool.close()
    conn = await asyncpg.connect(roles_url)
    try:
        held = await conn.fetch("SELECT set_by, db_role, db_login FROM console_holdout ORDER BY id")
        assert [tuple(r) for r in held] == [("alice", name, name)] * 2
        command = await conn.fetchrow("SELECT operator, db_role, db_login FROM console_engine_commands")
        assert tuple(command) == ("alice", name, name)
        event = await conn.fetchrow("SELECT db_role FROM console_events WHERE kind = 'holdout_set'")
        assert event["db_role"] == name
    finally:
        await conn.close()


# -- engine ----------------------------------------------------------------------------------------



async def test_the_engine_trains_and_rolls_a_rollout_back_but_never_promotes(
        pool: asyncpg.Pool, roles_url: str, login: Login) -> None:
    from babylon_console.core.checkpoints.holdout import set_holdout
    from babylon_console.core.engine import control

    now = hour_with_held_out(SystemClock().now(), windows=6, share=0.4, held=(3, 4))
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=5), windows=6, now=now)
    await set_holdout(pool, 0.4, operator="setup", reason=None)  # windows to evaluate on

    engine = await login("engine")
    name = urlsplit(engine).username
    trained = await asyncio.to_thread(invoke, "train", "--iterations", "1", "--min-steps", "5", "--json", url=engine,
                                      BABYLON_EVAL_EVERY="1")  # each checkpoint evaluated, as the engine may
    assert trained.exit_code == 0, trained.output
    assert orjson.loads(trained.output)["steps"] == [1]
    model_id = await pool.fetchval('SELECT "modelId" FROM trained_models')
    assert await pool.fetchval('SELECT count(*) FROM trajectories WHERE "usedInTraining"') > 0
    runs = await pool.fetch("SELECT DISTINCT db_role FROM console_events WHERE run_id IS NOT NULL")
    assert [r["db_role"] for r in runs] == [name]
    said = await pool.fetch("SELECT payload->>'message' AS m FROM console_events WHERE kind IN ('warning', 'error')")
    assert [w["m"] for w in said] == []  # nothing it tried was refused
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations") == 1  # evaluated it, too

    # the engine may not promote: not through the registry, not by hand, not by a new row
    await _checkpoints(roles_url)
    before = await _state(roles_url)
    engine_pool = await _pool(engine)
    try:
        for act in (lambda: Registry(engine_pool).promote(model_id, operator="engine"),
                    lambda: Registry(engine_pool).promote(model_id, share=0.5, operator="engine"),
                    lambda: Registry(engine_pool).rollback(operator="engine")):  # to an earlier model: a promotion
            with pytest.raises(REFUSED):
                await act()
        with pytest.raises(REFUSED):
            await engine_pool.execute("UPDATE trained_models SET status = 'deployed' WHERE \"modelId\" = $1",
                                      model_id)
        with pytest.raises(REFUSED, match=f"database role {name} may not change which checkpoint is live"):
            await engine_pool.execute(
                'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "updatedAt") '
                "VALUES ('forged', 'forged', 'v', 'b', 'deployed', 'offline://forged', now())")
        with pytest.raises(REFUSED):
            await engine_pool.execute("INSERT INTO console_rollout (candidate_model_id, candidate_share) "
                                      "VALUES ($1, 0.5)", model_id)
        assert await _state(roles_url) == before

        # an A/B rollout an operator started, the gate rolls back as the engine
        operator_pool = await _pool(await login("operator"))
        try:
            started = await Registry(operator_pool).promote("m2", share=0.3, operator="alice")
            await control.send(operator_pool, "run-9", "pause", "alice")
        finally:
            await operator_pool.close()
        done = await Registry(engine_pool).rollback(operator="auto-rollback", rollout_id=started.rollout_id,
                                                    note="gate")
        assert done.action == "rollback" and await Registry(engine_pool).rollout() is None
        # and acknowledges an operator's command
        for command in await control.pending(engine_pool, "run-9"):
            await control.ack(engine_pool, command.id, "paused")
    finally:
        await engine_pool.close()
    ended = await pool.fetchrow("SELECT end_reason, db_role FROM console_rollouts WHERE id = $1", started.rollout_id)
    assert ended["end_reason"].startswith("rolled back by auto-rollback") and ended["db_role"] != name  # started by
    audit = await pool.fetchrow("SELECT operator, db_role FROM console_promotions ORDER BY id DESC LIMIT 1")
    assert tuple(audit) == ("auto-rollback", name)
    assert (await Registry(pool).live()).model_id == "m1"  # the live model never changed
    acked = await pool.fetchrow("SELECT result, db_role FROM console_engine_commands WHERE run_id = 'run-9'")
    assert acked["result"] == "paused" and acked["db_role"] != name  # the row names who sent it


# -- gateway ---------------------------------------------------------------------------------------


async def test_the_gateway_reads_the_routing_and_writes_its_log_only(roles_url: str, login: Login) -> None:
    from babylon_console.core.db.connections import open_database
    from babylon_console.core.gateway.calllog import CallLog, CallRow
    from babylon_console.core.gateway.heartbeat import Heartbeat
    from babylon_console.core.gateway.routing import read_table

    await _checkpoints(roles_url)
    gateway = await login("gateway")
    before = await _state(roles_url)
    settings = Settings(DATABASE_URL=gateway)  # type: ignore[call-arg]
    _, pool = await open_database(settings, max_size=2)  # as `babylon-console gateway` opens it (and migrates)
    try:
        async with pool.acquire() as conn:
            table = await read_table(conn)
        assert table.live is not None and table.live.model_id == "m1"
        calls = CallLog(pool, retention_days=30)
        calls.add(CallRow(datetime.now(UTC), "gw-1", "agent-1", None, "live", "m1", "offline", 200, 12.5))
        assert await calls.flush() and calls.written == 1
        assert await calls.purge() == 0
        heartbeat = Heartbeat(pool, "gw-1", "127.0.0.1:8787", 5.0, lambda: ("database", {}))
        await heartbeat.beat()
        await heartbeat.beat()
        await heartbeat.stop()
        for sql in ("SELECT * FROM console_runs", "SELECT * FROM trajectories", "SELECT * FROM llm_call_logs",
                    "SELECT * FROM console_events",
                    "INSERT INTO console_events (kind) VALUES ('forged')",
                    "UPDATE trained_models SET status = 'deployed' WHERE \"modelId\" = 'm2'",
                    "DELETE FROM console_rollout"):
            with pytest.raises(REFUSED):
                await pool.execute(sql)
        with pytest.raises(REFUSED):
            await Registry(pool).promote("m2", operator="gw")
    finally:
        await pool.close()
    assert await _state(roles_url) == before
    conn = await asyncpg.connect(roles_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM console_gateway_calls") == 1
        assert await conn.fetchval("SELECT stopped_at IS NOT NULL FROM console_gateways WHERE id = 'gw-1'")
    finally:
        await conn.close()


# -- refusals in words, the default without roles -----------------------------------------------


async def test_privileges_revoked_while_running_become_a_sentence(roles_url: str, login: Login) -> None:
    await _checkpoints(roles_url)
    operator = await login("operator")
    name = urlsplit(operator).username
    pool = await _pool(operator)
    try:
        admin = await asyncpg.connect(roles_url)
        try:
            await roles.grant(admin, name, roles.Kind.OPERATOR, revoke=True)
            await roles.grant(admin, name, roles.Kind.OBSERVER)
        finally:
            await admin.close()
        with pytest.raises(REFUSED) as info:
            await Registry(pool).promote("m2", operator="alice")
    finally:
        await pool.close()
    mapped = as_console_error(info.value)
    assert type(mapped) is Refused and mapped.code == EXIT_FAILED and "trained_models" in mapped.message
    assert "db roles" in mapped.message
    worded = roles.refusal(str(info.value).splitlines()[0], login=name, action="promote")
    assert worded.message == (
        f"database role {name} may not promote: the server refused it on trained_models; writing it needs "
        "babylon_operator (promote, roll back) or babylon_engine (register checkpoints; end an A/B rollout the gate "
        f"rolls back) (`babylon-console db roles grant {name} operator`)")
    assert worded.code == EXIT_FAILED


def test_refusals_in_words() -> None:
    guard = ("database role bob may not change which checkpoint is live (promote, roll back): that needs "
             "babylon_operator")
    assert roles.refusal(guard).message == guard
    assert as_console_error(asyncpg.InsufficientPrivilegeError(guard)).message == guard
    traj = roles.refusal("permission denied for table trajectories", login="carol")
    assert traj.message.startswith("database role carol is refused by the server on trajectories; writing it needs "
                                   "babylon_engine (mark trajectories trained)")
    assert "db roles grant carol engine" in traj.message
    seq = roles.refusal("permission denied for sequence console_holdout_id_seq", login="carol")
    assert "console_holdout" in seq.message and "babylon_operator" in seq.message
    owner = roles.refusal("permission denied for table console_sim_clock", login="carol")
    assert "only the owner" in owner.message
    schema = roles.refusal("permission denied for schema public", login="carol", action="run `db migrate`")
    assert schema.message.startswith("database role carol may not run `db migrate`") and "owner" in schema.message
    assert "CREATEROLE" in roles.refusal("permission denied to create role").message
    assert roles.login_role("postgresql://dave:pw@db.example/game") == "dave"
    assert roles.login_role("postgresql:///game?host=/tmp&user=erin") == "erin"


async def test_without_roles_the_embedded_default_is_one_superuser_as_before(database_url: str) -> None:
    await _checkpoints(database_url)
    pool = await _pool(database_url)
    try:
        result = await Registry(pool).promote("m2", operator="ops")
        assert result.action == "promote"
        assert not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1)",
                                       roles.GUARD_TRIGGER)
        me = await pool.fetchval("SELECT current_user")
        audit = await pool.fetchrow("SELECT db_role, db_login FROM console_promotions ORDER BY id DESC LIMIT 1")
        assert tuple(audit) == (me, me)
    finally:
        await pool.close()


async def test_a_new_login_on_an_up_to_date_schema_needs_no_create_privilege(roles_url: str, login: Login,
                                                                            pg_server: str) -> None:
    """Every command migrates on start-up: for a role that may not create tables, an up-to-date schema
    is nothing to do, not a refusal."""
    from babylon_console.core.db.migrations import migrate

    conn = await asyncpg.connect(await login("gateway"))
    try:
        assert await migrate(conn) == []
        assert not await conn.fetchval("SELECT has_schema_privilege('public', 'CREATE')")
    finally:
        await conn.close()
    assert with_database(pg_server, "x")  # the server URL form as_login rewrites


async def test_permissions_say_what_the_server_allows_each_role(database_url: str, roles_url: str,
                                                                login: Login) -> None:
    """What a client follows: the server's word on what this login may do."""
    expected = {"observer": (False, False, False), "operator": (True, True, True), "engine": (False, False, False),
                "gateway": (False, False, False)}
    for kind, (promote, holdout, commands) in expected.items():
        conn = await asyncpg.connect(await login(kind))
        try:
            allowed = await permissions.permissions(conn)
        finally:
            await conn.close()
        assert (allowed.promote, allowed.holdout, allowed.engine_commands) == (promote, holdout, commands), kind
        assert allowed.read_only is (kind != "operator") and allowed.role.startswith(f"t_{kind}_")
    conn = await asyncpg.connect(database_url)  # the superuser, as the embedded default is
    try:
        assert not (await permissions.permissions(conn)).read_only
    finally:
        await conn.close()
