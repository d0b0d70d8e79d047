"""Pilot tests of the panes against a real (seeded) database: windows, outcomes, inspector, help, palette."""

from __future__ import annotations

from typing import Any

from textual.command import CommandPalette
from textual.widgets import DataTable, Input

from babylon_console.tui import bindings as keys
from babylon_console.tui.screens.help import HelpScreen, help_table
from babylon_console.tui.widgets.inspector import InspectorPane
from babylon_console.tui.widgets.windows import WindowsPane

from .conftest import SIZE, plain, rows, wait_for


def cell(app: Any, selector: str, row: int, column: int) -> str:
    table = app.main.query_one(selector, DataTable)
    return str(table.get_row_at(row)[column])


async def test_windows_pane_shows_readiness_filters_and_sorts(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="6 windows")
        pane = app.main.pane(WindowsPane)
        assert cell(app, "#windows-table", 0, 0) == "2025-11-24T11:00"  # newest first
        assert cell(app, "#windows-table", 0, 1) == "ready"
        assert cell(app, "#windows-table", 0, 2) == "6"
        assert pane.query_one("#windows-spark").data == [6] * 6

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"T09")
        assert await rows(app, "#windows-table") == 1
        assert cell(app, "#windows-table", 0, 0) == "2025-11-24T09:00"
        await pilot.press("enter")  # back to the table, filter kept
        assert isinstance(app.focused, DataTable)
        await pilot.press("escape")  # clears the filter
        assert await rows(app, "#windows-table") == 6
        assert not app.main.query_one("#windows-filter").display

        await pilot.press("r")  # oldest first
        assert cell(app, "#windows-table", 0, 0) == "2025-11-24T06:00"
        await pilot.press("s")  # next sort column: state
        assert "sorted by state" in plain(app.main.query_one("#windows-criteria"))


async def test_enter_opens_outcomes_and_brackets_move_between_windows(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6)
        await pilot.press("enter")
        assert app.main.switcher.current == "outcomes"
        await wait_for(lambda: app.main.query_one("#outcomes-stocks", DataTable).row_count == 5, what="stocks")
        title = plain(app.main.query_one("#outcomes-title"))
        assert "2025-11-24T11:00" in title
        tickers = {cell(app, "#outcomes-stocks", i, 0) for i in range(5)}
        assert tickers == {"BBLN", "NOVA", "QNTM", "HELX", "ORBT"}
        assert cell(app, "#outcomes-stocks", 0, 3).endswith("%")

        await pilot.press("left_square_bracket")
        await wait_for(lambda: "2025-11-24T10:00" in plain(app.main.query_one("#outcomes-title")),
                       what="older window")
        await pilot.press("escape")  # back to the previous pane
        assert app.main.switcher.current == "windows"


async def test_number_keys_switch_panes(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for key, pane in zip("234561", ("outcomes", "training", "checkpoints", "inspector", "errors", "windows"),
                             strict=True):
            await pilot.press(key)
            assert app.main.switcher.current == pane
            assert app.main.pane_bar.active == pane


async def test_inspector_moves_by_step_and_agent_and_searches(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6)
        await pilot.press("i")
        pane = app.main.pane(InspectorPane)
        await wait_for(lambda: pane.data is not None and len(pane.data.trajectories) == 6, what="trajectories")
        assert pane.window_id == "2025-11-24T11:00"
        title = lambda: plain(app.main.query_one("#inspector-title"))  # noqa: E731
        assert "agent 1/6 · step 1/4" in title()
        body = plain(app.main.query_one("#inspector-step"))
        assert "System prompt" in body and "User prompt" in body and "Response" in body and "Action" in body

        await pilot.press("n", "n")
        assert pane.step_index == 2 and "step 3/4" in title()
        await pilot.press("p")
        assert pane.step_index == 1
        await pilot.press("n", "n", "n")  # stops at the last step
        assert pane.step_index == 3

        await pilot.press("right_square_bracket")
        await wait_for(lambda: pane.agent_index == 1, what="next agent")
        assert pane.step_index == 0 and "agent 2/6" in title()
        await pilot.press("left_square_bracket")
        await wait_for(lambda: pane.agent_index == 0, what="previous agent")

        # search: steps whose text mentions HOLD (the simulator's agents hold at some steps)
        trajectory = pane.current()
        from babylon_console.tui.widgets.inspector import step_text

        word = "cash"
        expected = [i for i, s in enumerate(trajectory.steps) if word in step_text(s)]
        assert expected, "the seeded trajectory should mention cash"
        await pilot.press("slash", *word, "enter")
        assert pane.query_text == word
        assert pane.matches == expected
        assert pane.step_index == expected[0]
        assert "matching step" in title()
        await pilot.press("n")
        assert pane.step_index == (expected[1] if len(expected) > 1 else expected[0])
        await pilot.press("escape")  # clears the search
        assert pane.query_text == "" and pane.matches == []

        await pilot.press("slash", *"zzzz-not-there", "enter")
        assert any("not in this trajectory" in t for t in app.toasts)


async def test_help_screen_lists_every_binding(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(help_table(), width=140)
        for spec in keys.KEYS:
            if spec.id != "dialog.cancel_n":
                assert spec.id in text, spec.id
        assert "Promote the selected checkpoint" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_every_binding_has_a_unique_id_and_every_pane_a_number_key() -> None:
    ids = [spec.id for spec in keys.KEYS]
    assert len(ids) == len(set(ids))
    assert all(b.id for scope in keys.SCOPE_TITLES for b in keys.bindings(scope))
    assert [keys.BY_ID[f"pane.{name}"].key for name, _ in keys.PANES] == ["1", "2", "3", "4", "5", "6"]


async def test_palette_offers_commands_valid_now(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready, what="connection")
        titles = [c.title for c in app.get_system_commands(app.main)]
        assert any(t.startswith("Start engine") for t in titles)
        assert not any(t.startswith("Pause/resume") for t in titles)  # no engine running
        assert any(t.startswith("Filter") for t in titles)  # the windows pane's own commands
        assert any(t.startswith("Clear charts") and t.endswith("Training pane") for t in titles)  # another's

        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Show Checkpoints")
        await wait_for(lambda: app.screen.query("CommandList").first().option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(lambda: app.main.switcher.current == "checkpoints", what="palette command")


async def test_palette_in_read_only_mode_offers_no_actions(make_app) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE):
        await wait_for(lambda: app.db_ready)
        titles = [c.title for c in app.get_system_commands(app.main)]
        assert not any(t.startswith(("Start engine", "Stop engine", "Promote", "Roll back")) for t in titles)
        assert any(t.startswith("Show Training pane") for t in titles)


async def test_the_windows_pane_follows_a_window_chosen_in_outcomes(seeded, make_app) -> None:
    """`]` in Outcomes moves to the next window; back in Windows the cursor and detail are on it."""
    from textual.widgets import DataTable

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        table = app.main.query_one("#windows-table", DataTable)
        first = app.main.selected_window
        await pilot.press("2", "left_square_bracket")  # the previous (older) window
        await wait_for(lambda: app.main.selected_window not in (None, first), what="another window")
        chosen = app.main.selected_window
        await pilot.press("1")
        await pilot.pause()
        assert str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value) == chosen
        assert chosen in str(app.main.query_one("#windows-detail").render())
