"""The status contract with the Prisma-era game: its own query (`getLatestRLModel()`) returns the live
model at every instant, or no row while nothing is live; rows the game wrote are never touched."""

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
from babylon_console.core.checkpoints.registry import Registry, RegistryError, game_serves, serving_mismatch
from babylon_console.core.clock import SystemClock
from babylon_console.core.db.migrations import migrate
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training import batches

# The game's query, exactly as it runs it: never our helper, so a drift in the helper shows here.
GAME_QUERY = """SELECT * FROM trained_models WHERE status IN ('ready','deployed') ORDER BY "createdAt" DESC LIMIT 1"""

COLUMNS = ('id, "modelId", version, "baseModel", "trainingBatch", status, "deployedAt", "archivedAt", '
           '"storagePath", "createdAt", "updatedAt"')


async def _register(pool: asyncpg.Pool, n: int) -> str:
    """A checkpoint registered the way the engine registers one (`batches.complete_batch`)."""
    model_id = f"babylon-agent-offline-step{n:04d}"
    async with pool.acquire() as conn, conn.transaction():
        await batches.complete_batch(
            conn, f"batch-{n}", model_name="offline:babylon-agent", model_id=model_id, step=n,
            base_model="offline/linear-softmax-policy", storage_path=f"offline://babylon-console/babylon-agent:step{n}",
            metrics={"loss/train": 0.1}, avg_reward=0.5, windows=[], trajectory_ids=[], wandb_run_id=None,
            clock=SystemClock())
    return model_id


async def _row(pool: asyncpg.Pool, model_id: str, status: str, storage: str, created: datetime) -> None:
    """A row written around the registry: by the game itself (a blob URL as storagePath), or by an
    earlier release of this project (one of our schemes)."""
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt", '
        '"updatedAt") VALUES ($1, $1, \'v1\', \'Qwen/Qwen3-8B\', $2, $3, $4, $4)', model_id, status, storage, created)


async def _served(pool: asyncpg.Pool) -> str | None:
    return await pool.fetchval(f'SELECT "modelId" FROM ({GAME_QUERY}) q')


async def _live(pool: asyncpg.Pool) -> str | None:
    return await pool.fetchval("""SELECT "modelId" FROM trained_models WHERE status = 'deployed'""")


async def test_a_new_checkpoint_is_registered_outside_what_the_game_serves(pool: asyncpg.Pool) -> None:
    model_id = await _register(pool, 1)
    row = await pool.fetchrow('SELECT status, "baseModel", "updatedAt" FROM trained_models WHERE "modelId" = $1',
                              model_id)
    assert row["status"] == "registered" and row["baseModel"] and row["updatedAt"] is not None
    assert await _served(pool) is None  # registered is not served: the game keeps its base model


@pytest.mark.parametrize("seed", range(6))
async def test_the_games_query_returns_the_live_model_after_every_action(pool: asyncpg.Pool, seed: int) -> None:
    rng = random.Random(seed)
    registry = Registry(pool)
    registered: list[str] = []
    promoted = False
    for n in range(1, 40):
        action = rng.choice(("register", "register", "promote", "ab", "rollback", "rollback_to"))
        live = await _live(pool)
        try:
            if action == "register" or not registered:
                registered.append(await _register(pool, len(registered) + 1))
            elif action == "promote":
                await registry.promote(rng.choice(registered), operator="prop")
                promoted = True
            elif action == "ab":
                await registry.promote(rng.choice(registered), share=rng.choice((0.1, 0.3, 0.5)), operator="prop")
            elif action == "rollback":
                await registry.rollback(operator="prop")
            else:
                await registry.rollback(operator="prop", to_model_id=rng.choice(registered))
        except RegistryError:
            pass  # a refused action changes nothing: the contract must still hold
        live = await _live(pool)
        assert await _served(pool) == live, (seed, n, action)
        assert (live is None) == (not promoted), (seed, n, action)
        served = await game_serves(pool)
        assert (served.model_id if served else None) == live
        # the previous live model was archived with its time; nothing of ours is 'ready'
        statuses = {r[0] for r in await pool.fetch("SELECT status FROM trained_models")}
        assert statuses <= {"registered", "deployed", "archived"}
        assert not await pool.fetchval("""SELECT count(*) FROM trained_models WHERE status = 'archived'
                                          AND "archivedAt" IS NULL""")
    assert promoted or await _served(pool) is None


