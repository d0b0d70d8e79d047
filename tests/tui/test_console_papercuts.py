"""Console papercuts: `]` reaches the newest window, the Checkpoints pane and the key bar at 80x24,
the inspector's step numbers and why a trajectory has no judgment."""

from __future__ import annotations

from datetime import timedelta

from textual.widgets import DataTable

from babylon_console.core.seeding import seed_history
from babylon_console.core.sim.simulation import Simulation

from .conftest import FIXED_NOW, SIZE, plain, wait_for


async def test_right_bracket_reaches_a_window_newer_than_the_list_then_says_it_is_the_newest(seeded, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.main.query_one("#windows-table", DataTable).row_count == 6, what="windows")
        assert app.main.selected_window == "2025-11-24T11:00"
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
