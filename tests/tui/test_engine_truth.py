"""Which engine, which model: the header names the model, backend and database; the Training pane
follows the model's newest run wherever it runs (never a stale run id of this console's stopped
engine), switches when a newer run starts elsewhere, and a console whose engine is refused by the
model's lock follows the engine that holds it instead of reporting a failure."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from babylon_console.core.config import Settings, describe_dsn
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.tui.data import ConsoleData
from babylon_console.tui.runners.engine import EngineOverrides
from babylon_console.tui.widgets.context import ContextBar

from .conftest import SIZE, FixedClock, plain, wait_for


class StoppedRunner:
    """This console's engine, stopped long ago (what the console remembers of it)."""

    state = "stopped"
    run_id = "run-old-here"
    stage = None
    error = None
    locked = False
    active = False
    overrides = EngineOverrides()

    def stop(self) -> None:
        pass


def _engine(pool: asyncpg.Pool, settings: Settings) -> Engine:
    return Engine(pool, EngineConfig(iterations=None, poll_seconds=0.2, heartbeat_s=0.3), settings=settings,
                  clock=FixedClock())


async def _started(engine: Engine) -> asyncio.Task[Any]:
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.state is EngineState.RUNNING, what="the engine running")
    return task


def _status(app: Any) -> str:
    return plain(app.main.query_one("#training-status"), width=240)


async def test_the_header_names_model_backend_and_database(make_app, settings: Settings) -> None:
    app = make_app(data=ConsoleData(settings, clock=FixedClock(), operator="tester"))
    _, database = describe_dsn(settings.database_url.get_secret_value())
    async with app.run_test(size=SIZE):
        bar = app.main.query_one(ContextBar)
        text = await wait_for(lambda: bar.text if bar.context[0] else None, what="the header")
        assert text.startswith("model babylon-agent · backend offline · db ") and database in text, text
        assert database in plain(bar)  # drawn, not only stored


async def test_the_console_follows_the_newest_run_of_its_model_elsewhere(make_app, pool, settings) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready)
        app.engine = StoppedRunner()  # type: ignore[assignment]
        await pilot.press("3")
        first = _engine(pool, settings)
        run = await _started(first)
        try:
            status = await wait_for(lambda: first.run_id in (t := _status(app)) and t, what="the run elsewhere")
            assert "run-old-here" not in status and "in this console" not in status
            assert f"engine pid {first_pid()} on host" in status
            engine_part = str(app.main.status.parts.get("engine", ""))
            assert "running" in engine_part and "another process" in engine_part and "stopped" not in engine_part
        finally:
            first.stop()
            await asyncio.wait_for(run, 20)
        # a newer run of the model starts elsewhere: the pane switches to it
        second = _engine(pool, settings)
        run = await _started(second)
        try:
            status = await wait_for(lambda: second.run_id in (t := _status(app)) and t, what="the newer run")
            assert first.run_id not in status and "run-old-here" not in status
        finally:
            second.stop()
            await asyncio.wait_for(run, 20)


def first_pid() -> int:
    import os

    return os.getpid()  # the engines of these tests run in the test's process


async def test_a_console_refused_by_the_lock_follows_the_engine_that_holds_it(make_app, pool, settings) -> None:
    """What the demo does beside a running engine: start one, find the model locked, follow the other."""
    other = _engine(pool, settings)
    run = await _started(other)
    app = make_app()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: app.db_ready)
            await pilot.press("3")
            app.engine_control.start(EngineOverrides(backend="offline", judge="outcome", iterations=None))
            toast = await wait_for(lambda: next((t for t in app.toasts if "already trains" in t), None),
                                   limit_s=30, what="the following toast")
            assert f"run {other.run_id}" in toast and "follows it" in toast
            assert not any(t.startswith("Engine not started") or "failed" in t for t in app.toasts), app.toasts
            status = await wait_for(lambda: other.run_id in (t := _status(app)) and t, what="following it")
            assert status.startswith("Engine running") and "in this console" not in status
            assert "failed" not in status
            assert app.main.engine.run is not None and app.main.engine.run.run_id == other.run_id
    finally:
        other.stop()
        await asyncio.wait_for(run, 20)


async def test_the_charts_are_those_of_the_run_followed_not_of_every_run(make_app, pool) -> None:
    """An older run of this model (and another model's run) folded into the same charts showed their
    steps under the followed run's name: only the followed run's steps are charted, and following
    another run charts that one's, from the events already read."""
    from datetime import timedelta

    from babylon_console.tui.widgets.training import TrainingPane

    from .conftest import training_events

    for run_id, model, started in (("run-older", "babylon-agent", timedelta(hours=1)),
                                   ("run-other-model", "other", timedelta(minutes=1)),
                                   ("run-newest", "babylon-agent", timedelta(minutes=2))):
        await pool.execute(
            "INSERT INTO console_runs (id, model_name, backend, judge, state, host, pid, stopped_at, started_at) "
            "VALUES ($1, $2, 'offline', 'outcome', 'stopped', 'trainer-1', 4242, now(), now() - $3::interval)",
            run_id, model, started)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready)
        pane = app.main.pane(TrainingPane)
        events = [*training_events(7, run_id="run-older"), *training_events(5, run_id="run-other-model"),
                  *training_events(3, run_id="run-newest")]
        for n, event in enumerate(events, start=1):
            event.id = n
        app.add_events(events)
        await pilot.press("3")
        await wait_for(lambda: "run-newest" in _status(app), what="the newest run of the model followed")
        # the feed delivers queued events on its own beat: wait for them, then only the followed run's count
        await wait_for(lambda: pane.state.tail_seq == len(events), what="the events delivered")
        assert [step for step, _ in pane.state.series["loss/train"]] == [1, 2, 3]
        assert pane.state.step == 3 and pane.state.windows_trained == 3
        assert pane.state.follow("run-older") and [s for s, _ in pane.state.series["loss/train"]] == list(range(1, 8))
