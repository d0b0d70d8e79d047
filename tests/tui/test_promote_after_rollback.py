"""Promoting in the console a candidate whose last rollout the gate rolled back is against the
evidence (typed confirmation and a reason), though no rollout runs now; the A/B readout stays hidden."""

from __future__ import annotations

from textual.widgets import Static

from babylon_console.core.checkpoints.promotion import promote_on_evidence
from babylon_console.core.checkpoints.registry import Registry
from babylon_console.tui.dialogs.confirm import TypedConfirmDialog

from .conftest import SIZE, insert_model, wait_for
from .test_actions import open_checkpoints

REASON = "candidate error rate 12.0% (6 of 50 requests through the gateway) passes the limit 5.0%"


async def test_promoting_a_candidate_the_gate_rolled_back_asks_for_a_reason(seeded, make_app) -> None:
    pool = seeded
    await promote_on_evidence(pool, await insert_model(pool, 0), share=1.0, operator="op")
    candidate = await insert_model(pool, 1)
    rollout = (await promote_on_evidence(pool, candidate, share=0.25, operator="op")).rollout_id
    await Registry(pool).rollback(operator="auto-rollback", note=f"automatic rollback: {REASON}", rollout_id=rollout,
                                  evidence={"rollout_id": rollout, "verdict": "rollback", "reasons": [REASON]})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints(app, pilot, 2)
        assert pane.selected_id == candidate
        assert not app.main.query_one("#checkpoints-ab", Static).display  # no rollout runs
        await pilot.press("P")
        await pilot.press("down", "up", "enter")  # 10%, then Continue
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, TypedConfirmDialog), what="typed confirmation")
        body = str(app.screen.query_one(".dialog-body").render())
        assert f"rollout {rollout} was rolled back: {REASON}" in " ".join(body.split())
