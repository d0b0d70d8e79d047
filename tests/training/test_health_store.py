"""Training health and alarms, stored: a step's health round-trips and a repaired step overwrites it;
rows of another version read as far as they go, an unreadable one is skipped and logged; alarms are
listed newest first and acknowledged once, with who by the client's and the server's word."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from babylon_console.core import events
from babylon_console.core.errors import EXIT_FAILED, EXIT_UNAVAILABLE
from babylon_console.core.stats import Figure
from babylon_console.core.training import health_store
from babylon_console.core.training.alarms import AlarmRule, RaisedAlarm
from babylon_console.core.training.health import StepHealth, WindowHealth
from babylon_console.core.training.health_store import AlarmAlreadyAcknowledged, AlarmNotFound


def _health(step: int, model: str = "offline:m", **changes: object) -> StepHealth:
    window = WindowHealth(window_id=f"2025-11-24T1{step}:00", agents=6, rank_correlation=Figure.of(0.6),
                          judge_mean=Figure.of(0.5), pnl_mean=Figure.lacking("no settled outcome"))
    health = StepHealth(model_name=model, step=step, run_id="r1", groups=4, zero_spread_share=Figure.of(0.25),
                        reward_mean=Figure.of(0.5), reward_std=Figure.of(0.1), kl=Figure.lacking("no KL metric"),
                        entropy=Figure.of(1.2), tokens_per_call=Figure.of(40.0), action_mix={"hold": 3, "buy": 1},
                        action_entropy=Figure.of(0.81), windows=[window], rank_correlation=Figure.of(0.6))
    return health.model_copy(update=changes)


def _alarm(step: int | None = 4, rule: AlarmRule = AlarmRule.judge_disagrees, **changes: object) -> RaisedAlarm:
    alarm = RaisedAlarm(rule=rule, step=step, window_id=None, figures={"rank_correlation_rolling": -0.4},
                        threshold=0.0, message="the judge disagrees with realised P&L: rolling rank correlation -0.40")
    return alarm.model_copy(update=changes)


async def test_health_round_trips_and_a_step_stored_again_overwrites(pool: asyncpg.Pool) -> None:
    for step in (1, 2, 3):
        await health_store.save_health(pool, _health(step))
    await health_store.save_health(pool, _health(1, model="offline:other"))
    await health_store.save_health(pool, _health(2, reward_mean=Figure.of(0.9)))  # recovered, trained again

    history = await health_store.health_history(pool, "offline:m")
    assert [h.step for h in history] == [1, 2, 3]  # in step order: step 2 trained again keeps its place
    again = history[1]
    assert again.reward_mean == Figure.of(0.9) and again.created_at is not None
    assert again.model_dump(exclude={"created_at", "reward_mean"}) == _health(2).model_dump(
        exclude={"created_at", "reward_mean"})
    assert again.kl == Figure.lacking("no KL metric") and again.windows[0].pnl_mean.missing == "no settled outcome"
    assert [h.step for h in await health_store.health_history(pool, "offline:m", limit=2)] == [2, 3]
    every = await health_store.health_history(pool)  # every key: in the order they were written
    assert [(h.model_name, h.step) for h in every][-2:] == [("offline:other", 1), ("offline:m", 2)]
    assert [(h.model_name, h.step) for h in await health_store.health_history(pool, limit=1)] == [("offline:m", 2)]
    assert await health_store.health_history(pool, "offline:none") == []
    await health_store.record_alarm(pool, _alarm(), model_name="serverless:m", run_id=None)
    assert await health_store.training_keys(pool) == ["offline:m", "offline:other", "serverless:m"]
    assert await health_store.training_keys(pool, "m") == ["offline:m", "serverless:m"]
    assert await health_store.training_keys(pool, "offline:other") == ["offline:other"]
    assert await health_store.training_keys(pool, "other-model") == []


async def _raw_health(pool: asyncpg.Pool, step: int, health: str) -> None:
    await pool.execute("INSERT INTO console_step_health (model_name, step, run_id, health) VALUES ($1, $2, NULL, "
                       "$3::jsonb)", "offline:m", step, health)


async def test_rows_of_another_version_read_as_far_as_they_go(pool: asyncpg.Pool,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    await _raw_health(pool, 1, '{"model_name": "other", "step": 99, "groups": "many", "kl": "high", '
                               '"entropy": {"value": "1.5"}, "reward_mean": {"value": 0.5, "missing": null}, '
                               '"action_mix": {"hold": 2, "buy": "x"}, "windows": [{"window_id": "w"}, '
                               '{"window_id": "w2", "agents": 3, "rank_correlation": {"value": 0.2}, '
                               '"judge_mean": {}, "pnl_mean": {}}], "severity": 3}')
    await _raw_health(pool, 2, "{}")
    await _raw_health(pool, 3, "[1, 2]")  # not an object: unreadable
    await _raw_health(pool, 4, '"text"')
    with caplog.at_level(logging.WARNING):
        history = await health_store.health_history(pool)
    assert [h.step for h in history] == [1, 2]
    first = history[0]
    assert (first.model_name, first.step, first.groups) == ("offline:m", 1, 0)  # the row's columns are its identity
    assert first.kl == Figure.lacking(health_store.UNREADABLE)
    assert first.entropy == Figure.of(1.5) and first.reward_mean == Figure.of(0.5)
    assert first.action_mix == {"hold": 2}
    assert [w.window_id for w in first.windows] == ["w2"]
    assert history[1] == StepHealth(model_name="offline:m", step=2, created_at=history[1].created_at)
    assert "skipped 2 stored health row(s)" in caplog.text


async def test_alarms_newest_first_by_model_and_open(pool: asyncpg.Pool) -> None:
    first = await health_store.record_alarm(pool, _alarm(3), model_name="offline:m", run_id="r1")
    second = await health_store.record_alarm(
        pool, _alarm(None, AlarmRule.kl_spike, window_id="2025-11-24T10:00", figures={"kl": float("nan"), "z": 5.0},
                     threshold=float("inf")), model_name="offline:m", run_id="r1")
    await health_store.record_alarm(pool, _alarm(1), model_name="offline:other", run_id=None)
    assert first.rule == "judge_disagrees" and first.db_role is not None and not first.acknowledged
    assert (second.figures, second.threshold, second.where) == ({"kl": None, "z": 5.0}, None, "window 2025-11-24T10:00")
    assert first.where == "step 3" and first.status == "open"

    listed = await health_store.alarms(pool, "offline:m")
    assert [a.id for a in listed] == [second.id, first.id]
    assert listed[1] == first
    assert len(await health_store.alarms(pool)) == 3 and len(await health_store.alarms(pool, limit=1)) == 1
    await health_store.acknowledge(pool, first.id, operator="ana")
    assert [a.id for a in await health_store.alarms(pool, "offline:m", open_only=True)] == [second.id]

    event = second.event(paused=True)
    assert event.summary == ("alarm kl_spike at window 2025-11-24T10:00: the judge disagrees with realised P&L: "
                             "rolling rank correlation -0.40 (engine paused)")


async def test_acknowledge_records_who_and_when_once_and_announces_it(pool: asyncpg.Pool) -> None:
    raised = await health_store.record_alarm(pool, _alarm(), model_name="offline:m", run_id="r1")
    mark = await events.last_event_id(pool)
    done = await health_store.acknowledge(pool, raised.id, operator="ana", note="judge swapped")
    role = await pool.fetchval("SELECT current_user")
    assert (done.acknowledged_by, done.acknowledged_db_role, done.note) == ("ana", role, "judge swapped")
    assert done.acknowledged_at is not None and done.figures == raised.figures
    assert done.status.startswith(f"acknowledged by ana (db {role}) at ") and done.status.endswith(": judge swapped")
    announced = await events.fetch_after(pool, mark)
    assert [e.data for e in announced] == [events.AlarmAcknowledged(
        alarm_id=raised.id, rule="judge_disagrees", operator="ana", db_role=role, message="judge swapped")]
    assert announced[0].run_id == "r1"

    with pytest.raises(AlarmAlreadyAcknowledged, match=f"alarm {raised.id} was already acknowledged by ana") as again:
        await health_store.acknowledge(pool, raised.id, operator="bob", note="mine")
    assert again.value.code == EXIT_FAILED and again.value.record == done
    assert (await health_store.alarms(pool))[0] == done  # unchanged
    assert await events.last_event_id(pool) == announced[0].id  # nothing announced
    with pytest.raises(asyncpg.CheckViolationError, match="already acknowledged"):  # the server's rule too
        await pool.execute("UPDATE console_alarms SET acknowledged_by = 'bob' WHERE id = $1", raised.id)

    with pytest.raises(AlarmNotFound, match="no alarm with id 999") as unknown:
        await health_store.acknowledge(pool, 999, operator="ana")
    assert unknown.value.code == EXIT_UNAVAILABLE


async def test_acknowledge_and_its_event_commit_together(pool: asyncpg.Pool) -> None:
    raised = await health_store.record_alarm(pool, _alarm(), model_name="offline:m", run_id=None)
    await pool.execute("ALTER TABLE console_events ADD CONSTRAINT no_acks CHECK (kind <> 'alarm_acknowledged')")
    with pytest.raises(asyncpg.CheckViolationError):
        await health_store.acknowledge(pool, raised.id, operator="ana")
    assert not (await health_store.alarms(pool))[0].acknowledged


async def test_stored_alarms_of_another_shape_read(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO console_alarms (model_name, rule, step, figures, message) VALUES "
                       "('offline:m', 'rule_of_tomorrow', 2, $1::jsonb, 'm'), "
                       "('offline:m', 'kl_spike', NULL, '[1]', 'n')",
                       '{"a": 1, "b": "x", "c": true, "d": null}')
    read = await health_store.alarms(pool)
    assert [(a.rule, a.figures, a.where) for a in read] == [("kl_spike", {}, "no step"),
                                                            ("rule_of_tomorrow", {"a": 1.0, "d": None}, "step 2")]
