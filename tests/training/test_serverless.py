"""`train --backend serverless` end to end against the W&B Training API double on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.clock import SystemClock
from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.game.store import GameStore
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.backends.factory import BackendUnavailable, check_serverless
from babylon_console.core.training.tokenization import load_tokenizer
from tests.fake_wandb_training import FakeWandbTraining

runner = CliRunner()
KEY = "local-test-key-" + "6c1f" * 8  # W&B checks the shape of a key (40+ characters)


def invoke(*args: str, env: dict[str, str]):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def _env(database_url: str, fake: FakeWandbTraining, tokenizer_dir: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "WANDB_API_KEY": KEY, "WANDB_ENTITY": "acme", "WANDB_MODE": "disabled",
            "BABYLON_SERVERLESS_BASE_URL": fake.base_url, "BABYLON_TOKENIZER": str(tokenizer_dir),
            "BABYLON_SETTLE_SECONDS": "0", "BABYLON_MIN_STEPS": "3", **extra}


def env_data_dir() -> str:
    import os

    return os.environ["BABYLON_DATA_DIR"]


async def _ready(pool: asyncpg.Pool) -> list[str]:
    readiness = await GameStore(pool).window_readiness(ReadinessCriteria(min_steps=3, settle_seconds=0),
                                                       SystemClock().now(), 48, "serverless:babylon-agent")
    return sorted(w.window_id for w in readiness if w.ready)


async def test_serverless_trains_registers_and_fails_cleanly(
    pool: asyncpg.Pool, database_url: str, tokenizer_dir: Path, resolved_hosts: list[str]
) -> None:
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=4), windows=4, now=SystemClock().now())
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        env = _env(database_url, fake, tokenizer_dir)
        two = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--iterations", "2",
                                      "--windows-per-iteration", "1", "--json", env=env)
        errors = [r["error"] for r in await pool.fetch("SELECT error FROM training_batches")]
        assert two.exit_code == 0, errors
        assert orjson.loads(two.stdout)["steps"] == [1, 2]
        assert all(j.trainable_tokens > 0 for j in fake.jobs.values()) and len(fake.jobs) == 2
        assert fake.auth_headers == {f"Bearer {KEY}"}  # the key from the settings reached ART
        rows = await pool.fetch('SELECT * FROM trained_models ORDER BY "modelId"')
        assert [r["modelId"] for r in rows] == [f"babylon-agent-serverless-step000{n}" for n in (1, 2)]
        assert [r["storagePath"] for r in rows] == [
            f"wandb-artifact:///acme/babylon-console/babylon-agent:step{n}" for n in (1, 2)]
        assert {r["wandbRunId"] for r in rows} == {"run-model-1"}
        for row, job in zip(rows, fake.jobs.values(), strict=True):
            metrics = orjson.loads(row["evalMetrics"])
            # What the service trained is what the engine counted before sending.
            assert metrics["data/step_trainable_assistant_tokens"] == job.trainable_tokens
            assert metrics["babylon/trainable_assistant_tokens"] == job.trainable_tokens
        left = await _ready(pool)
        assert len(left) == 2
        assert not (Path.cwd() / ".art").exists()  # ART's history lives under the data directory
        assert list((Path(env_data_dir()) / "checkpoints" / "serverless").rglob("history.jsonl"))

        fake.job_mode = "fail"
        failed = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--iterations", "1",
                                         "--windows-per-iteration", "1", "--json", env=env)
        assert failed.exit_code == 1, failed.output
        batch = await pool.fetchrow("SELECT * FROM training_batches ORDER BY \"createdAt\" DESC LIMIT 1")
        assert batch["status"] == "failed" and fake.fail_message in batch["error"]
        assert await _ready(pool) == left  # its window is free again

        fake.job_mode = "stuck"
        stuck = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--iterations", "1",
                                        "--windows-per-iteration", "1", "--json",
                                        env={**env, "BABYLON_TRAIN_TIMEOUT_S": "2.5"})
        assert stuck.exit_code == 1, stuck.output
        batch = await pool.fetchrow("SELECT * FROM training_batches ORDER BY \"createdAt\" DESC LIMIT 1")
        assert batch["status"] == "failed" and "did not finish within 2.5 s" in batch["error"]
        assert await _ready(pool) == left

        fake.job_mode = "empty"  # the service says it trained no token: not a checkpoint
        empty = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--iterations", "1",
                                        "--windows-per-iteration", "1", "--json", env=env)
        assert empty.exit_code == 1, empty.output
        batch = await pool.fetchrow("SELECT * FROM training_batches ORDER BY \"createdAt\" DESC LIMIT 1")
        assert batch["status"] == "failed" and "step_trainable_assistant_tokens = 0" in batch["error"]
        assert await pool.fetchval("SELECT count(*) FROM trained_models") == 2
        assert await pool.fetchval("SELECT count(*) FROM training_batches WHERE status = 'training'") == 0
        assert set(resolved_hosts) <= {"127.0.0.1", "localhost"}, set(resolved_hosts)  # WANDB_MODE=disabled
        assert await pool.fetchval('SELECT count(*) FROM trajectories WHERE "trainedInBatch" = $1',
                                   batch["batchId"]) == 0


async def test_serverless_refusal_and_unlisted_base_model_are_shown(
    pool: asyncpg.Pool, database_url: str, tokenizer_dir: Path
) -> None:
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=4), windows=1, now=SystemClock().now())
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir)), refuse_base_models=("acme/tiny-1b",)) as fake:
        env = _env(database_url, fake, tokenizer_dir, BABYLON_BASE_MODEL="acme/tiny-1b")
        refused = await asyncio.to_thread(invoke, "train", "--backend", "serverless", env=env)
        assert refused.exit_code == 1
        assert "not one W&B documents for serverless training" in refused.output  # a warning, not a refusal
        assert "acme/tiny-1b is not supported for serverless training" in refused.output  # the service's word
        assert KEY not in refused.output
        quiet = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--allow-unlisted-base-model",
                                        env=env)
        assert "not one W&B documents" not in quiet.output


def test_offline_wandb_mode_never_reaches_public_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in ("offline", "disabled"):
        monkeypatch.setenv("WANDB_MODE", mode)
        with pytest.raises(BackendUnavailable, match=f"WANDB_MODE={mode} forbids reaching W&B"):
            check_serverless("key")
        check_serverless("key", "http://127.0.0.1:9/v1")  # a deployment of one's own is fine
    with pytest.raises(BackendUnavailable, match="needs WANDB_API_KEY"):
        check_serverless(None)


async def test_a_key_only_in_dotenv_reaches_art(
    pool: asyncpg.Pool, database_url: str, tokenizer_dir: Path, tmp_path: Path
) -> None:
    import os

    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=4), windows=1, now=SystemClock().now())
    (tmp_path / ".env").write_text(f"WANDB_API_KEY={KEY}\nWANDB_ENTITY=dotenv-entity\n")  # the working directory
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        env = _env(database_url, fake, tokenizer_dir)
        del env["WANDB_API_KEY"], env["WANDB_ENTITY"]
        assert "WANDB_API_KEY" not in os.environ
        result = await asyncio.to_thread(invoke, "train", "--backend", "serverless", "--json", env=env)
        assert result.exit_code == 0, result.output
        assert fake.auth_headers == {f"Bearer {KEY}"}
        assert [m["entity"] for m in fake.models.values()] == ["dotenv-entity"]
        # ART's own W&B code reads os.environ only: the key from .env is there for it.
        assert os.environ.get("WANDB_API_KEY") == KEY