async def test_rows_the_game_wrote_are_never_changed_nor_promotable(pool: asyncpg.Pool) -> None:
    old = datetime(2020, 1, 1)
    await _row(pool, "game-ready", "ready", "https://blob.example/models/v1.safetensors", old)
    await _row(pool, "game-rolled-back", "rolled_back", "https://blob.example/models/v0.safetensors", old)
    before = await pool.fetch(f'SELECT {COLUMNS} FROM trained_models ORDER BY id')
    registry = Registry(pool)
    for model_id in ("game-ready", "game-rolled-back"):
        with pytest.raises(RegistryError, match="written by the game"):
            await registry.promote(model_id, operator="op")
    first, second = await _register(pool, 1), await _register(pool, 2)
    await registry.promote(first, operator="op")
    assert await _served(pool) == first  # our live row is newer than the game's 'ready' one
    await registry.promote(second, operator="op")
    with pytest.raises(RegistryError, match="cannot roll back to game-rolled-back: written by the game"):
        await registry.rollback(operator="op", to_model_id="game-rolled-back")
    await registry.rollback(operator="op")
    assert await _served(pool) == first
    after = await pool.fetch(f'SELECT {COLUMNS} FROM trained_models WHERE "modelId" LIKE \'game-%\' ORDER BY id')
    assert after == before
    assert serving_mismatch(await registry.live(), await game_serves(pool)) is None


async def test_a_newer_ready_row_of_the_game_is_a_mismatch_named_in_the_warning(pool: asyncpg.Pool) -> None:
    registry = Registry(pool)
    await registry.promote(await _register(pool, 1), operator="op")
    await _row(pool, "game-newer", "ready", "https://blob.example/v2", datetime.now() + timedelta(days=1))
    warning = serving_mismatch(await registry.live(), await game_serves(pool))
    assert warning is not None
    assert "game-newer" in warning and "'ready'" in warning and "written by the game" in warning
    assert "not the live model babylon-agent-offline-step0001" in warning


async def test_the_migration_moves_only_our_ready_rows(pool: asyncpg.Pool) -> None:
    created = datetime(2025, 1, 1)
    ours = {"ours-offline": "offline://babylon-console/babylon-agent:step1",
            "ours-wandb": "wandb-artifact:///acme/babylon/babylon-agent:step2",
            "ours-local": "local-lora:///data/ckpt/0003?base=Qwen/Qwen3-8B"}
    for model_id, storage in ours.items():
        await _row(pool, model_id, "ready", storage, created)
    await _row(pool, "ours-live", "deployed", "offline://babylon-console/babylon-agent:step0", created)
    await _row(pool, "game-ready", "ready", "https://blob.example/v1", created)
    await _row(pool, "game-rolled-back", "rolled_back", "https://blob.example/v0", created)
    game_before = await pool.fetch(f"SELECT {COLUMNS} FROM trained_models WHERE \"modelId\" LIKE 'game-%' ORDER BY id")
    await pool.execute("DELETE FROM console_schema_migrations WHERE version = 15")  # as before this release
    async with pool.acquire() as conn:
        assert [m.version for m in await migrate(conn)] == [15]
    statuses = dict(await pool.fetch('SELECT "modelId", status FROM trained_models'))
    assert {k: statuses[k] for k in ours} == dict.fromkeys(ours, "registered")
    assert statuses["ours-live"] == "deployed"
    game_after = await pool.fetch(f"SELECT {COLUMNS} FROM trained_models WHERE \"modelId\" LIKE 'game-%' ORDER BY id")
    assert game_after == game_before


async def test_training_keeps_the_games_own_judgments(pool: asyncpg.Pool, tmp_path: Path) -> None:
    from babylon_console.core.config import Settings

    now = datetime(2026, 11, 24, 12, 20)
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), windows=3, now=now)
    judged_at = datetime(2026, 11, 24, 9, 0)
    await pool.execute('UPDATE trajectories SET "aiJudgeReward" = 0.123, "aiJudgeReasoning" = \'game judge\', '
                       '"judgedAt" = $1', judged_at)

    class Fixed:
        def now(self) -> datetime:
            return now

    config = EngineConfig(iterations=1, windows_per_iteration=2, min_agents=5, min_steps=4, lookback_hours=48,
                          max_per_group=6, judge_concurrency=2)
    summary = await Engine(pool, config, settings=Settings(BABYLON_DATA_DIR=str(tmp_path / "data")),  # type: ignore[call-arg]
                           clock=Fixed()).run()
    assert summary.steps == [1], summary.error
    ours = await pool.fetchval("SELECT count(*) FROM console_judgments")
    assert ours > 0
    trained = await pool.fetch('SELECT "aiJudgeReward", "aiJudgeReasoning", "judgedAt" FROM trajectories '
                               'WHERE "usedInTraining"')
    assert len(trained) == ours
    assert {tuple(r) for r in trained} == {(0.123, "game judge", judged_at)}


