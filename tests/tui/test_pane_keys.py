"""Keys act only on the pane on screen: another pane's action key does nothing and shows nothing,
the key bar lists the keys that work on the pane shown, `c` clears the charts, and the palette
goes to an action's pane before it acts."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable

from babylon_console.tui import bindings as keys
from babylon_console.tui.screens.main import MainScreen
from babylon_console.tui.widgets.checkpoints import CheckpointsPane
from babylon_console.tui.widgets.errors import ErrorsPane
from babylon_console.tui.widgets.inspector import InspectorPane
from babylon_console.tui.widgets.keybar import KeyBar
from babylon_console.tui.widgets.outcomes import OutcomesPane
from babylon_console.tui.widgets.training import TrainingPane
from babylon_console.tui.widgets.windows import WindowsPane

from .conftest import SIZE, insert_model, plain, training_events, wait_for

PANE_SCOPES = [name for name, _ in keys.PANES]
NUMBER = {name: str(i) for i, name in enumerate(PANE_SCOPES, start=1)}
GLOBAL_SCOPES = ("app", "main", "table")


def _keys_of(*scopes: str) -> set[str]:
    return {key.strip() for spec in keys.KEYS if spec.scope in scopes for key in spec.key.split(",")}


def foreign_keys(scope: str) -> list[str]:
    """Keys of the other panes' actions that mean nothing on `scope` (nor everywhere)."""
    others = [s for s in PANE_SCOPES if s != scope]
    return sorted(_keys_of(*others) - _keys_of(scope, *GLOBAL_SCOPES))


def state(app: Any) -> dict[str, Any]:
    """Everything an action key of any pane could change, and whatever it could show."""
    main = app.main
    windows, outcomes = main.pane(WindowsPane), main.pane(OutcomesPane)
    training, checkpoints = main.pane(TrainingPane), main.pane(CheckpointsPane)
    inspector, errors = main.pane(InspectorPane), main.pane(ErrorsPane)
    return {
        "screens": [type(s).__name__ for s in app.screen_stack],
        "toasts": list(app.toasts),
        "pane": main.switcher.current,
        "selected window": main.selected_window,
        "windows": (windows.sort_index, windows.descending, windows.filter_text,
                    bool(windows.query_one("#windows-filter").display)),
        "outcomes": outcomes.selected_window,
        "training charts": training.state.chart_version,
        "checkpoint": checkpoints.selected_id,
        "inspector": (inspector.agent_index, inspector.step_index, inspector.query_text,
                      bool(inspector.query_one("#inspector-search").display)),
        "errors": len(errors.entries),
        "engine": app.engine,
        "action workers": sorted(w.name for w in app.workers if w.group in ("action", "evaluate")),
    }


async def every_pane_busy(pool: Any, app: Any, pilot: Any) -> None:
    """A console where every pane's actions would do something: a live model and a candidate
    (P and R enabled), a window with outcomes and trajectories, plotted training steps."""
    await wait_for(lambda: app.db_ready, what="connection")
    await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
    await app.data.promote("babylon-agent-step0001", 1.0)
    app.add_events(training_events(4))
    training = app.main.pane(TrainingPane)
    await wait_for(lambda: training.state.step == 4, what="training steps")
    await pilot.press("4")
    checkpoints = app.main.pane(CheckpointsPane)
    await wait_for(lambda: checkpoints.view is not None and checkpoints.view.live is not None, what="live model")
    await wait_for(lambda: checkpoints.selected_id == "babylon-agent-step0002", what="candidate selected")
    assert checkpoints.check_action("promote", ()) and checkpoints.check_action("rollback", ())
    await pilot.press("5")
    inspector = app.main.pane(InspectorPane)
    await wait_for(lambda: inspector.data is not None and inspector.data.trajectories, what="trajectories")
    await pilot.press("2")
    await wait_for(lambda: app.main.query_one("#outcomes-stocks", DataTable).row_count > 0, what="outcomes")
    await pilot.press("1")
    app.main.pane(ErrorsPane).add("warning", "test", "one line, so that c would clear something")


CHARS = {"slash": "/", "left_square_bracket": "[", "right_square_bracket": "]", "enter": "\r", "space": " "}


