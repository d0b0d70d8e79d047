"""The promote dialog and the Checkpoints pane's rollout evidence: tab then enter never cancels
silently, no evidence is said, an A/B share with nothing live is refused, and the audit table and
the A/B readout name the rollout (with the audit row's reason and evidence in text)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Static

from babylon_console.core.checkpoints.promotion import promote_on_evidence
from babylon_console.core.checkpoints.registry import NOTHING_LIVE
from babylon_console.tui.dialogs.confirm import ConfirmDialog
from babylon_console.tui.dialogs.promote import PromoteDialog
from babylon_console.tui.widgets.checkpoints import CheckpointsPane

from .conftest import SIZE, insert_model, plain, wait_for
from .test_actions import open_checkpoints


async def test_tab_then_enter_in_the_promote_dialog_never_cancels_silently(seeded, make_app) -> None:
    pool = seeded
    await insert_model(pool, 1)
    await insert_model(pool, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 2)
        await pilot.press("P")
        assert isinstance(app.screen, PromoteDialog)
        await pilot.press("down", "enter")  # a choice: focus moves to Continue
        await pilot.press("tab", "enter")
        assert isinstance(app.screen, PromoteDialog | ConfirmDialog)  # not cancelled behind the operator's back
        assert not any("cancelled" in t for t in app.toasts)
        while isinstance(app.screen, PromoteDialog | ConfirmDialog):
            await pilot.press("escape")
        await wait_for(lambda: any("cancelled: nothing changed" in t for t in app.toasts), what="cancel toast")


async def test_the_promote_dialog_says_when_there_is_no_evidence(seeded, make_app) -> None:
    pool = seeded
    model = await insert_model(pool, 1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 1)
        await pilot.press("P")
        assert isinstance(app.screen, PromoteDialog)
        said = plain(app.screen.query_one("#promote-no-evidence", Static))
        assert f"No evidence for {model}: never evaluated on held-out windows, and no paired A/B windows" in said


async def test_an_ab_share_with_nothing_live_is_refused_in_the_console(seeded, make_app) -> None:
    pool = seeded
    model = await insert_model(pool, 1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 1)
        await pilot.press("P")
        dialog = app.screen
        assert isinstance(dialog, PromoteDialog) and dialog.chosen() == 1.0  # nothing live: 100% by default
        await pilot.press("up", "enter")  # A/B 50%
        assert dialog.chosen() == 0.5
        await pilot.press("enter")  # Continue
        await wait_for(lambda: any(NOTHING_LIVE in t for t in app.toasts), what="refusal")
        assert f"cannot serve {model} to 50% of agents: {NOTHING_LIVE}" in " ".join(app.toasts)
        assert app.screen is app.main  # refused before any confirmation
    assert await pool.fetchval("SELECT count(*) FROM console_rollouts") == 0


async def test_the_audit_table_and_the_readout_name_the_rollout_with_reason_and_evidence(seeded, make_app) -> None:
    pool: Any = seeded
    first = await insert_model(pool, 1)
    second = await insert_model(pool, 2)
    await promote_on_evidence(pool, first, share=1.0, operator="op")
    result = await promote_on_evidence(pool, second, share=0.25, operator="op", note="a second look")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 2)
        audit = app.main.query_one("#checkpoints-audit", DataTable)
        await wait_for(lambda: audit.row_count == 2, what="audit rows")
        newest = [str(cell) for cell in audit.get_row_at(0)]
        assert newest[1] == "rollout" and newest[6:] == [str(result.rollout_id), "a second look", "no evidence"]
        pane = app.main.pane(CheckpointsPane)
        await wait_for(lambda: pane.view is not None and pane.view.ab is not None, what="readout")
        readout = plain(app.main.query_one("#checkpoints-ab", Static), width=300)
        assert f"rollout {result.rollout_id}, windows from " in readout and "0 of 3 paired windows" in readout


async def test_the_readouts_warnings_below_its_verdict_are_not_cut_off(seeded, make_app) -> None:
    """The readout's warnings follow its verdict: with the readout's two long lines wrapped at 160 columns, a
    6-line cap cut every warning (the arms' agents differing before the rollout among them)."""
    pool: Any = seeded
    await promote_on_evidence(pool, await insert_model(pool, 1), share=1.0, operator="op")
    await promote_on_evidence(pool, await insert_model(pool, 2), share=0.25, operator="op")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 2)
        pane = app.main.pane(CheckpointsPane)
        await wait_for(lambda: pane.view is not None and pane.view.ab is not None, what="readout")
        readout = app.main.query_one("#checkpoints-ab", Static)
        readout.update("\n".join(f"line {n}" for n in range(1, 9)))  # six lines of readout and two of warnings
        await pilot.pause()
        assert readout.size.height == 8
