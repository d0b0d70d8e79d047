"""One clock per database: `windows`, `train` (the engine) and `status` agree on "now" in a database
with a simulated market's clock; a stopped market's clock stands still (never the wall clock's); and
checkpoints are ordered by when they were registered, with the market's time beside it."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.commands import models as models_command
from babylon_console.core.clock import SystemClock
from babylon_console.core.game import market_clock
from babylon_console.core.game.market_clock import SimulatedClock
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training import batches

runner = CliRunner()
AHEAD = timedelta(days=3)  # the simulated market runs days ahead of the wall clock, as the demo's does


def invoke(*args: str, env: dict[str, str]):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def _json(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code in (0, 1, 3), result.output
    return orjson.loads(result.stdout)


async def _publish_ahead(pool: asyncpg.Pool, speed: float = 1.0, started_ago: timedelta = timedelta(0)
                         ) -> SimulatedClock:
    wall = SystemClock().now()
    clock = SimulatedClock(datetime.now(UTC) - started_ago, wall + AHEAD, speed)
    await market_clock.publish(pool, clock, "test-market")
    return clock


async def test_windows_train_and_status_agree_while_the_market_runs(pool: asyncpg.Pool, database_url: str) -> None:
    clock = await _publish_ahead(pool)
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=5), windows=2, now=clock.now())
    env = {"DATABASE_URL": database_url, "BABYLON_SETTLE_SECONDS": "0"}

    listed = _json(await asyncio.to_thread(invoke, "windows", "--json", env=env))
    assert (listed["ready"], listed["total"]) == (2, 2), listed["verdict"]
    assert datetime.fromisoformat(listed["now"]) > SystemClock().now() + AHEAD - timedelta(hours=1)
    # the engine (no clock given) reads the same database clock: the two windows are ready for it too
    trained = await asyncio.to_thread(invoke, "train", "--iterations", "1", "--min-steps", "5", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    assert sorted(orjson.loads(trained.stdout)["windows_trained"]) == sorted(w["window_id"] for w in listed["windows"])
    status = _json(await asyncio.to_thread(invoke, "status", "--json", env=env))
    assert status["clock"]["kind"] == "simulated" and status["clock"]["running"] is True


async def test_a_stopped_market_clock_stands_still_instead_of_falling_back(pool: asyncpg.Pool,
                                                                           database_url: str) -> None:
    await _publish_ahead(pool, speed=360.0, started_ago=timedelta(minutes=5))
    # the market died a minute ago without a word: its last heartbeat's lease ran out
    await pool.execute("UPDATE console_sim_clock SET heartbeat_at = now() - interval '60 s'")

    first = await market_clock.current_clock(pool)
    await asyncio.sleep(0.05)
    second = await market_clock.current_clock(pool)
    assert isinstance(first, SimulatedClock) and not first.running
    assert first.now() == second.now() > SystemClock().now() + AHEAD  # still, and the market's time
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=5), windows=2, now=first.now())

    env = {"DATABASE_URL": database_url, "BABYLON_SETTLE_SECONDS": "0"}
    listed = _json(await asyncio.to_thread(invoke, "windows", "--json", env=env))
    assert listed["now"] == first.now().isoformat()
    assert listed["ready"] == 2 and not [w for w in listed["windows"] if w["state"] == "open"]


async def test_models_list_shows_the_newest_registration_first(pool: asyncpg.Pool, database_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    market = SimulatedClock(datetime.now(UTC), SystemClock().now() + timedelta(days=5), 360.0)
    async with pool.acquire() as conn:
        for step in range(1, 56):  # more than the list's default limit (50), dated days ahead by their market
            await batches.complete_batch(
                conn, f"batch-{step}", model_name="offline:babylon-agent", model_id=f"demo-step{step:04d}", step=step,
                base_model="base", storage_path=f"offline://demo/{step}", metrics={"loss/train": 0.1},
                avg_reward=0.5, windows=[], trajectory_ids=[], wandb_run_id=None, clock=market)
        await asyncio.sleep(0.01)
        await batches.complete_batch(  # the newest, by an engine on the wall clock
            conn, "batch-real", model_name="offline:babylon-agent", model_id="real-step0001", step=1,
            base_model="base", storage_path="offline://real/1", metrics={"loss/train": 0.2}, avg_reward=0.4,
            windows=[], trajectory_ids=[], wandb_run_id=None, clock=SystemClock())

    env = {"DATABASE_URL": database_url}
    models = _json(await asyncio.to_thread(invoke, "models", "list", "--json", env=env))["models"]
    assert len(models) == 50
    assert [m["model_id"] for m in models[:3]] == ["real-step0001", "demo-step0055", "demo-step0054"]
    assert models[0]["market_time"] is None  # the wall clock is no market's time
    assert datetime.fromisoformat(models[1]["market_time"]) > SystemClock().now() + timedelta(days=4)
    assert datetime.fromisoformat(models[1]["created_at"]) <= SystemClock().now()  # registered: the wall clock

    wide = Console(width=200, file=io.StringIO(), record=True)
    monkeypatch.setattr(models_command, "out", wide)
    await asyncio.to_thread(invoke, "models", "list", "--limit", "2", env=env)
    text = wide.export_text()
    assert "registered (UTC)" in text and "market time" in text
    assert text.index("real-step0001") < text.index("demo-step0055")


async def test_a_clock_an_earlier_version_left_behind_is_retired_by_the_migration(pool: asyncpg.Pool) -> None:
    """Earlier versions deleted the record on a clean stop and ran the demo in the operator's database:
    a stale record without `runs_until` is a crashed market's, and the database goes back to the wall
    clock; a record that a market keeps fresh, or one the current version paused, stays."""
    from importlib import resources

    sql = (resources.files("babylon_console.core.db") / "migrations" / "0013_sim_clock_pause.sql").read_text()
    await _publish_ahead(pool)
    await pool.execute("UPDATE console_sim_clock SET runs_until = NULL, heartbeat_at = now() - interval '1 hour'")
    await pool.execute(sql)
    assert isinstance(await market_clock.current_clock(pool), SystemClock)

    await _publish_ahead(pool)
    await market_clock.pause(pool)
    await pool.execute("UPDATE console_sim_clock SET heartbeat_at = now() - interval '1 hour'")
    await pool.execute(sql)  # a paused market of this version: still the database's clock
    assert isinstance(await market_clock.current_clock(pool), SimulatedClock)


async def test_seed_live_does_not_give_the_operators_database_a_market_clock_by_accident(
        pool: asyncpg.Pool, database_url: str) -> None:
    """A live market's clock becomes its database's for good: refused (nothing written) unless accepted,
    and `db wall-clock` returns the database to the wall clock once the market has stopped."""
    env = {"DATABASE_URL": database_url}
    live = ("seed", "--windows", "1", "--agents", "3", "--steps", "1", "--live", "--live-windows", "1",
            "--seconds-per-window", "0.5", "--policy-agents", "0")
    refused = await asyncio.to_thread(invoke, *live, env=env)
    assert refused.exit_code == 2 and "--simulated-database" in refused.output
    assert await pool.fetchval("SELECT count(*) FROM trajectories") == 0
    assert isinstance(await market_clock.current_clock(pool), SystemClock)

    accepted = await asyncio.to_thread(invoke, *live, "--simulated-database", env=env)
    assert accepted.exit_code == 0, accepted.output
    assert isinstance(await market_clock.current_clock(pool), SimulatedClock)  # standing still: the market stopped
    back = await asyncio.to_thread(invoke, "db", "wall-clock", "--yes", env=env)
    assert back.exit_code == 0 and "Wall clock restored" in back.output
    assert isinstance(await market_clock.current_clock(pool), SystemClock)
    again = await asyncio.to_thread(invoke, "db", "wall-clock", "--yes", env=env)
    assert again.exit_code == 0 and "already uses the wall clock" in again.output


async def test_the_wall_clock_is_not_taken_from_a_running_market(pool: asyncpg.Pool, database_url: str) -> None:
    await _publish_ahead(pool)  # a market beating now
    refused = await asyncio.to_thread(invoke, "db", "wall-clock", "--yes", env={"DATABASE_URL": database_url})
    assert refused.exit_code == 1 and "running" in refused.output
    assert isinstance(await market_clock.current_clock(pool), SimulatedClock)
