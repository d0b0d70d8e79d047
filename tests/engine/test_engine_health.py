"""The engine's training health: every registered step's health stored; alarms recorded and announced,
and with `pause_on_alarm` the engine pauses itself naming the rule; a failing health check only warns."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg

from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training import health_store
from babylon_console.core.training.judges import OutcomeJudge, TrajectoryScore, WindowJudgment

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class UpsideDownJudge:
    """Ranks the agents against what the market paid them: the worst P&L scores best."""

    name = "upside-down"

    async def judge(self, item):
        pnl = [t.final_pnl or 0.0 for t in item.trajectories]
        low, high = min(pnl), max(pnl)
        return WindowJudgment(window_id=item.window_id, judge=self.name, scores=[
            TrajectoryScore(trajectory_id=t.trajectory_id, explanation="inverted",
                            score=(high - p) / (high - low) if high > low else 0.5)
            for t, p in zip(item.trajectories, pnl, strict=True)])


def _engine(pool: asyncpg.Pool, tmp_path: Path, judge, **config) -> Engine:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    base = dict(iterations=3, windows_per_iteration=2, min_agents=5, min_steps=4, lookback_hours=48,
                max_per_group=6, judge_concurrency=2)
    return Engine(pool, EngineConfig(**{**base, **config}), settings=settings, clock=FixedClock(), judge=judge)


async def _seed(pool: asyncpg.Pool, windows: int) -> None:
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), windows=windows, now=NOW)


async def _paused(engine: Engine) -> None:
    """Until the engine has paused (30 s at most)."""
    for _ in range(600):
        if engine.state is EngineState.PAUSED:
            return
        await asyncio.sleep(0.05)


async def test_every_step_stores_its_health_and_an_honest_judge_raises_nothing(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=6)
    engine = _engine(pool, tmp_path, OutcomeJudge())
    summary = await engine.run()
    assert summary.steps == [1, 2, 3], summary.error
    history = await health_store.health_history(pool, engine.config.training_key)
    assert [h.step for h in history] == [1, 2, 3] and all(h.run_id == engine.run_id for h in history)
    last = history[-1]
    assert last.groups == 2 and len(last.windows) == 2 and last.kl.value is not None
    assert last.rank_correlation.value is not None and last.rank_correlation.value > 0.5
    assert last.rank_correlation_rolling.value is not None and last.judge_trend.value is not None
    assert last.tokens_per_call.value and sum(last.action_mix.values()) > 0
    assert await health_store.alarms(pool) == []


async def test_a_judge_that_disagrees_with_the_market_pauses_the_engine(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=6)
    engine = _engine(pool, tmp_path, UpsideDownJudge(), iterations=None, poll_seconds=0.05, pause_on_alarm=True)
    task = asyncio.create_task(engine.run())
    try:
        await _paused(engine)
        assert engine.state is EngineState.PAUSED
        # four windows: the rolling correlation's minimum, reached at step 2
        assert engine.summary.steps == [2] or engine.summary.steps == [1, 2]
        alarms = await health_store.alarms(pool, engine.config.training_key)
        assert [a.rule for a in alarms] == ["judge_disagrees"] and alarms[0].step == 2
        assert alarms[0].figures["rolling"] is not None and alarms[0].figures["rolling"] < -0.5
        for _ in range(100):
            rows = await pool.fetch("SELECT kind, payload FROM console_events WHERE kind IN ('alarm', 'run_paused') "
                                    "ORDER BY id")
            if len(rows) == 2:
                break
            await asyncio.sleep(0.05)
        assert [r["kind"] for r in rows] == ["alarm", "run_paused"]
        paused = rows[1]["payload"]
        assert "judge_disagrees" in paused and "alarm" in paused
        # resumed while the judge still disagrees: the standing alarm does not pause the engine again
        engine.resume()
        for _ in range(600):  # step 3's health is stored after its registration
            history = await health_store.health_history(pool, engine.config.training_key)
            if history and history[-1].step == 3:
                break
            await asyncio.sleep(0.05)
        assert history[-1].step == 3 and history[-1].rank_correlation_rolling.value < -0.5
        await asyncio.sleep(0.5)
        assert engine.state is EngineState.RUNNING
        assert [a.step for a in await health_store.alarms(pool, engine.config.training_key)] == [2]
    finally:
        engine.stop()
        await asyncio.wait_for(task, 30)


async def test_without_the_setting_an_alarm_is_recorded_and_the_engine_carries_on(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=6)
    engine = _engine(pool, tmp_path, UpsideDownJudge())
    summary = await engine.run()
    assert summary.steps == [1, 2, 3] and summary.state is EngineState.STOPPED
    history = await health_store.health_history(pool, engine.config.training_key)
    assert history[-1].rank_correlation_rolling.value < -0.5  # step 3 disagrees as much as step 2 did
    # one alarm when the rule starts firing; it stands while the rule keeps firing (no second at step 3)
    rules = [(a.rule, a.step) for a in await health_store.alarms(pool)]
    assert rules == [("judge_disagrees", 2)]
    kinds = [r[0] for r in await pool.fetch("SELECT kind FROM console_events ORDER BY id")]
    assert "alarm" in kinds and "run_paused" not in kinds


async def test_a_failing_health_check_warns_and_keeps_the_step(pool: asyncpg.Pool, tmp_path: Path,
                                                               monkeypatch) -> None:
    from babylon_console.core.engine import health_watch

    def broken(*args, **kwargs):
        raise ValueError("figures out of order")

    monkeypatch.setattr(health_watch, "step_health", broken)
    await _seed(pool, windows=2)
    summary = await _engine(pool, tmp_path, OutcomeJudge(), iterations=1).run()
    assert summary.steps == [1] and summary.state is EngineState.STOPPED
    messages = [r[0] for r in await pool.fetch("SELECT payload->>'message' FROM console_events WHERE kind = 'warning'")]
    assert any("health of step 1 not checked" in m and "figures out of order" in m for m in messages)


async def test_a_pause_in_the_last_iteration_holds_the_run_until_it_is_resumed(pool: asyncpg.Pool,
                                                                                tmp_path: Path) -> None:
    await _seed(pool, windows=4)
    engine = _engine(pool, tmp_path, UpsideDownJudge(), iterations=2, pause_on_alarm=True)
    task = asyncio.create_task(engine.run())
    try:
        await _paused(engine)
        assert engine.state is EngineState.PAUSED and engine.summary.steps == [1, 2]
        await asyncio.sleep(0.5)  # its two iterations are done; paused, it does not finish on its own
        assert not task.done() and engine.state is EngineState.PAUSED
        engine.resume()
        summary = await asyncio.wait_for(task, 30)
        assert summary.state is EngineState.STOPPED and summary.steps == [1, 2]
    finally:
        engine.stop()
        if not task.done():
            await asyncio.wait_for(task, 30)


class FlatJudge:
    """Scores every agent alike: no group has a reward spread, nothing can be trained."""

    name = "flat"

    async def judge(self, item):
        return WindowJudgment(window_id=item.window_id, judge=self.name, scores=[
            TrajectoryScore(trajectory_id=t.trajectory_id, score=0.5, explanation="all alike")
            for t in item.trajectories])


async def test_a_judge_that_scores_everyone_alike_raises_the_no_spread_alarm_once(pool: asyncpg.Pool,
                                                                                   tmp_path: Path) -> None:
    await _seed(pool, windows=4)
    summary = await _engine(pool, tmp_path, FlatJudge(), iterations=2).run()
    assert summary.steps == [] and summary.state is EngineState.STOPPED  # nothing trained, no step's health
    alarms = await health_store.alarms(pool)
    # raised by the first iteration; it stands open, so the second raises none
    assert [(a.rule, a.step) for a in alarms] == [("zero_spread", None)]
    assert alarms[0].window_id is not None and alarms[0].figures["share"] == 1.0
    assert "nothing was trained" in alarms[0].message


async def test_with_the_setting_the_no_spread_alarm_pauses_the_engine(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await _seed(pool, windows=2)
    engine = _engine(pool, tmp_path, FlatJudge(), iterations=1, pause_on_alarm=True)
    task = asyncio.create_task(engine.run())
    try:
        await _paused(engine)
        assert engine.state is EngineState.PAUSED and engine.summary.steps == []
        for _ in range(100):  # the pause is announced by a task of its own: its event may follow the state
            rows = await pool.fetch("SELECT kind, payload->>'message' AS m FROM console_events "
                                    "WHERE kind IN ('alarm', 'run_paused') ORDER BY id")
            if len(rows) == 2:
                break
            await asyncio.sleep(0.05)
        assert [r["kind"] for r in rows] == ["alarm", "run_paused"] and "zero_spread" in rows[1]["m"]
    finally:
        engine.stop()
        await asyncio.wait_for(task, 30)


async def test_windows_judged_without_spread_are_not_judged_again_by_the_same_run(pool: asyncpg.Pool,
                                                                                 tmp_path: Path) -> None:
    """A judge that scores everyone alike trains nothing: the run once judged every ready window again at
    once, iteration after iteration (about 4 a second), and such windows, the oldest, were always selected
    first. They are left to the next run (still ready), and the run waits for new windows meanwhile."""
    await _seed(pool, windows=2)
    engine = _engine(pool, tmp_path, FlatJudge(), iterations=None, poll_seconds=0.2)
    task = asyncio.create_task(engine.run())
    try:
        for _ in range(600):
            if engine.summary.iterations >= 1 and len(engine.summary.windows_skipped) == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # ten polls
        assert engine.summary.iterations == 1 and engine.summary.steps == []
    finally:
        engine.stop()
        await asyncio.wait_for(task, 30)
    readiness = await engine.store.window_readiness(engine.config.criteria, NOW, 48, engine.config.training_key)
    assert sum(w.ready for w in readiness) == 2  # free for the next run to judge again


async def test_a_rule_flapping_at_its_threshold_is_one_open_alarm(pool: asyncpg.Pool, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A figure hovering at its threshold fires, clears, fires: one alarm while it stays open (the demo's
    entropy raised one every few steps)."""
    from babylon_console.core.engine import health_watch
    from babylon_console.core.training.alarms import AlarmRule, RaisedAlarm

    def odd_steps_fire(history, settings):
        step = history[-1].step
        return [RaisedAlarm(rule=AlarmRule.entropy_collapse, step=step, figures={"entropy": 0.7}, threshold=0.25,
                            message=f"entropy low at step {step}")] if step % 2 else []

    monkeypatch.setattr(health_watch, "check", odd_steps_fire)
    await _seed(pool, windows=6)
    summary = await _engine(pool, tmp_path, OutcomeJudge(), iterations=3).run()
    assert summary.steps == [1, 2, 3]
    assert [(a.rule, a.step) for a in await health_store.alarms(pool)] == [("entropy_collapse", 1)]


