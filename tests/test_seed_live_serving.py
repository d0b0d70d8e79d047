"""Headless `seed --live` serves the promoted checkpoint to simulated agents, as the demo console does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.backends.factory import checkpoint_root
from babylon_console.core.backends.offline import OfflineBackend
from babylon_console.core.registry import Registry


async def _offline_checkpoint(data_dir: Path) -> str:
    import art

    model = art.TrainableModel(name="served", project="babylon", base_model="sim/linear-softmax", run_name="run-1",
                               report_metrics=[])
    await model.register(OfflineBackend(checkpoint_root(data_dir, "offline")))
    return "offline://babylon/run-1:step0"


async def test_seed_live_drives_agents_with_the_live_checkpoint(database_url: str, pool: asyncpg.Pool,
                                                                tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    storage = await _offline_checkpoint(data_dir)
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
        "served-step0000", "step-0", "sim/linear-softmax", "batch-0", "ready", storage)
    await Registry(pool).promote("served-step0000", share=1.0, operator="test")

    result = await asyncio.to_thread(
        CliRunner().invoke, app,
        ["--database-url", database_url, "--data-dir", str(data_dir), "seed", "--windows", "1", "--agents", "6",
         "--steps", "2", "--live", "--live-windows", "1", "--seconds-per-window", "0.5", "--policy-agents", "2",
         "--json"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    live_window = orjson.loads(result.stdout)["live_windows"][0]
    rows = await pool.fetch('SELECT "agentId", "metadataJson" FROM trajectories WHERE "windowId" = $1 '
                            'ORDER BY "agentId"', live_window)
    policies = [orjson.loads(r["metadataJson"]).get("policy") for r in rows]
    assert len(rows) == 6
    served = storage.rsplit("/", 1)[-1]  # the policy is recorded by its short name, "run-1:step0"
    assert policies[-2:] == [served, served]  # the last two agents trade with the live model
    assert served not in policies[:-2]  # the others keep their scripted strategies