def _cli(database_url: str, tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["--database-url", database_url, "--data-dir", str(tmp_path), *args],
                              env={"COLUMNS": "200"}, catch_exceptions=False)


async def test_doctor_and_models_list_show_what_the_games_query_serves(pool: asyncpg.Pool, database_url: str,
                                                                       tmp_path: Path) -> None:
    live = await _register(pool, 1)
    await Registry(pool).promote(live, operator="op")

    async def shown() -> tuple[dict, dict, str]:
        doctor = await asyncio.to_thread(_cli, database_url, tmp_path, "doctor", "--json")
        check = next(c for c in orjson.loads(doctor.stdout)["checks"] if c["name"] == "game serves")
        listed = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "list", "--json")
        text = await asyncio.to_thread(_cli, database_url, tmp_path, "models", "list")
        assert listed.exit_code == 0 and text.exit_code == 0, text.output
        return check, orjson.loads(listed.stdout), text.output

    check, listed, text = await shown()
    assert check["verdict"] == "ok" and live in check["detail"]
    assert listed["game_serves"]["model_id"] == live and listed["serving_warning"] is None
    assert f"Game's query serves: {live}" in text and "warning" not in text
    # the game itself writes a newer 'ready' row: its query now serves that one, not our live model
    await _row(pool, "game-newer", "ready", "https://blob.example/v2", datetime.now() + timedelta(days=1))
    check, listed, text = await shown()
    assert check["verdict"] == "warn" and "game-newer" in check["detail"] and f"not the live model {live}" in \
        check["detail"]
    assert listed["live"] == live and listed["game_serves"] == {
        "model_id": "game-newer", "status": "ready", "storage_path": "https://blob.example/v2", "written_by": "game"}
    assert "game-newer" in listed["serving_warning"]
    game = next(m for m in listed["models"] if m["model_id"] == "game-newer")
    assert game["promotable"] is False and game["written_by"] == "game" and game["status"] == "ready"
    assert "Game's query serves: game-newer" in text and "warning: the game's query returns game-newer" in text


@pytest.mark.parametrize(("args", "env", "said"), [
    (["train", "--base-model", " "], {}, "invalid option: --base-model: Value error, must name the base model"),
    (["train"], {"BABYLON_BASE_MODEL": " "}, "invalid configuration: BABYLON_BASE_MODEL: Value error, must name"),
])
def test_an_empty_base_model_is_refused_before_anything_is_written(tmp_path: Path, args: list[str],
                                                                   env: dict[str, str], said: str) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args], env=env, catch_exceptions=False)
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output


async def test_a_deployed_row_the_game_wrote_is_never_our_live_model_nor_archived(pool: asyncpg.Pool) -> None:
    """"Live" took any 'deployed' row: a promotion archived the game's own row, and the serving view
    (which the gateway routes by) could name it as the live model."""
    from babylon_console.core.checkpoints.registry import serving

    await _row(pool, "game-deployed", "deployed", "https://blob.example/models/v3.safetensors", datetime(2020, 1, 1))
    before = await pool.fetch(f'SELECT {COLUMNS} FROM trained_models WHERE "modelId" = \'game-deployed\'')
    registry = Registry(pool)
    assert await registry.live() is None and await serving(pool) == []
    first, second = await _register(pool, 1), await _register(pool, 2)
    await registry.promote(first, operator="op")
    await registry.promote(second, operator="op")
    assert (await registry.live()).model_id == second  # type: ignore[union-attr]
    assert [(s.model_id, s.role) for s in await serving(pool)] == [(second, "live")]
    assert await pool.fetchval("SELECT status FROM trained_models WHERE \"modelId\" = $1", first) == "archived"
    await registry.rollback(operator="op")
    assert (await registry.live()).model_id == first  # type: ignore[union-attr]
    assert await pool.fetch(f'SELECT {COLUMNS} FROM trained_models WHERE "modelId" = \'game-deployed\'') == before