class DownJudge:
    """A judge whose service is down: every window fails."""

    name = "down"

    async def judge(self, item):
        from babylon_console.core.training.judges import JudgeError

        raise JudgeError(item.window_id, "the judge's API answered 503")


async def test_a_failing_judge_is_not_asked_again_at_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Windows a judge failed are free again at once; a continuous run waits a poll before it selects
    them again, instead of asking the failing judge as fast as it can."""
    await _seed(pool, windows=2)
    engine = _engine(pool, tmp_path, DownJudge(), iterations=None, poll_seconds=1.0)
    task = asyncio.create_task(engine.run())
    try:
        for _ in range(600):
            if engine.summary.iterations >= 1 and engine.summary.windows_failed:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)
        assert 1 <= engine.summary.iterations <= 4 and engine.summary.steps == []
    finally:
        engine.stop()
        await asyncio.wait_for(task, 30)


async def test_a_long_run_keeps_its_first_steps_for_the_early_level(pool: asyncpg.Pool, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The rules read the newest steps; the entropy rule's early level is the first steps' median, which
    once followed the entropy down once a run had more steps than were read (so a slow collapse never fired)."""
    from babylon_console.core.engine import health_watch
    from babylon_console.core.stats import Figure
    from babylon_console.core.training.health import StepHealth

    monkeypatch.setattr(health_watch, "HISTORY", 8)
    engine = _engine(pool, tmp_path, OutcomeJudge())
    key = engine.config.training_key
    for step in range(1, 31):  # entropy falls slowly: 3.0 down to 0.1
        await health_store.save_health(pool, StepHealth(model_name=key, step=step,
                                                        entropy=Figure.of(3.0 - 0.1 * (step - 1))))
    history = await engine.health.history_before(31)
    assert [h.step for h in history] == [1, 2, 3, 4, 5, *range(23, 31)]
    from babylon_console.core.training.alarms import check

    now = StepHealth(model_name=key, step=31, entropy=Figure.of(0.2))  # 7% of 2.8; a third of the drifted 0.6
    assert "entropy_collapse" in [a.rule for a in check([*history, now], engine.settings.alarms())]


async def test_a_health_check_cut_short_by_an_outage_is_checked_again_once_the_database_is_back(
        pool: asyncpg.Pool, tmp_path: Path, monkeypatch) -> None:
    """The step is registered, then the database goes while its health is written: the engine rides the
    outage out as usual, and the step's health, which used to be lost, is checked again in the repair."""
    from babylon_console.core.engine.health_watch import HealthWatch
    from babylon_console.core.errors import DatabaseUnavailable

    real = HealthWatch.after_step
    calls: list[int] = []

    async def cut_short_once(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) == 1:
            raise DatabaseUnavailable("connection lost while the step's health was written")
        return await real(self, step, *args, **kwargs)

    monkeypatch.setattr(HealthWatch, "after_step", cut_short_once)
    await _seed(pool, windows=2)
    summary = await _engine(pool, tmp_path, OutcomeJudge(), iterations=1).run()
    assert summary.state is EngineState.STOPPED and summary.steps == [1] and summary.outages == 1, summary.error
    assert calls == [1, 1]
    assert [r[0] for r in await pool.fetch("SELECT step FROM console_step_health")] == [1]
