"""Training health and alarms under the group roles, enforced by the server: the engine writes health
and raises alarms, an operator acknowledges (and may change nothing else of an alarm), an observer
reads, a gateway sees neither table."""

from __future__ import annotations

import asyncpg
import pytest

from babylon_console.core.db import permissions
from babylon_console.core.stats import Figure
from babylon_console.core.training import health_store
from babylon_console.core.training.alarms import AlarmRule, RaisedAlarm
from babylon_console.core.training.health import StepHealth

from ..role_logins import logins

REFUSED = asyncpg.InsufficientPrivilegeError
ALARM = RaisedAlarm(rule=AlarmRule.kl_spike, step=3, window_id=None, figures={"kl": 0.9, "z": 6.1}, threshold=4.0,
                    message="KL 0.90 is 6.1 robust z above the recent steps (threshold 4.0)")


async def _pool(url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    return pool


async def test_engine_writes_operator_acknowledges_observer_reads_gateway_sees_nothing(database_url: str) -> None:
    async with logins(database_url) as make:
        engine, operator, observer, gateway = [await _pool(await make(k))
                                               for k in ("engine", "operator", "observer", "gateway")]
        try:
            engine_role = await engine.fetchval("SELECT current_user")
            await health_store.save_health(engine, StepHealth(model_name="offline:m", step=3, kl=Figure.of(0.9)))
            await health_store.save_health(engine, StepHealth(model_name="offline:m", step=3, kl=Figure.of(0.8)))
            raised = await health_store.record_alarm(engine, ALARM, model_name="offline:m", run_id="r1")
            assert raised.db_role == engine_role
            with pytest.raises(REFUSED):  # the engine never acknowledges
                await health_store.acknowledge(engine, raised.id, operator="engine")
            with pytest.raises(asyncpg.CheckViolationError, match="raised unacknowledged"):  # not even as it raises
                await engine.execute(
                    "INSERT INTO console_alarms (model_name, rule, message, acknowledged_at, acknowledged_by, "
                    "acknowledged_db_role) VALUES ('offline:m', 'kl_spike', 'seen', now(), 'ana', 'babylon_operator')")

            # an observer reads both tables and writes neither
            assert [h.kl for h in await health_store.health_history(observer)] == [Figure.of(0.8)]
            assert [a.id for a in await health_store.alarms(observer)] == [raised.id]
            for sql in ("UPDATE console_alarms SET acknowledged_at = now(), acknowledged_by = 'eve'",
                        "UPDATE console_alarms SET figures = '{}'::jsonb",
                        "INSERT INTO console_alarms (model_name, rule, message) VALUES ('m', 'kl_spike', 'forged')",
                        "DELETE FROM console_alarms",
                        "UPDATE console_step_health SET health = '{}'::jsonb"):
                with pytest.raises(REFUSED):
                    await observer.execute(sql)
            with pytest.raises(REFUSED):
                await health_store.acknowledge(observer, raised.id, operator="eve")

            # an operator acknowledges: the acknowledgement's columns and nothing else
            for sql in ("UPDATE console_alarms SET figures = '{\"kl\": 0}'::jsonb",
                        "UPDATE console_alarms SET message = 'nothing happened'",
                        "UPDATE console_alarms SET acknowledged_db_role = 'someone'",
                        "INSERT INTO console_alarms (model_name, rule, message) VALUES ('m', 'kl_spike', 'forged')",
                        "DELETE FROM console_alarms",
                        "INSERT INTO console_step_health (model_name, step, health) VALUES ('m', 9, '{}'::jsonb)"):
                with pytest.raises(REFUSED):
                    await operator.execute(sql)
            operator_role = await operator.fetchval("SELECT current_user")
            done = await health_store.acknowledge(operator, raised.id, operator="ana", note="lr too high")
            assert (done.acknowledged_by, done.acknowledged_db_role, done.note) == ("ana", operator_role, "lr too high")
            assert done.figures == raised.figures and done.message == raised.message

            for table in ("console_alarms", "console_step_health"):
                with pytest.raises(REFUSED):
                    await gateway.fetch(f"SELECT * FROM {table}")
        finally:
            for pool in (engine, operator, observer, gateway):
                await pool.close()


async def test_permissions_say_who_may_acknowledge(database_url: str) -> None:
    async with logins(database_url) as make:
        for kind, may in (("observer", False), ("operator", True), ("engine", False), ("gateway", False)):
            conn = await asyncpg.connect(await make(kind))
            try:
                allowed = await permissions.permissions(conn)
            finally:
                await conn.close()
            assert allowed.may_acknowledge is may, kind
            if not may:
                refusal = allowed.refusal("acknowledge alarms")
                assert refusal.message.startswith(f"database role {allowed.role} is ")
                assert "may not acknowledge alarms: that needs babylon_operator" in refusal.message
    conn = await asyncpg.connect(database_url)  # the embedded superuser may
    try:
        assert (await permissions.permissions(conn)).may_acknowledge
    finally:
        await conn.close()
