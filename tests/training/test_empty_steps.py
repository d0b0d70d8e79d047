"""No empty step, on any backend: a step that trained nothing is not a checkpoint.

Serverless is covered against the W&B double in test_serverless.py (a job that trains no token).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.game.store import GameStore
from babylon_console.core.game.windows import WindowState
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.backends.offline import OfflineBackend
from tests.training.test_trainable_turns import W, _insert_game_shaped

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def _engine(pool: asyncpg.Pool, tmp_path: Path, tokenizer_dir: Path | None = None, **kw: Any) -> Engine:
    env: dict[str, str] = {"BABYLON_DATA_DIR": str(tmp_path / "data")}
    if tokenizer_dir is not None:
        env["BABYLON_TOKENIZER"] = str(tokenizer_dir)
    config = EngineConfig(iterations=1, windows_per_iteration=2, min_agents=3, min_steps=1, lookback_hours=48,
                          max_per_group=6, backend=kw.pop("backend_name", "offline"))
    return Engine(pool, config, settings=Settings(**env), clock=FixedClock(), **kw)  # type: ignore[arg-type]


async def _nothing_was_used(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM trained_models") == 0
    assert await pool.fetchval('SELECT count(*) FROM trajectories WHERE "usedInTraining"') == 0
    assert await pool.fetchval("SELECT count(*) FROM console_trained_windows") == 0
    assert await pool.fetchval("SELECT count(*) FROM training_batches WHERE status <> 'failed'") == 0


async def test_offline_on_game_rows_it_cannot_map_registers_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _insert_game_shaped(pool)  # TRADING_DECISION, social posts, replies: no simulator action among them
    engine = _engine(pool, tmp_path)
    summary = await engine.run()
    assert summary.state is EngineState.STOPPED, summary.error
    assert summary.steps == [] and summary.windows_failed == [W]
    await _nothing_was_used(pool)
    error = await pool.fetchval("SELECT error FROM training_batches")
    assert "none maps to a simulator action" in error and "9 turn(s) ART would train" in error
    warnings = [r[0] for r in await pool.fetch(
        "SELECT payload->>'message' FROM console_events WHERE kind = 'warning'")]
    assert any("step not registered" in m for m in warnings)
    store = GameStore(pool)
    (offline,) = await store.window_readiness(engine.config.criteria, NOW, 48, "offline:babylon-agent")
    assert offline.state is WindowState.UNUSABLE and "none maps to a simulator action" in offline.reasons[0]
    (real,) = await store.window_readiness(engine.config.criteria, NOW, 48, "serverless:babylon-agent")
    assert real.ready  # the offline practice run consumed nothing a real model needs
    again = await _engine(pool, tmp_path).run()
    assert again.iterations == 0  # not selected again for the offline model


class ArtSkippedStep:
    """What ART's LocalBackend does with a batch it cannot train: copy step N to N+1 and report
    `data/step_trainable_assistant_tokens` 0 (art/local/backend.py, "Skipping tuning"). The copy
    is made by the wrapped offline backend's own train call, so step N+1 exists on disk."""

    def __init__(self, inner: OfflineBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def train(self, model: Any, groups: Any, **kw: Any) -> Any:
        from art.types import TrainResult

        result = await self.inner.train(model, groups, **kw)
        return TrainResult(step=result.step, metrics={"data/step_num_groups_trainable": 0.0,
                                                      "data/step_trainable_assistant_tokens": 0.0})


async def test_an_art_skipped_step_is_not_a_checkpoint(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await seed_history(pool, Simulation(seed=5, n_agents=5, steps_per_window=4), windows=2, now=NOW)
    backend = ArtSkippedStep(OfflineBackend(tmp_path / "data" / "checkpoints" / "offline"))
    summary = await _engine(pool, tmp_path, backend=backend).run()
    assert summary.steps == [] and len(summary.windows_failed) == 2
    await _nothing_was_used(pool)
    error = await pool.fetchval("SELECT error FROM training_batches")
    assert "data/step_trainable_assistant_tokens = 0" in error
