"""Rollouts with an id, and evidence scoped to its rollout: a re-promotion starts at zero, the gate
and the automatic rollback never count a window from before the rollout started and cancel only
the rollout they judged; an A/B share needs a live arm. With the CLI's papercuts of the same
surface: no evidence said, an unknown model id is exit 2 before any question, the audit trail in
text says the reason and the evidence."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.evidence import _Row, ab_readout, first_window_of, readout_from_rows
from babylon_console.core.checkpoints.registry import NOTHING_LIVE, Registry, RegistryError, UnknownModel
from babylon_console.core.game import market_clock
from babylon_console.core.game.bulk import insert_rows
from babylon_console.core.game.windows import window_id_for, window_start_of

from ..factories import user_row
from .test_evidence import CAND, GATE, LIVE, _engine, _insert_window, _models

AGENTS = ("agent-a", "agent-b", "agent-c", "agent-d")


def _cli(database_url: str, tmp_path: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["--database-url", database_url, "--data-dir", str(tmp_path), *args],
                              input=stdin, env={"COLUMNS": "200"}, catch_exceptions=False)


async def _harmful(pool: asyncpg.Pool, window_ids: list[str], seed: int = 4) -> None:
    """Windows where the candidate's agents lose 20 and the live arm's win 5."""
    rnd = random.Random(seed)
    for window_id in window_ids:
        served = {"agent-a": LIVE[1], "agent-b": LIVE[1], "agent-c": CAND[1], "agent-d": CAND[1]}
        pnl = {a: (rnd.gauss(5, 1) if m == LIVE[1] else rnd.gauss(-20, 1)) for a, m in served.items()}
        await _insert_window(pool, window_id, served, pnl)


async def _hours_from_now(pool: asyncpg.Pool, *offsets: int) -> list[str]:
    """Window ids `offset` hours from the window the database's clock is in now."""
    now = (await market_clock.current_clock(pool)).now()
    return [window_id_for(window_start_of(now) + timedelta(hours=k)) for k in offsets]


async def _ab_models(pool: asyncpg.Pool, hours_ago: int) -> None:
    """LIVE live, CAND its A/B candidate at 50% since `hours_ago` hours before the database's now."""
    await insert_rows(pool, "User", [user_row(a) for a in AGENTS])
    now = (await market_clock.current_clock(pool)).now()
    await _models(pool, started=now - timedelta(hours=hours_ago))


# -- the readout of one rollout ------------------------------------------------------------------


def test_the_first_window_counted_is_the_first_that_opened_after_the_start() -> None:
    assert first_window_of(datetime(2026, 11, 24, 10, 30)) == "2026-11-24T11:00"
    assert first_window_of(datetime(2026, 11, 24, 10, 0)) == "2026-11-24T10:00"  # opened as it started


def test_rows_of_windows_before_the_rollout_are_not_counted() -> None:
    rows = []
    for hour in range(6):
        for i in range(3):
            rows.append(_Row(f"2026-11-24T{hour:02d}:00", f"a{i}", LIVE[1], 5.0 + i, None, None))
            rows.append(_Row(f"2026-11-24T{hour:02d}:00", f"b{i}", CAND[1], -20.0 - i, None, None))
    readout = readout_from_rows(rows, candidate=CAND, live=LIVE, asked=0.5, known={LIVE[1], CAND[1]}, gate=GATE,
                                rollout_id=7, started_at=datetime(2026, 11, 24, 3, 10))
    assert readout.rollout_id == 7 and readout.first_window == "2026-11-24T04:00"
    assert readout.difference is not None and readout.difference.windows == 2  # 04:00 and 05:00 only
    assert [w.window_id for w in readout.served] == ["2026-11-24T04:00", "2026-11-24T05:00"]
    assert readout.verdict == "collecting" and "since rollout 7 started" in readout.reasons[0]


def test_no_share_warning_when_the_candidate_has_no_live_arm() -> None:
    rows = [_Row(f"2026-11-24T0{h}:00", f"b{i}", CAND[1], 1.0, None, None) for h in range(3) for i in range(3)]
    readout = readout_from_rows(rows, candidate=CAND, live=None, asked=0.5, known={CAND[1]}, gate=GATE)
    assert not any("asked" in w for w in readout.warnings), readout.warnings  # served 100%: nobody asked 50%


# -- re-promotion, the gate, automatic rollback ---------------------------------------------------


