"""The inspector's judge calibration view: `c` opens it for the selected window (loaded in a worker),
it shows both rankings, the correlation and the most disagreed pair with the two explanations; it
follows the window and says why when there is nothing to compare; `esc` closes it."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from babylon_console.tui.messages import WindowChosen

from .conftest import SIZE, plain, wait_for

JUDGED = "2025-11-24T10:00"
UNJUDGED = "2025-11-24T09:00"


async def judge_against_the_market(pool: Any) -> None:
    """Scores in the reverse order of the realised P&L: the judge and the market disagree throughout."""
    rows = await pool.fetch('SELECT "trajectoryId", "finalPnL" FROM trajectories WHERE "windowId" = $1 '
                            'ORDER BY "finalPnL", "trajectoryId"', JUDGED)
    await pool.executemany(
        "INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
        f"VALUES ($1, '{JUDGED}', 'outcome', $2, $3)",
        [(r[0], 1.0 - i / 10, f"because {i}") for i, r in enumerate(rows)])


async def open_inspector(app: Any, pilot: Any, window: str) -> Any:
    from babylon_console.tui.widgets.inspector import InspectorPane

    await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
    await pilot.press("1")
    table = app.main.query_one("#windows-table", DataTable)
    table.move_cursor(row=table.get_row_index(window))
    await pilot.press("i")
    pane = app.main.pane(InspectorPane)
    await wait_for(lambda: pane.data is not None and pane.data.window_id == window, what=window)
    return pane


async def test_c_opens_the_calibration_of_the_window_and_esc_closes_it(seeded, make_app) -> None:
    await judge_against_the_market(seeded)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_inspector(app, pilot, JUDGED)
        view = pane.query_one("#inspector-calibration")
        body = lambda: " ".join(plain(pane.query_one("#calibration-body"), width=160).split())  # noqa: E731
        await pilot.press("c")
        await wait_for(lambda: "Spearman" in body(), what="the calibration")
        assert view.display and not pane.query_one("#inspector-body").display
        text = body()
        assert f"Judge calibration of {JUDGED} · judge outcome · 6 judged, 0 not" in text
        assert "judge's score vs realised P&L: -1.00" in text
        assert "Judge rank" in text and "P&L rank" in text
        assert "Most disagreed pair: the judge ranks" in text and "score gap × P&L gap" in text
        assert "Judged higher:" in text and "Paid more:" in text
        assert "Judge: because 0" in text and "Judge: because 5" in text  # both explanations, side by side
        assert "Steps that made or lost the most: step" in text

        await pilot.press("escape")
        assert not view.display and pane.query_one("#inspector-body").display
        assert app.main.switcher.current == pane.id  # esc closed the view, not the pane


async def test_an_unjudged_window_says_why_it_has_no_calibration_and_the_view_follows_the_window(
        seeded, make_app) -> None:
    await judge_against_the_market(seeded)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_inspector(app, pilot, UNJUDGED)
        body = lambda: " ".join(plain(pane.query_one("#calibration-body"), width=160).split())  # noqa: E731
        await pilot.press("c")
        await wait_for(lambda: "no judgment of this window yet" in body(), what="the reason")
        assert "Spearman rank correlation, judge's score vs realised P&L: — (no judgment of this window yet)" in body()
        assert "Most disagreed pair: none, no judgment of this window yet" in body()

        # another window chosen, as the Windows pane chooses one (the screen marks the inspector stale; setting
        # the screen's window alone left the reload to the pane's 10 s poll): the open view follows it
        app.main.post_message(WindowChosen(JUDGED))
        await wait_for(lambda: f"Judge calibration of {JUDGED}" in body() and "-1.00" in body(), what="followed")
