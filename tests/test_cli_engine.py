"""`train`, `models`, `inspect` from the shell, with the exit codes scripts rely on."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.clock import SystemClock
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

runner = CliRunner()


def invoke(*args: str, env: dict[str, str]):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


async def test_train_models_inspect(pool: asyncpg.Pool, database_url: str) -> None:
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=5), windows=2, now=SystemClock().now())
    env = {"DATABASE_URL": database_url, "BABYLON_SETTLE_SECONDS": "0"}  # the hour just closed counts too
    trained = await asyncio.to_thread(invoke, "train", "--iterations", "1", "--min-steps", "5", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    summary = orjson.loads(trained.output)
    assert summary["steps"] == [1] and len(summary["windows_trained"]) == 2
    nothing = await asyncio.to_thread(invoke, "train", "--iterations", "1", "--json", env=env)
    assert nothing.exit_code == 3 and orjson.loads(nothing.output)["steps"] == []

    listed = orjson.loads((await asyncio.to_thread(invoke, "models", "list", "--json", env=env)).output)
    model_id = listed["models"][0]["model_id"]
    assert listed["live"] is None and listed["models"][0]["promotable"] is True
    promoted = await asyncio.to_thread(invoke, "models", "promote", model_id, "-y", "--operator", "ci", env=env)
    assert promoted.exit_code == 0 and "is live" in promoted.output
    again = await asyncio.to_thread(invoke, "models", "promote", model_id, "-y", env=env)
    assert again.exit_code == 1 and "already live" in again.output
    back = await asyncio.to_thread(invoke, "models", "rollback", "-y", env=env)
    assert back.exit_code == 1 and "nothing to roll back" in back.output
    audit = orjson.loads((await asyncio.to_thread(invoke, "models", "list", "--json", env=env)).output)["audit"]
    assert [(a["action"], a["operator"]) for a in audit] == [("promote", "ci")]

    tid = await pool.fetchval('SELECT "trajectoryId" FROM trajectories WHERE "usedInTraining" LIMIT 1')
    shown = await asyncio.to_thread(invoke, "inspect", tid, env=env)
    assert shown.exit_code == 0 and "step 0" in shown.output and "outcome" in shown.output
    as_json = orjson.loads((await asyncio.to_thread(invoke, "inspect", tid, "--json", env=env)).output)
    assert as_json["trajectory"]["trajectory_id"] == tid and as_json["judgments"][0]["judge"] == "outcome"
    missing = await asyncio.to_thread(invoke, "inspect", "no-such-trajectory", env=env)
    assert missing.exit_code == 1 and "no trajectory" in missing.output


def test_train_rejects_bad_options() -> None:
    result = runner.invoke(app, ["train", "--learning-rate", "5"], env={"DATABASE_URL": "postgresql://x@127.0.0.1:9/d"})
    assert result.exit_code == 2 and "--learning-rate" in result.output  # the flag the user typed


def test_train_refuses_unusable_backends_and_judges_up_front() -> None:
    env = {"DATABASE_URL": "postgresql://x@127.0.0.1:9/d"}
    serverless = runner.invoke(app, ["train", "--backend", "serverless"], env=env)
    assert serverless.exit_code == 2 and "WANDB_API_KEY" in serverless.output
    ruler = runner.invoke(app, ["train", "--judge", "ruler"], env=env)
    assert ruler.exit_code == 2 and "OPENAI_API_KEY or BABYLON_JUDGE_BASE_URL" in ruler.output
