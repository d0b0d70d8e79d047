"""Console papercuts: `]` reaches the newest window, the Checkpoints pane and the key bar at 80x24,
the inspector's step numbers and why a trajectory has no judgment."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from rich.console import Console
from textual.widgets import DataTable

from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

from .conftest import FIXED_NOW, SIZE, insert_model, plain, wait_for

SMALL = (80, 24)


def screen_text(app: Any) -> str:
    """The screen as a person reads it (what an SVG snapshot shows, as text)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return console.export_text()


async def test_right_bracket_reaches_a_window_newer_than_the_list_then_says_it_is_the_newest(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        # the pane chooses its first window, then tells the screen by message: wait for the screen
        await wait_for(lambda: app.main.selected_window == "2025-11-24T11:00", what="the first window chosen")
        await pilot.press("2")
        await wait_for(lambda: "2025-11-24T11:00" in plain(app.main.query_one("#outcomes-title")), what="outcomes")
        # the market writes a newer window while the Windows pane (the list's source) is hidden
        sim = Simulation(seed=11, n_agents=6, steps_per_window=4)
        await seed_history(seeded, sim, 7, FIXED_NOW + timedelta(hours=1))
        await pilot.press("right_square_bracket")
        await wait_for(lambda: app.main.selected_window == "2025-11-24T12:00", what="the newer window")
        await wait_for(lambda: "2025-11-24T12:00" in plain(app.main.query_one("#outcomes-title")), what="shown")
        await pilot.press("right_square_bracket")
        await wait_for(lambda: any("2025-11-24T12:00 is the newest window" in t for t in app.toasts), what="newest")
        assert app.main.selected_window == "2025-11-24T12:00"


async def test_the_inspector_numbers_steps_alike_and_says_why_a_trajectory_has_no_judgment(seeded, make_app) -> None:
    from textual.widgets import OptionList

    from babylon_console.core.checkpoints.holdout import set_holdout
    from babylon_console.tui.widgets.inspector import InspectorPane

    pool = seeded
    await set_holdout(pool, 0.05, operator="tester", reason=None)  # holds out 2025-11-24T11:00 alone
    judged = await pool.fetch('SELECT "trajectoryId" FROM trajectories WHERE "windowId" = $1 ORDER BY "trajectoryId"',
                              "2025-11-24T10:00")
    await pool.executemany("INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
                           "VALUES ($1, '2025-11-24T10:00', 'outcome', 0.5, 'steady')", [(r[0],) for r in judged[1:]])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        pane = app.main.pane(InspectorPane)
        title = lambda: plain(app.main.query_one("#inspector-title"))  # noqa: E731
        body = lambda: plain(app.main.query_one("#inspector-step"))  # noqa: E731

        async def inspect(window: str) -> None:
            await pilot.press("1")
            table = app.main.query_one("#windows-table", DataTable)
            table.move_cursor(row=table.get_row_index(window))
            await pilot.press("i")
            await wait_for(lambda: pane.data is not None and pane.data.window_id == window, what=window)

        await inspect("2025-11-24T11:00")
        assert "step 1/4" in title() and "Step 1/4 ·" in body()
        await pilot.press("n", "n")
        assert "step 3/4" in title() and "Step 3/4 ·" in body()
        assert "Judge none: the window is held out for evaluation (hold-out 5%)" in body()

        await inspect("2025-11-24T10:00")
        unjudged = next(i for i, t in enumerate(pane.data.trajectories) if t.trajectory_id not in pane.data.judgments)
        pane.query_one(OptionList).highlighted = unjudged
        await wait_for(lambda: pane.agent_index == unjudged, what="the unjudged agent")
        assert "Judge none: not in the judged group (the engine judged 5 of the window's 6 trajectories" in body()

        await inspect("2025-11-24T09:00")
        assert "Judge none: not judged yet" in body()


async def test_the_inspector_shows_the_games_judgment_beside_ours(seeded, make_app) -> None:
    from babylon_console.tui.widgets.inspector import InspectorPane

    pool = seeded
    window = "2025-11-24T10:00"
    first = await pool.fetchval('SELECT "trajectoryId" FROM trajectories WHERE "windowId" = $1 '
                                'ORDER BY "agentId", "startTime" LIMIT 1', window)
    # the game's own judge pre-filled its columns; ours is in console_judgments
    await pool.execute('UPDATE trajectories SET "aiJudgeReward" = 0.125, "aiJudgeReasoning" = \'game: cautious\' '
                       'WHERE "trajectoryId" = $1', first)
    await pool.execute("INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
                       "VALUES ($1, $2, 'outcome', 0.75, 'ours: beat the median')", first, window)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        pane = app.main.pane(InspectorPane)
        await pilot.press("1")
        table = app.main.query_one("#windows-table", DataTable)
        table.move_cursor(row=table.get_row_index(window))
        await pilot.press("i")
        await wait_for(lambda: pane.data is not None and pane.data.window_id == window, what=window)
        assert pane.current().trajectory_id == first
        body = plain(app.main.query_one("#inspector-step"))
        assert "Judge 0.750 (outcome)  ours: beat the median" in body
        assert "Game's judge 0.125  game: cautious" in body
        agents = str(pane.query_one("#inspector-agents").get_option_at_index(0).prompt)
        assert "judge 0.75" in agents  # the list shows our score, not the game's


async def test_at_80x24_the_checkpoints_pane_keeps_five_rows_and_names_the_columns_it_hides(seeded, make_app) -> None:
    from babylon_console.tui.widgets.checkpoints import CheckpointsPane

    for step in range(1, 9):
        await insert_model(seeded, step)
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(lambda: app.db_ready, what="connection")
        await app.data.promote("babylon-agent-step0001", 1.0)
        await app.data.promote("babylon-agent-step0002", 0.25)  # an A/B readout above the table
        await pilot.press("4")
        pane = app.main.pane(CheckpointsPane)
        await wait_for(lambda: pane.view is not None and pane.view.ab is not None, what="A/B readout")
        await pilot.pause()
        table = pane.query_one("#checkpoints-table", DataTable)
        assert table.scrollable_content_region.height - 1 >= 5  # rows under the header
        screen = screen_text(app)
        assert sum(f"babylon-agent-step000{i}" in screen for i in range(1, 9)) >= 5, screen
        summary = plain(pane.query_one("#checkpoints-summary"), width=78)
        assert "narrow: Reward, Loss, KL, Entropy, Grad norm, Registered (UTC), Market time hidden" in " ".join(
            summary.split()), summary
        await pilot.resize_terminal(*SIZE)
        await wait_for(lambda: "narrow" not in plain(pane.query_one("#checkpoints-summary")), what="every column")
        assert [str(c.label) for c in table.columns.values()][-3:] == ["Registered (UTC)", "Market time",
                                                                      "Held-out Δ [95% CI]"]


async def test_at_80x24_the_key_bar_keeps_help_and_quit_on_every_pane(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(lambda: app.db_ready, what="connection")
        for number in "123456":
            await pilot.press(number)
            await pilot.pause()
            bar = screen_text(app).splitlines()[-1]
            assert "? Help" in bar and "q Quit" in bar and "^p Commands" in bar, (number, bar)