async def test_a_re_promoted_candidate_starts_collecting_at_zero(pool: asyncpg.Pool, database_url: str,
                                                                 tmp_path: Path) -> None:
    await _ab_models(pool, hours_ago=6)
    await _harmful(pool, await _hours_from_now(pool, -5, -4, -3, -2, -1))
    first = await ab_readout(pool, GATE)
    assert first.rollout_id is not None and first.verdict == "rollback" and first.difference.windows == 5
    await Registry(pool).rollback(operator="op")  # rolled back; then the operator tries it again, deliberately
    again = await Registry(pool).promote(CAND[0], share=0.5, operator="op")
    assert again.rollout_id is not None and again.rollout_id != first.rollout_id
    readout = await ab_readout(pool, GATE)
    assert readout.rollout_id == again.rollout_id
    assert readout.difference is None and readout.served == [] and readout.verdict == "collecting"
    assert readout.reasons == [f"0 of 3 paired windows since rollout {again.rollout_id} started"]
    shown = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "ab", "--json")
    assert orjson.loads(shown.stdout)["rollout_id"] == again.rollout_id
    listed = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "list", "--json")
    assert orjson.loads(listed.stdout)["rollout"]["id"] == again.rollout_id
    listed = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "list")
    assert f"candidate {CAND[0]} at 50% (rollout {again.rollout_id})" in listed.output
    text = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "ab")
    assert f"A/B rollout {again.rollout_id}:" in text.output and "verdict: collecting" in text.output
    assert "counting windows from" in text.output and "rollback" not in text.output.split("verdict")[1]


async def test_the_gate_and_automatic_rollback_ignore_windows_before_the_rollout(pool: asyncpg.Pool,
                                                                                   tmp_path: Path) -> None:
    await _ab_models(pool, hours_ago=6)
    await _harmful(pool, await _hours_from_now(pool, -5, -4, -3))
    await Registry(pool).rollback(operator="op")
    rollout = (await Registry(pool).promote(CAND[0], share=0.5, operator="op")).rollout_id
    engine = _engine(pool, tmp_path, auto_rollback=True)
    await engine.watch_rollout()
    current = await Registry(pool).rollout()
    assert current is not None and current.id == rollout  # the old windows did not undo the re-test
    assert await pool.fetchval("SELECT count(*) FROM console_events WHERE kind = 'warning'") == 0
    # its own windows, harmful too: five, the first the anytime-valid bound can exclude zero at (three were
    # enough for the plain CI the gate used to read)
    await _harmful(pool, await _hours_from_now(pool, 1, 2, 3, 4, 5), seed=9)
    await engine.watch_rollout()
    assert await Registry(pool).rollout() is None
    audit = (await Registry(pool).audit(1))[0]
    assert audit.operator == "auto-rollback" and audit.rollout_id == rollout
    assert audit.evidence is not None and audit.evidence["rollout_id"] == rollout
    assert audit.evidence["difference"]["windows"] == 5  # its windows only
    ended = await pool.fetchrow("SELECT ended_at, end_reason FROM console_rollouts WHERE id = $1", rollout)
    assert ended["ended_at"] is not None and ended["end_reason"].startswith("rolled back by auto-rollback")


async def test_an_automatic_rollback_cancels_only_the_rollout_it_judged(pool: asyncpg.Pool) -> None:
    await _ab_models(pool, hours_ago=1)
    judged = (await Registry(pool).rollout()).id
    newer = (await Registry(pool).promote(CAND[0], share=0.25, operator="op")).rollout_id  # same candidate
    with pytest.raises(RegistryError, match=f"rollout {judged} is no longer running"):
        await Registry(pool).rollback(operator="auto-rollback", rollout_id=judged)
    assert (await Registry(pool).rollout()).id == newer


async def test_audit_rows_events_and_the_record_name_the_rollout(pool: asyncpg.Pool) -> None:
    await _ab_models(pool, hours_ago=1)
    registry = Registry(pool)
    started = (await registry.audit(1))[0]
    rollout = await registry.rollout()
    assert rollout is not None and started.action == "rollout" and started.rollout_id == rollout.id
    record = await pool.fetchrow("SELECT * FROM console_rollouts WHERE id = $1", rollout.id)
    assert (record["candidate_model_id"], record["live_model_id"], record["share"], record["started_by"]) == (
        CAND[0], LIVE[0], 0.5, "test")
    assert record["started_at"] is not None and record["ended_at"] is None
    serving = {r["role"]: r["rollout_id"] for r in await pool.fetch("SELECT * FROM console_serving")}
    assert serving == {"live": rollout.id, "candidate": rollout.id}
    done = await registry.promote(CAND[0], share=1.0, operator="op")  # the candidate made live ends it
    assert done.rollout_id == rollout.id and (await registry.audit(1))[0].rollout_id == rollout.id
    assert await pool.fetchval("SELECT end_reason FROM console_rollouts WHERE id = $1", rollout.id) == \
        "promoted to 100%"
    payloads = [orjson.loads(r[0]) for r in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'promoted' ORDER BY id")]
    assert [p.get("rollout_id") for p in payloads] == [None, rollout.id, rollout.id]


# -- an A/B share needs a live arm ---------------------------------------------------------------


async def test_an_ab_share_with_nothing_live_is_refused(pool: asyncpg.Pool, database_url: str,
                                                        tmp_path: Path) -> None:
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt", '
        '"updatedAt") VALUES ($1, $1, \'v\', \'base\', \'registered\', $2, now(), now())', CAND[0], CAND[1])
    with pytest.raises(RegistryError, match=NOTHING_LIVE):
        await Registry(pool).promote(CAND[0], share=0.5, operator="op")
    # refused before any question: no input is given, none is asked for
    result = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "promote", CAND[0], "--share", "0.5")
    assert result.exit_code == 1, result.output
    assert f"error: cannot serve {CAND[0]} to 50% of agents: {NOTHING_LIVE}" in result.output
    assert "?" not in result.output
    assert await Registry(pool).rollout() is None
    assert await pool.fetchval("SELECT count(*) FROM console_promotions") == 0
    assert await pool.fetchval("SELECT count(*) FROM console_rollouts") == 0


