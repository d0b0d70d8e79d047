"""The Checkpoints pane shows what the Prisma-era game's own query serves next to "live", and warns
when that is not the live model (a newer 'ready' row the game wrote itself)."""

from __future__ import annotations

from datetime import datetime

from .conftest import SIZE, insert_model, open_checkpoints_pane, summary_text, wait_for


async def test_the_pane_shows_the_games_query_and_warns_when_it_is_not_the_live_model(seeded, make_app) -> None:
    live = await insert_model(seeded, 1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints_pane(app, pilot)

        def summary() -> str:
            return summary_text(pane)
        await wait_for(lambda: pane.view is not None, what="checkpoints")
        assert "live: none · game's query: no row (base model)" in summary()
        await app.data.promote(live, 1.0)
        await wait_for(lambda: "game's query: the live model" in summary(), what="the live model served")
        assert "warning" not in summary()
        await seeded.execute(
            'INSERT INTO trained_models (id, "modelId", version, "baseModel", status, "storagePath", "createdAt", '
            '"updatedAt") VALUES (\'game-newer\', \'game-newer\', \'v2\', \'Qwen/Qwen3-8B\', \'ready\', '
            "'https://blob.example/v2', $1, $1)", datetime(2030, 1, 1))
        pane.request_load()
        await wait_for(lambda: "game's query: game-newer" in summary(), what="the game's newer row")
        assert (f"warning: the game's query returns game-newer (status 'ready', written by the game), "
                f"not the live model {live}") in summary()
        row = next(r for r in pane.view.rows if r.model.model_id == "game-newer")
        assert row.role == "ready" and row.refusal is not None and "written by the game" in row.refusal
