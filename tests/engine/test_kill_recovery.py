"""kill -9 of a training process at random moments, then a clean run: no window trained twice, no
checkpoint lost, no batch left `training`."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import asyncpg

from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

WINDOWS = 6


async def test_kill_9_at_random_stages_then_recover(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await seed_history(pool, Simulation(seed=9, n_agents=5, steps_per_window=4), windows=WINDOWS,
                       now=datetime.now())
    env = {**os.environ, "DATABASE_URL": database_url, "BABYLON_DATA_DIR": str(tmp_path / "data"),
           "BABYLON_SETTLE_SECONDS": "0", "BABYLON_MIN_AGENTS": "3"}
    command = [sys.executable, "-m", "babylon_console", "train", "--iterations", str(WINDOWS),
               "--windows-per-iteration", "1", "--quiet", "--json"]
    rng = random.Random(20261201)
    for _ in range(2):
        # Started, then killed somewhere between start-up and training (the delay is random).
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        await asyncio.sleep(rng.uniform(5.0, 10.0))
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    final = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode in (0, 3), final.stderr[-2000:]  # 3: the killed runs had trained everything

    windows = [r[0] for r in await pool.fetch("SELECT window_id FROM console_trained_windows")]
    assert sorted(windows) == sorted(set(windows)) and len(windows) == WINDOWS  # each once, none never
    completed = {r[0] for r in await pool.fetch("SELECT \"batchId\" FROM training_batches WHERE status = 'completed'")}
    models = {r[0] for r in await pool.fetch('SELECT "trainingBatch" FROM trained_models')}
    assert models == completed  # no checkpoint lost, none without its batch
    assert await pool.fetchval("SELECT count(*) FROM training_batches WHERE status = 'training'") == 0
    used = {r[0] for r in await pool.fetch('SELECT DISTINCT "trainedInBatch" FROM trajectories WHERE "usedInTraining"')}
    assert used <= completed
