"""Engines heartbeat; a late one is shown stale, a silent one dead; the next engine closes its row;
every stage has a deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.config import Settings
from babylon_console.core.engine import runs
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training import batches
from babylon_console.core.training.judges import OutcomeJudge

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def test_liveness_rule() -> None:
    assert runs.liveness("running", 4.0, 5.0) is runs.Liveness.LIVE
    assert runs.liveness("running", 16.0, 5.0) is runs.Liveness.STALE  # three beats missed
    assert runs.liveness("paused", 31.0, 5.0) is runs.Liveness.DEAD  # six beats missed
    assert runs.liveness("running", None, 5.0) is runs.Liveness.DEAD
    assert runs.liveness("stopped", 9999.0, 5.0) is runs.Liveness.ENDED


async def _wait(predicate: Any, limit_s: float, what: str) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_killed_engine_is_shown_dead_and_its_row_closed_by_the_next(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "BABYLON_HEARTBEAT_S": "0.3",
           "BABYLON_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "babylon_console", "engine", "--quiet", "--poll-seconds", "0.2"]
    # Started once; the test then only polls the database.
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        async def beating() -> runs.RunRow | None:
            rows = await runs.latest(pool)
            return rows[0] if rows and rows[0].liveness is runs.Liveness.LIVE and rows[0].heartbeat_age_s < 1 \
                and rows[0].stage == runs.Stage.WAIT else None
        alive = await _wait(beating, 60, "a beating engine waiting for windows")
        db_env = {"DATABASE_URL": database_url}
        status = await asyncio.to_thread(CliRunner().invoke, app, ["status", "--json"], env=db_env)
        shown = orjson.loads(status.output)["runs"][0]
        assert status.exit_code == 0 and shown["liveness"] == "live" and shown["stage"] == "waiting for windows"
        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: its row still says running
        proc.wait(10)

        async def state() -> runs.Liveness:
            return (await runs.latest(pool))[0].liveness
        assert await _wait(lambda: _is(state, runs.Liveness.STALE), 3, "stale")
        assert await _wait(lambda: _is(state, runs.Liveness.DEAD), 3, "dead")  # within 6 beats (1.8 s)
        dead = await asyncio.to_thread(CliRunner().invoke, app, ["status"], env=db_env)  # 80 columns
        assert dead.exit_code == 1 and "dead" in dead.output

        settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
        summary = await Engine(pool, EngineConfig(iterations=1), settings=settings, clock=FixedClock()).run()
        row = await pool.fetchrow("SELECT state, error FROM console_runs WHERE id = $1", alive.id)
        assert row["state"] == "dead" and f"closed by run {summary.run_id}" in row["error"]
    finally:
        if proc.poll() is None:
            proc.kill()


async def _is(get: Any, expected: runs.Liveness) -> bool:
    return await get() is expected


class SlowJudge:
    name = "slow"

    async def judge(self, item: Any) -> Any:
        await asyncio.sleep(30)


async def _seed(pool: asyncpg.Pool) -> None:
    await seed_history(pool, Simulation(seed=5, n_agents=5, steps_per_window=4), windows=2, now=NOW)


def _engine(pool: asyncpg.Pool, tmp_path: Path, **config: Any) -> Engine:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    base = dict(iterations=1, windows_per_iteration=2, min_agents=3, min_steps=1, lookback_hours=48)
    judge = config.pop("judge", None)
    return Engine(pool, EngineConfig(**{**base, **config}), settings=settings, clock=FixedClock(), judge=judge)


async def test_a_judge_past_its_deadline_fails_its_window(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool)
    started = time.monotonic()
    summary = await _engine(pool, tmp_path, judge=SlowJudge(), judge_timeout_s=0.5).run()
    assert time.monotonic() - started < 25 and summary.steps == [] and len(summary.windows_failed) == 2
    errors = [r[0] for r in await pool.fetch("SELECT payload->>'message' FROM console_events WHERE kind = 'error'")]
    assert any("did not finish within 0.5 s (BABYLON_JUDGE_TIMEOUT_S)" in e for e in errors), errors


async def test_a_registration_past_its_deadline_fails_the_batch_and_frees_its_windows(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(pool)
    real = batches.complete_batch

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(30)
        await real(*args, **kwargs)

    monkeypatch.setattr(batches, "complete_batch", stuck)
    engine = _engine(pool, tmp_path, register_timeout_s=0.5, judge=OutcomeJudge())
    summary = await engine.run()
    assert summary.steps == [] and len(summary.windows_failed) == 2
    batch = await pool.fetchrow("SELECT status, error FROM training_batches")
    assert batch["status"] == "failed" and "registering step 1 did not finish within 0.5 s" in batch["error"]
    assert await pool.fetchval("SELECT count(*) FROM trained_models") == 0
    assert await pool.fetchval("SELECT count(*) FROM console_trained_windows") == 0  # windows free again
    monkeypatch.setattr(batches, "complete_batch", real)
    again = await _engine(pool, tmp_path, judge=OutcomeJudge()).run()
    assert len(again.windows_trained) == 2  # trained by the next run


async def test_a_read_past_its_deadline_leaves_the_windows_free(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(pool)
    engine = _engine(pool, tmp_path, read_timeout_s=0.3)

    async def slow(window_id: str) -> Any:
        await asyncio.sleep(30)

    monkeypatch.setattr(engine.store, "window_trajectories", slow)
    summary = await engine.run()
    assert summary.steps == [] and len(summary.windows_failed) == 2
    error = await pool.fetchval("SELECT payload->>'message' FROM console_events WHERE kind = 'error'")
    assert "did not finish within 0.3 s (BABYLON_READ_TIMEOUT_S)" in error
    assert await pool.fetchval("SELECT count(*) FROM training_batches") == 0


async def test_control_command_pauses_and_stops_an_engine_elsewhere(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    from babylon_console.core.engine.run_state import EngineState

    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    engine = Engine(pool, EngineConfig(iterations=None, poll_seconds=0.2, heartbeat_s=0.3), settings=settings,
                    clock=FixedClock())
    run = asyncio.create_task(engine.run())
    await _wait(lambda: _true(engine.state is EngineState.RUNNING), 30, "the engine running")
    env = {"DATABASE_URL": database_url}
    paused = await asyncio.to_thread(CliRunner().invoke, app, ["control", "pause", "--operator", "ops"], env=env)
    assert paused.exit_code == 0 and "pause acknowledged (running -> paused)" in paused.output, paused.output
    assert engine.state is EngineState.PAUSED
    stopped = await asyncio.to_thread(CliRunner().invoke, app, ["control", "stop"], env=env)
    assert stopped.exit_code == 0 and "stop acknowledged (paused -> stopping)" in stopped.output, stopped.output
    assert (await asyncio.wait_for(run, 20)).state is EngineState.STOPPED
    events = [r[0] for r in await pool.fetch("SELECT payload->>'message' FROM console_events ORDER BY id")]
    assert "paused by ops" in events
    none = await asyncio.to_thread(CliRunner().invoke, app, ["control", "resume"], env=env)
    assert none.exit_code == 1 and "no engine is running" in none.output


async def _true(value: bool) -> bool:
    return value
