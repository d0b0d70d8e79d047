"""Failure shown, not hidden: database outage banner that clears, engine errors as toasts and in the
Errors pane, bounded buffers, and themes that persist."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from textual.widgets import DataTable

from babylon_console.core.events import Event, EventKind
from babylon_console.tui.data import ConsoleData, DatabaseUnavailable
from babylon_console.tui.themes import load_themes, saved_theme
from babylon_console.tui.widgets.errors import ErrorsPane
from babylon_console.tui.widgets.training import CHART_POINTS, TAIL_LINES, TrainingPane, TrainingState

from .conftest import SIZE, FixedClock, plain, wait_for


class FlakyData(ConsoleData):
    """A data layer whose database can be switched off and on."""

    down = False

    @property
    def pool(self) -> asyncpg.Pool:
        if self.down:
            raise DatabaseUnavailable("cannot connect to PostgreSQL at db.example, database 'babylon': refused")
        return super().pool


async def test_database_outage_shows_a_banner_that_clears_on_recovery(seeded, settings, make_app) -> None:
    data = FlakyData(settings, clock=FixedClock(), label="test database")
    app = make_app(data=data)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="rows")
        assert not app.main.banner.display
        data.down = True
        await wait_for(lambda: app.main.banner.display, what="banner")
        assert "refused" in str(app.main.banner.content)
        assert not app.db_ready
        await pilot.press("4")  # panes keep working (last data, no crash) while the database is down
        await pilot.press("1")
        assert app.main.query_one("#windows-table", DataTable).row_count == 6
        errors = app.main.pane(ErrorsPane)
        assert any("refused" in entry[4] for entry in errors.entries)
        data.down = False
        await wait_for(lambda: not app.main.banner.display, what="banner cleared")
        assert app.db_ready
        assert any("answers again" in t for t in app.toasts)


async def test_unreachable_database_at_start_shows_the_banner(make_app, settings) -> None:
    bad = settings.model_copy(update={"database_url": None})
    data = ConsoleData(bad.with_overrides(database_url="postgresql://nobody@127.0.0.1:1/none"), label="nowhere")
    app = make_app(data=data)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.banner.display, limit_s=15, what="banner")
        assert "cannot connect" in str(app.main.banner.content)
        await pilot.press("2", "3", "4", "5", "6", "1")  # nothing crashes without a database
        assert app.is_running


def error_event(n: int, message: str = "judging failed: the judge timed out") -> Event:
    return Event(id=1000 + n, run_id="run-x", kind=EventKind.ERROR,
                 payload={"message": message, "window_id": "2025-11-24T10:00", "stage": "judge"},
                 created_at=datetime(2025, 11, 24, 12, 0, n, tzinfo=UTC))


async def test_engine_errors_become_toasts_and_lines_in_the_errors_pane(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.add_events([error_event(1), error_event(2, "training failed: backend exploded")])
        errors = app.main.pane(ErrorsPane)
        await wait_for(lambda: len(errors.entries) == 2, what="errors logged")
        await wait_for(lambda: any("Engine error" in t for t in app.toasts), what="toast")
        toast = next(t for t in app.toasts if "Engine error" in t)
        assert "backend exploded" in toast and "+1 more" in toast  # a burst is one toast
        assert app.main.pane_bar.badges.get("errors") == "(2)"
        await pilot.press("6")
        assert app.main.pane_bar.badges.get("errors") == ""
        await pilot.press("c")
        assert len(errors.entries) == 0


async def test_a_failing_worker_is_reported_not_fatal(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE):
        async def boom() -> None:
            raise ValueError("unexpected shape")

        app.start_worker(boom, name="load something", group="test")
        await wait_for(lambda: any("unexpected shape" in t for t in app.toasts), what="toast")
        assert app.is_running


def test_chart_and_log_buffers_are_capped() -> None:
    state = TrainingState()
    events = [Event(id=i, kind=EventKind.STEP_TRAINED, payload={"step": i, "metrics": {"loss/train": 0.1 * i}},
                    created_at=datetime(2025, 1, 1, tzinfo=UTC)) for i in range(CHART_POINTS + 3000)]
    state.ingest(events, {})
    assert len(state.series["loss/train"]) == CHART_POINTS
    assert len(state.tail) == TAIL_LINES
    assert state.step == CHART_POINTS + 2999


def test_training_state_folds_a_run() -> None:
    from .conftest import training_events

    state = TrainingState()
    state.ingest(training_events(4), {})
    assert state.run_id == "run-fixed" and state.iteration == 4 and state.step == 4
    assert state.windows_trained == 4 and state.last_checkpoint == "babylon-agent-step0004"
    assert state.average_iteration_s == pytest.approx(4.0)
    assert "run: 4/7 iterations" in state.eta(None)


def test_themes_load_from_files_and_bad_files_are_skipped(tmp_path: Any) -> None:
    from babylon_console.tui.themes import project_themes_dir

    names = {t.name for t in load_themes(project_themes_dir())}
    assert {"babylon-dark", "babylon-light"} <= names
    (tmp_path / "mine.json").write_text(json.dumps({"name": "mine", "primary": "#123456", "dark": False}))
    (tmp_path / "broken.toml").write_text("primary = ")
    (tmp_path / "odd.toml").write_text('primary = "#fff"\nsparkle = true\n')
    loaded = load_themes(tmp_path)
    assert [t.name for t in loaded] == ["mine"]


async def test_chosen_theme_persists(make_app, settings) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "babylon-dark"
        app.theme = "babylon-light"
        await pilot.pause()
    assert saved_theme(settings.data_dir) == "babylon-light"
    again = make_app()
    async with again.run_test(size=SIZE):
        assert again.theme == "babylon-light"


async def test_training_pane_draws_only_when_visible(make_app) -> None:
    from .conftest import training_events

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        training = app.main.pane(TrainingPane)
        app.add_events(training_events(5))
        await wait_for(lambda: training.state.step == 5, what="events folded")
        assert training._tail_shown == 0  # not visible: nothing drawn
        await pilot.press("3")
        await wait_for(lambda: training._tail_shown == training.state.tail_seq, what="tail drawn")
        await wait_for(lambda: "┤" in str(app.main.query_one("#chart-loss").content), what="chart drawn")


async def test_a_silent_engine_is_shown_stale_then_dead(make_app, pool) -> None:
    """An attached console says when the engine it watches last spoke, and that it is dead."""
    await pool.execute(
        "INSERT INTO console_runs (id, model_name, backend, judge, state, host, pid, heartbeat_at, heartbeat_s, stage, "
        "stage_started_at) VALUES ('run-gone', 'babylon-agent', 'offline', 'outcome', 'running', 'trainer-1', 42, "
        "now() - interval '2 seconds', 0.5, 'train', now() - interval '2 seconds')")
    app = make_app(attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: "stale" in str(app.main.status.parts.get("engine", "")), what="stale")
        await pilot.pause()
        await pool.execute("UPDATE console_runs SET heartbeat_at = now() - interval '10 seconds'")
        text = await wait_for(lambda: "dead" in (t := str(app.main.status.parts.get("engine", ""))) and t, what="dead")
        assert "last heartbeat 1" in text and "(attached)" in text
        await pilot.press("3")
        status = await wait_for(lambda: "DEAD" in (t := plain(app.main.query_one("#training-status"))) and t,
                                what="the Training pane saying dead")
        assert "last heartbeat" in status


async def test_a_holdout_setting_the_database_disagrees_with_is_a_configuration_error_not_an_outage(
        pool, make_app, settings) -> None:
    from babylon_console.core.checkpoints.holdout import set_holdout

    await set_holdout(pool, 0.25, operator="ana", reason=None)
    data = ConsoleData(settings.model_copy(update={"holdout_share": 0.1}), clock=FixedClock(), label="test database")
    app = make_app(data=data)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.banner.display, what="banner")
        assert "database records a hold-out of 25%" in str(app.main.banner.content)
        assert "babylon-console holdout" in str(app.main.banner.content)
        await pilot.pause(1.0)  # health ticks (every 0.3 s) do not turn it into an outage
        status = str(app.main.status.parts.get("db", ""))
        assert "configuration" in status and "unreachable" not in status
        assert any("Hold-out disagrees" in t for t in app.toasts)
        errors = app.main.pane(ErrorsPane)
        assert [e for e in errors.entries if "25%" in e[4]] and not [e for e in errors.entries if e[3] == "database"]