# -- the CLI's papercuts ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["models", "promote", "no-such-model"],
    ["models", "promote", "no-such-model", "--share", "0.5"],
    ["models", "rollback", "--to", "no-such-model"],
    ["models", "eval", "no-such-model", "--against", "base"],
    ["models", "eval", "m-live", "--against", "no-such-model"],
])
async def test_an_unknown_model_id_is_2_in_every_command_before_any_question(
        args: list[str], pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await _ab_models(pool, hours_ago=1)
    result = await asyncio.to_thread(_cli, database_url, tmp_path, *args)  # no input: a question would abort (1)
    assert result.exit_code == 2, result.output
    assert "no checkpoint with model id 'no-such-model'" in result.output and "?" not in result.output
    assert UnknownModel("x").code == 2


async def test_promoting_with_no_evidence_says_so(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await _ab_models(pool, hours_ago=1)
    await Registry(pool).rollback(operator="op")
    result = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "promote", CAND[0], "--yes")
    assert result.exit_code == 0, result.output
    assert (f"no evidence for {CAND[0]}: never evaluated on held-out windows, and no paired A/B windows"
            in result.output)
    assert (await Registry(pool).audit(1))[0].evidence == {
        "none": "never evaluated on held-out windows, no paired A/B windows"}


async def test_the_audit_trail_in_text_says_the_reason_and_the_evidence(pool: asyncpg.Pool, database_url: str,
                                                                         tmp_path: Path) -> None:
    await _ab_models(pool, hours_ago=6)
    await _harmful(pool, await _hours_from_now(pool, -5, -4, -3, -2, -1))  # five: the anytime-valid bound's first
    rollout = (await Registry(pool).rollout()).id
    await _engine(pool, tmp_path, auto_rollback=True).watch_rollout()
    # no rollout runs now, but the rollback of the last one is evidence against promoting it again
    refused = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "promote", CAND[0], "--yes")
    assert refused.exit_code == 1, refused.output
    assert f"against the evidence (rollout {rollout} was rolled back: candidate - live P&L" in refused.output
    assert "no evidence" not in refused.output and await Registry(pool).rollout() is None
    done = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "promote", CAND[0], "--yes",
                                   "--reason", "second look after the fix")
    assert done.exit_code == 0, done.output
    text = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "list", "--audit")
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "auto-rollback" in line)
    assert f"rollout {rollout}" in lines[start]
    assert lines[start + 1].strip().startswith("reason: automatic rollback: candidate - live P&L")
    assert lines[start + 2].strip().startswith(f"evidence: A/B rollout {rollout} rollback: candidate − live")
    assert "over 5 paired windows" in lines[start + 2]
    promoted = next(i for i, line in enumerate(lines) if "promote " in line and "-> m-cand" in line)
    assert lines[promoted + 1].strip().startswith(f"reason: against the evidence (rollout {rollout} was rolled back:")
    assert lines[promoted + 1].strip().endswith("): second look after the fix")
    assert lines[promoted + 2].strip().startswith(f"evidence: rollout {rollout} was rolled back: candidate - live")


async def test_a_rollout_running_before_the_migration_gets_a_record(pool: asyncpg.Pool) -> None:
    from importlib import resources

    await _ab_models(pool, hours_ago=1)
    await pool.execute("UPDATE console_rollout SET rollout_id = NULL")  # as a rollout started before 0014
    sql = (resources.files("babylon_console.core.db") / "migrations" / "0014_rollouts.sql").read_text()
    await pool.execute(sql)
    await pool.execute(sql)  # idempotent: one record, not two
    rollout = await Registry(pool).rollout()
    assert rollout is not None and rollout.id is not None and rollout.candidate_model_id == CAND[0]
    assert rollout.live_model_id == LIVE[0] and rollout.started_market_at is not None
    assert await pool.fetchval("SELECT count(*) FROM console_rollouts") == 2  # the registry's, and the backfill


async def test_a_long_rollout_counts_every_window_since_it_started(pool: asyncpg.Pool) -> None:
    """The anytime-valid bound holds for the whole sequence of a rollout's windows: the readout once kept
    only the newest 168, and a sequence that drops its oldest windows tests afresh at every look."""
    await _ab_models(pool, hours_ago=172)
    await _harmful(pool, await _hours_from_now(pool, *range(-171, 0)))
    readout = await ab_readout(pool, GATE)
    assert readout.difference is not None and readout.difference.windows == 171
