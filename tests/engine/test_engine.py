"""The engine end to end on the offline path: embedded PostgreSQL, simulator, outcome judge,
offline backend. Plus the one-engine lock, crash-resume, failing judges and no-signal windows."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from babylon_console.core.config import Settings
from babylon_console.core.engine.guard import EngineLocked
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.engine.session import TrainingSession
from babylon_console.core.game.windows import WindowState
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.judges import JudgeError, OutcomeJudge, TrajectoryScore, WindowJudgment

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def _config(**overrides) -> EngineConfig:
    base = dict(iterations=2, windows_per_iteration=2, min_agents=5, min_steps=4, lookback_hours=48,
                max_per_group=6, judge_concurrency=2)
    base.update(overrides)
    return EngineConfig(**base)


def _engine(pool: asyncpg.Pool, tmp_path: Path, **kw) -> Engine:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = kw.pop("config", None) or _config()
    return Engine(pool, config, settings=settings, clock=FixedClock(), **kw)


async def _seed(pool: asyncpg.Pool, windows: int = 5) -> None:
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), windows=windows, now=NOW)


async def _kinds(pool: asyncpg.Pool) -> list[str]:
    return [r[0] for r in await pool.fetch("SELECT kind FROM console_events ORDER BY id")]


async def test_offline_loop_trains_registers_and_marks_exactly_what_it_used(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool)
    summary = await _engine(pool, tmp_path).run()
    assert summary.state is EngineState.STOPPED, summary.error
    assert summary.steps == [1, 2] and len(summary.windows_trained) == 4
    models = await pool.fetch('SELECT * FROM trained_models ORDER BY "modelId"')
    assert [m["modelId"] for m in models] == ["babylon-agent-offline-step0001", "babylon-agent-offline-step0002"]
    # registered: the game's own query serves none of them until one is promoted
    assert all(m["status"] == "registered" and m["storagePath"].startswith("offline://") for m in models)
    metrics = orjson.loads(models[0]["evalMetrics"])
    assert {"loss/train", "loss/entropy", "loss/kl_div", "loss/grad_norm"} <= set(metrics)
    batches = await pool.fetch("SELECT * FROM training_batches ORDER BY \"createdAt\"")
    assert [b["status"] for b in batches] == ["completed", "completed"]
    trained_ids = {t for b in batches for t in orjson.loads(b["trajectoryIds"])}
    used = {r[0] for r in await pool.fetch('SELECT "trajectoryId" FROM trajectories WHERE "usedInTraining"')}
    assert used == trained_ids and len(used) == 4 * 6  # max_per_group of 7 agents
    assert set(orjson.loads(batches[0]["rewardsJson"])) <= trained_ids
    judged = await pool.fetchval("SELECT count(DISTINCT trajectory_id) FROM console_judgments")
    assert judged == 24  # our scores; the game's judge columns are its own
    assert not await pool.fetchval('SELECT count(*) FROM trajectories WHERE "aiJudgeReward" IS NOT NULL')
    kinds = await _kinds(pool)
    assert kinds[0] == "run_started" and kinds[-1] == "run_stopped"
    for kind in ("iteration_started", "window_selected", "window_judged", "step_trained", "checkpoint_registered"):
        assert kind in kinds
    # The trained windows are no longer ready; the next run takes the one left.
    again = await _engine(pool, tmp_path, config=_config(iterations=1)).run()
    assert again.steps == [3] and len(again.windows_trained) == 1
    assert not set(again.windows_trained) & set(summary.windows_trained)
    nothing = await _engine(pool, tmp_path, config=_config(iterations=1)).run()
    assert nothing.steps == [] and nothing.iterations == 0


async def test_second_engine_for_the_same_model_is_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=2)
    first = _engine(pool, tmp_path, config=_config(iterations=None, poll_seconds=0.1))
    task = asyncio.create_task(first.run())
    for _ in range(100):
        if first.state is EngineState.RUNNING:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(EngineLocked, match="already training model 'babylon-agent'"):
        await _engine(pool, tmp_path).run()
    first.stop()
    summary = await asyncio.wait_for(task, 60)
    assert summary.state is EngineState.STOPPED
    other = await _engine(pool, tmp_path, config=_config(model_name="other-model", iterations=1)).run()
    assert other.state is EngineState.STOPPED  # a different model trains independently


class CrashAfterCheckpoint:
    """Wraps the real backend: the checkpoint is written, then the process 'dies'."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def train(self, *args, **kwargs):
        await self.inner.train(*args, **kwargs)
        raise asyncio.CancelledError  # as if killed before the registry write


async def test_crash_after_checkpoint_is_recovered_without_duplicates(pool: asyncpg.Pool, tmp_path: Path) -> None:
    from babylon_console.core.training.backends.offline import OfflineBackend

    await _seed(pool, windows=4)
    backend = OfflineBackend(tmp_path / "data" / "checkpoints" / "offline")
    crashing = _engine(pool, tmp_path, backend=CrashAfterCheckpoint(backend), config=_config(iterations=1))
    with pytest.raises(asyncio.CancelledError):
        await crashing.run()
    assert await pool.fetchval("SELECT status FROM training_batches") == "training"
    assert await pool.fetchval("SELECT count(*) FROM trained_models") == 0
    resumed = await _engine(pool, tmp_path, backend=OfflineBackend(tmp_path / "data" / "checkpoints" / "offline"),
                            config=_config(iterations=1)).run()
    assert len(resumed.recovered_batches) == 1
    assert resumed.steps == [1, 2]  # step 1 recovered, step 2 trained on the two other windows
    statuses = [r[0] for r in await pool.fetch('SELECT status FROM training_batches ORDER BY "createdAt"')]
    assert statuses == ["completed", "completed"]
    models = [r[0] for r in await pool.fetch('SELECT "modelId" FROM trained_models ORDER BY 1')]
    assert models == ["babylon-agent-offline-step0001", "babylon-agent-offline-step0002"]
    windows = await pool.fetch("SELECT window_id, count(*) FROM console_trained_windows GROUP BY 1")
    assert len(windows) == 4 and all(r[1] == 1 for r in windows)


