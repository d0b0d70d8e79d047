"""SVG snapshots of the main layouts with deterministic data (fixed clock, fixed seed, fixed events).

Update after an intended change of the look: `pytest tests/tui --snapshot-update`, then review the
SVGs under `tests/tui/__snapshots__/`.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable

from babylon_console.tui.widgets.inspector import InspectorPane
from babylon_console.tui.widgets.training import TrainingPane

from .conftest import insert_model, training_events, wait_for

SNAP_SIZE = (140, 40)


async def _windows_loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
    await pilot.pause()


def test_snapshot_windows(seeded, make_app, snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, run_before=_windows_loaded)


def test_snapshot_outcomes(seeded, make_app, snap_compare) -> None:
    async def run_before(pilot: Any) -> None:
        await _windows_loaded(pilot)
        await pilot.press("down", "enter")
        await wait_for(lambda: pilot.app.main.query_one("#outcomes-stocks", DataTable).row_count == 5)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, run_before=run_before)


async def _training_drawn(pilot: Any) -> None:
    """Twelve steps of a fixed run folded, the Training pane shown, its charts drawn."""
    app = pilot.app
    pane = app.main.pane(TrainingPane)
    pane.wall_clock = False
    app.add_events(training_events(12))
    await wait_for(lambda: pane.state.step == 12)
    await pilot.press("3")
    await wait_for(lambda: pane._charts_shown == pane.state.chart_version, what="charts")
    await pilot.pause(0.1)


def _fixed_run_recorded(pool: Any) -> None:
    """The run the fixed events come from, as the database records it (a headless engine that has
    stopped): the Training pane follows the model's newest run, and shows its numbers only for it."""
    _run_on_fixture_loop(pool, pool.execute(
        "INSERT INTO console_runs (id, model_name, backend, judge, state, host, pid, iteration, step, stopped_at) "
        "VALUES ('run-fixed', 'babylon-agent', 'offline', 'outcome', 'stopped', 'trainer-1', 4242, 12, 12, now())"))


def test_snapshot_training(pool, make_app, snap_compare) -> None:
    _fixed_run_recorded(pool)
    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, run_before=_training_drawn)


def test_snapshot_checkpoints_and_promote_dialog(seeded, make_app, snap_compare) -> None:
    async def setup() -> None:
        pool = seeded
        for step, reward in ((1, 0.52), (2, 0.55), (3, 0.58)):
            await insert_model(pool, step, avg_reward=reward)
        await insert_model(pool, 4, status="failed", avg_reward=0.40)
        await pool.execute(
            """UPDATE trained_models SET status = 'deployed' WHERE "modelId" = 'babylon-agent-step0002'""")

    _run_on_fixture_loop(seeded, setup())

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await wait_for(lambda: app.db_ready)
        await pilot.press("4")
        await wait_for(lambda: app.main.query_one("#checkpoints-table", DataTable).row_count == 4)
        await pilot.press("down", "P")  # step 3 (ready) is eligible
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, run_before=run_before)


def test_snapshot_inspector(seeded, make_app, snap_compare) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await _windows_loaded(pilot)
        await pilot.press("i")
        pane = app.main.pane(InspectorPane)
        await wait_for(lambda: pane.data is not None and len(pane.data.trajectories) == 6)
        await pilot.press("right_square_bracket")
        await wait_for(lambda: pane.agent_index == 1)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, run_before=run_before)


def test_snapshot_help(make_app, snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SNAP_SIZE, press=["question_mark"])


def _run_on_fixture_loop(pool: Any, coro: Any) -> None:
    """Run a coroutine on the loop that owns the asyncpg pool (the session loop, idle between tests)."""
    loop = pool._loop
    loop.run_until_complete(coro)


# -- the main layouts at a tmux split (80x24) and a full terminal (160x48) ---------------------------

LAYOUT_SIZES = {"80x24": (80, 24), "160x48": (160, 48)}


@pytest.mark.parametrize("size", LAYOUT_SIZES)
def test_layout_windows(seeded, make_app, snap_compare, size: str) -> None:
    assert snap_compare(make_app(), terminal_size=LAYOUT_SIZES[size], run_before=_windows_loaded)


@pytest.mark.parametrize("size", LAYOUT_SIZES)
def test_layout_inspector(seeded, make_app, snap_compare, size: str) -> None:
    async def run_before(pilot: Any) -> None:
        await _windows_loaded(pilot)
        await pilot.press("i")
        pane = pilot.app.main.pane(InspectorPane)
        await wait_for(lambda: pane.data is not None and len(pane.data.trajectories) == 6)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=LAYOUT_SIZES[size], run_before=run_before)


@pytest.mark.parametrize("size", LAYOUT_SIZES)
def test_layout_training(pool, make_app, snap_compare, size: str) -> None:
    _fixed_run_recorded(pool)
    assert snap_compare(make_app(), terminal_size=LAYOUT_SIZES[size], run_before=_training_drawn)


async def test_narrow_windows_pane_says_which_columns_it_hides(seeded, make_app) -> None:
    """At 80 columns the readiness table keeps window, state, agents, trajectories and mean P&L, and
    its title names the columns it hides; at 160 it shows all and says nothing."""
    from babylon_console.tui.widgets.windows import WindowsPane

    for size, hidden in (((80, 24), True), ((160, 48), False)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await _windows_loaded(pilot)
            pane = app.main.pane(WindowsPane)
            table = app.main.query_one("#windows-table", DataTable)
            labels = [str(c.label) for c in table.columns.values()]
            title = str(app.main.query_one("#windows-criteria").render())
            assert "P&L avg" in labels and "Window (UTC)" in labels
            if hidden:
                assert "P&L min" not in labels and "narrow: " in title and "P&L min" in title
                # every visible column fits: nothing is scrolled off to the right
                assert table.virtual_size.width <= table.size.width
            else:
                assert "P&L min" in labels and "narrow:" not in title
            assert bool(pane.hidden_columns) == hidden