async def burst(app: Any, *keys_: str) -> None:
    """Keys as a terminal delivers a fast burst (typed quickly, or `4 3 R`): all queued before the
    next frame, unlike `pilot.press`, which waits for the app to settle after each key."""
    from textual import events

    for key in keys_:
        event = events.Key(key, CHARS.get(key, key if len(key) == 1 else None))
        event.set_sender(app)
        app._driver.send_message(event)


async def _foreign_keys_do_nothing(seeded: Any, make_app: Any, scope: str, came_from: str) -> None:
    await insert_model(seeded, 1)
    await insert_model(seeded, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await every_pane_busy(seeded, app, pilot)
        for key in foreign_keys(scope):
            await pilot.press(NUMBER[came_from])  # the focus is inside `came_from`
            await pilot.pause()
            before = state(app) | {"pane": scope}
            await burst(app, NUMBER[scope], key)  # the key right behind the switch
            await pilot.pause()
            assert state(app) == before, f"{key!r} right after {NUMBER[scope]} ({scope} pane, from {came_from})"
            await pilot.press(key)  # and once the pane is settled
            await pilot.pause()
            assert state(app) == before, f"{key!r} on the {scope} pane (from {came_from})"


# Each pane shown right after the pane whose keys would act there if they leaked.
@pytest.mark.parametrize(("scope", "came_from"), [
    ("windows", "checkpoints"),  # P, R, V
    ("outcomes", "inspector"),  # n, p
    ("training", "checkpoints"),  # P, R, V: the report
    ("checkpoints", "windows"),  # s, r, i
    ("inspector", "windows"),  # s, r, enter
    ("errors", "inspector"),  # n, p, [, ]
])
async def test_another_panes_action_keys_do_nothing_here(seeded, make_app, scope: str, came_from: str) -> None:
    await _foreign_keys_do_nothing(seeded, make_app, scope, came_from)


async def test_rollback_and_next_step_on_the_training_pane_do_nothing(seeded, make_app) -> None:
    """The report: `4` then `3` then `R` opened "Confirm rollback"; after the Inspector, `n` moved it."""
    await insert_model(seeded, 1)
    await insert_model(seeded, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await every_pane_busy(seeded, app, pilot)
        await pilot.press("4", "3", "R", "V", "P")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert not app.toasts
        inspector = app.main.pane(InspectorPane)
        await pilot.press("5", "3", "n", "n", "right_square_bracket")
        await pilot.pause()
        assert (inspector.agent_index, inspector.step_index) == (0, 0)


def bar_text(app: Any) -> str:
    return plain(app.main.query_one(KeyBar), width=SIZE[0])


def shown_descriptions(app: Any, scope: str) -> set[str]:
    """Entries as the bar writes them: ' key description ', then the next one's leading space."""
    return {f" {app.get_key_display(s.binding())} {s.description}  " for s in keys.specs(scope) if s.show}


async def test_the_key_bar_lists_the_keys_of_the_pane_shown(seeded, make_app) -> None:
    await insert_model(seeded, 1)
    await insert_model(seeded, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await every_pane_busy(seeded, app, pilot)
        for scope in PANE_SCOPES:
            for came_from in PANE_SCOPES:
                await pilot.press(NUMBER[came_from], NUMBER[scope])
                await pilot.pause()
                text = bar_text(app)
                for entry in shown_descriptions(app, scope) | {" ? Help  ", " q Quit  "}:
                    assert entry in text, f"{entry!r} missing on {scope} (after {came_from}): {text!r}"
                others = set().union(*(shown_descriptions(app, s) for s in PANE_SCOPES if s != scope))
                for entry in others - shown_descriptions(app, scope):
                    assert entry not in text, f"{entry!r} shown on {scope} (after {came_from}): {text!r}"


async def test_c_clears_the_charts(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main.pane(TrainingPane)
        app.add_events(training_events(6))
        await wait_for(lambda: pane.state.step == 6, what="training steps")
        await pilot.press("3")
        await wait_for(lambda: pane._charts_shown == pane.state.chart_version, what="charts drawn")
        assert all(pane.state.series[key] for key in ("train/reward", "loss/train"))
        assert " c Clear charts  " in bar_text(app)
        await pilot.press("c")
        assert not any(pane.state.series.values())
        await wait_for(lambda: pane._charts_shown == pane.state.chart_version, what="charts redrawn")


async def test_the_palette_finds_every_action_and_goes_to_its_pane(seeded, make_app) -> None:
    await insert_model(seeded, 1)
    await insert_model(seeded, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await every_pane_busy(seeded, app, pilot)
        assert app.main.switcher.current == "windows"
        titles = [c.title for c in app.get_system_commands(app.main)]
        for spec in keys.KEYS:
            if spec.palette and spec.scope in PANE_SCOPES:
                assert any(t.startswith(f"{spec.description} (") and t.endswith(f"{keys.PANE_TITLES[spec.scope]} pane")
                           for t in titles), spec.id
        # Clear charts, chosen on the Windows pane: the Training pane is shown, then its charts cleared
        training = app.main.pane(TrainingPane)
        assert any(training.state.series.values())
        await pilot.press("ctrl+p", *"Clear charts")
        await wait_for(lambda: app.screen.query("CommandList").first().option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(lambda: app.main.switcher.current == "training", what="the Training pane")
        await wait_for(lambda: not any(training.state.series.values()), what="charts cleared")
        # Promote, chosen on the Training pane: the Checkpoints pane, then the promote dialog
        from babylon_console.tui.dialogs.promote import PromoteDialog

        await pilot.press("ctrl+p", *"Promote")
        await wait_for(lambda: app.screen.query("CommandList").first().option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, PromoteDialog), what="promote dialog")
        assert app.main.switcher.current == "checkpoints"


async def test_j_k_g_G_home_end_move_the_table_cursor(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        table = app.main.query_one("#windows-table", DataTable)
        assert app.focused is table and table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 5
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == 5
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.pause()
        assert app.main.selected_window == str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        # in the filter field the same keys are text (home/end move in the field)
        await pilot.press("slash", "g", "home")
        assert app.main.query_one("#windows-filter").value == "g"
        assert table.cursor_row == 0
        await pilot.press("escape")
        # the inspector's agent list
        await pilot.press("5")
        inspector = app.main.pane(InspectorPane)
        await wait_for(lambda: inspector.data is not None and inspector.data.trajectories, what="trajectories")
        await pilot.press("j")
        await wait_for(lambda: inspector.agent_index == 1, what="next agent")
        await pilot.press("end")
        await wait_for(lambda: inspector.agent_index == len(inspector.data.trajectories) - 1, what="last agent")
        await pilot.press("g")
        await wait_for(lambda: inspector.agent_index == 0, what="first agent")


async def test_help_groups_keys_by_the_pane_they_work_on(seeded, make_app) -> None:
    from babylon_console.tui.screens.help import HelpScreen, help_table

    text = plain(help_table(shown="checkpoints"), width=140)
    lines = text.splitlines()
    for scope in PANE_SCOPES:
        heading = next(i for i, line in enumerate(lines) if line.startswith(keys.SCOPE_TITLES[scope]))
        assert "only while its pane is shown" in lines[heading]
        end = next(i for i in range(heading + 1, len(lines) + 1) if i == len(lines) or not lines[i].strip())
        group = "\n".join(lines[heading + 1:end])  # up to the blank line before the next group
        assert all(spec.id in group for spec in keys.specs(scope)), scope
    assert "the pane shown now" in next(line for line in lines if line.startswith("Checkpoints pane (4)"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = plain(app.screen.query_one("#help-table"), width=140)
        assert "the pane shown now" in next(line for line in shown.splitlines() if line.startswith("Training pane"))


async def test_a_palette_action_acts_on_its_panes_fresh_data_not_what_it_showed_minutes_ago(
        seeded, make_app) -> None:
    """Promote from the palette on another pane: the Checkpoints pane is read again before acting, so a
    checkpoint that failed since it was last shown is refused with the reason, not offered a dialog."""
    from babylon_console.tui.dialogs.promote import PromoteDialog

    await insert_model(seeded, 1)
    await insert_model(seeded, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await every_pane_busy(seeded, app, pilot)  # the Checkpoints pane showed step 2 eligible, then was hidden
        await seeded.execute(
            """UPDATE trained_models SET status = 'failed' WHERE "modelId" = 'babylon-agent-step0002'""")
        await pilot.press("ctrl+p", *"Promote")
        await wait_for(lambda: app.screen.query("CommandList").first().option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(lambda: any("failed" in t for t in app.toasts), what="the refusal")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, PromoteDialog) and app.main.switcher.current == "checkpoints"