async def test_crash_before_checkpoint_frees_the_windows(pool: asyncpg.Pool, tmp_path: Path) -> None:
    class CrashBefore:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def train(self, *args, **kwargs):
            raise asyncio.CancelledError

    from babylon_console.core.training.backends.offline import OfflineBackend

    await _seed(pool, windows=2)
    with pytest.raises(asyncio.CancelledError):
        await _engine(pool, tmp_path, backend=CrashBefore(OfflineBackend(tmp_path / "art")),
                      config=_config(iterations=1)).run()
    resumed = await _engine(pool, tmp_path, backend=OfflineBackend(tmp_path / "art"),
                            config=_config(iterations=1)).run()
    assert resumed.recovered_batches == [] and resumed.steps == [1]
    statuses = sorted(r[0] for r in await pool.fetch("SELECT status FROM training_batches"))
    assert statuses == ["completed", "failed"]


class FlakyJudge:
    """Fails one window, gives equal scores to another, judges the rest with the outcome judge."""

    name = "flaky"

    def __init__(self, fail: str, flat: str) -> None:
        self.fail, self.flat, self.inner = fail, flat, OutcomeJudge()

    async def judge(self, item):
        if item.window_id == self.fail:
            raise JudgeError(item.window_id, "judge returned malformed JSON 3 times")
        if item.window_id == self.flat:
            return WindowJudgment(window_id=item.window_id, judge=self.name, scores=[
                TrajectoryScore(trajectory_id=t.trajectory_id, score=0.5, explanation="same")
                for t in item.trajectories])
        return await self.inner.judge(item)


async def test_failed_and_flat_windows_do_not_stop_the_others(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=3)
    from babylon_console.core.game.windows import window_id_for
    from babylon_console.core.simgame.seeding import history_starts

    w = [window_id_for(s) for s in history_starts(3, NOW)]
    engine = _engine(pool, tmp_path, judge=FlakyJudge(fail=w[0], flat=w[1]),
                     config=_config(iterations=1, windows_per_iteration=3))
    summary = await engine.run()
    assert summary.windows_failed == [w[0]] and summary.windows_skipped == [w[1]]
    assert summary.windows_trained == [w[2]] and summary.steps == [1]
    messages = [r[0] for r in await pool.fetch("SELECT payload->>'message' FROM console_events ORDER BY id")]
    assert any("judging failed" in m and "malformed JSON" in m for m in messages if m)
    assert any("all scores equal" in m for m in messages if m)
    readiness = {r.window_id: r for r in await engine.store.window_readiness(engine.config.criteria, NOW, 48)}
    assert readiness[w[0]].ready and readiness[w[1]].ready  # free to try again
    assert readiness[w[2]].state is WindowState.TRAINED


async def test_pause_resume_stop(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=2)
    engine = _engine(pool, tmp_path, config=_config(iterations=None, poll_seconds=0.05, windows_per_iteration=1))
    task = asyncio.create_task(engine.run())
    for _ in range(500):
        if engine.state is EngineState.RUNNING:
            break
        await asyncio.sleep(0.02)
    engine.pause()
    assert engine.state is EngineState.PAUSED
    engine.resume()
    assert engine.state is EngineState.RUNNING
    for _ in range(400):
        if len(engine.summary.steps) == 2:
            break
        await asyncio.sleep(0.05)
    engine.stop()
    summary = await asyncio.wait_for(task, 30)
    assert summary.state is EngineState.STOPPED and summary.steps == [1, 2]
    kinds = await _kinds(pool)
    assert "run_paused" in kinds and "run_resumed" in kinds


async def test_an_interrupted_run_is_recorded_stopped_before_its_backend_closes(
        pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a LocalBackend (vLLM, trainer) or W&B can outlast what an interrupted process has left
    before it exits: the run row and its run_stopped event come first, so it is never left 'running'."""
    await _seed(pool, windows=2)
    closing, release = asyncio.Event(), asyncio.Event()

    async def slow_close(self: TrainingSession) -> None:
        closing.set()
        await release.wait()

    monkeypatch.setattr(TrainingSession, "close", slow_close)
    engine = _engine(pool, tmp_path, config=_config(iterations=None, poll_seconds=0.1))
    task = asyncio.create_task(engine.run())
    for _ in range(200):
        if engine.state is EngineState.RUNNING:
            break
        await asyncio.sleep(0.05)
    task.cancel()  # Ctrl+C
    try:
        # generous: the engine may be importing ART on its loop (seconds, tens under load) when cancelled
        await asyncio.wait_for(closing.wait(), 60)
        state = await pool.fetchval("SELECT state FROM console_runs WHERE id = $1", engine.run_id)
        last_event = (await _kinds(pool))[-1]
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    assert (state, last_event) == ("stopped", "run_stopped")
