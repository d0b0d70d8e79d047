"""The demo's simulated market, on the background loop with a pool of its own, and the engine
settings the demo starts its engine with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..data import close_pool
from .engine import EngineOverrides

if TYPE_CHECKING:
    from ...core.simgame.live_market import LiveMarket
    from ..data import ConsoleData
    from .background import BackgroundLoop


@dataclass(slots=True)
class DemoSettings:
    windows: int = 24
    agents: int = 12
    steps: int = 12
    seed: int = 7
    seconds_per_window: float = 10.0
    policy_agents: int = 6  # agents served by the live (or candidate) checkpoint: an A/B split has both arms
    holdout_share: float = 0.15  # set as the demo database's hold-out record when it has none


class DemoRunner:
    """The demo's simulated market: seed a short history if the database has none, then write a
    window every `seconds_per_window`, with a few agents calling a model gateway the market starts
    (`core.simgame.live_market.LiveMarket`, which `seed --live` runs too), as the game's agents would.

    It writes a hold-out record and a simulated market into its database: only into the demo's own
    (`core.simgame.demo.demo_settings`), never an operator's database."""

    def __init__(self, data: ConsoleData, background: BackgroundLoop, demo: DemoSettings | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 on_window: Callable[[str, int], None] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        from ...core.errors import Refused
        from ...core.simgame.demo import is_demo

        if not is_demo(data.settings):
            raise Refused(f"the demo's market runs only in the demo's own database (<data dir>/demo), not in "
                          f"{data.target_label}: it would write a hold-out record and a simulated market there")
        self.data = data
        self.background = background
        self.demo = demo or DemoSettings()
        self.progress = progress
        self.on_window = on_window
        self.on_warning = on_warning
        self.market: LiveMarket | None = None
        self.live = False  # the market and its gateway are up: the demo's engine may start

    async def run(self) -> int:
        """Seed if needed, then run the market until cancelled. Returns the windows seeded."""
        return await self.background.run(self._main())

    def stop(self) -> None:
        if self.market is not None:
            self.background.call(self.market.stop)

    async def _main(self) -> int:
        from ...core.checkpoints.holdout import ensure_holdout
        from ...core.db.connections import create_pool
        from ...core.game.market_clock import current_clock
        from ...core.game.store import GameStore
        from ...core.sim.simulation import Simulation
        from ...core.simgame.live_market import LiveMarket
        from ...core.simgame.seeding import seed_history

        target = self.data.target()
        pool = await create_pool(target, max_size=4)  # the market, and the gateway's log and heartbeat
        try:
            # the demo's database keeps its own hold-out (a record, as every database): set it once
            await ensure_holdout(pool, self.demo.holdout_share, operator="demo",
                                 reason="the demo keeps a share of its windows for held-out evaluation")
            sim = Simulation(seed=self.demo.seed, n_agents=self.demo.agents, steps_per_window=self.demo.steps)
            seeded = 0
            if not await GameStore(pool).has_trajectories():
                total = self.demo.windows

                def progress(done: int, _result: object) -> None:
                    if self.progress is not None:
                        self.progress(done, total)

                now = (await current_clock(pool)).now()
                report = await seed_history(pool, sim, total, now, progress=progress)
                seeded = report.windows_written
            self.market = LiveMarket(pool, target.dsn, self.data.settings, sim, self.demo.seconds_per_window,
                                     self.demo.policy_agents, on_warning=self.on_warning)

            def gateway_up(_gateway: object) -> None:
                # only now may the engine start (`live`): its imports (ART imports the OpenAI client) must
                # not run while the gateway's import of that client is half done in this thread
                # ("partially initialized module 'openai.types.chat'", seen in the demo)
                self.live = True

            # the market's own gateway: up before the first window, down after the last
            await self.market.run(on_live=gateway_up, on_window=lambda r: self.on_window and self.on_window(
                r.window_id, len(r.trajectories)))
            return seeded
        finally:
            await close_pool(pool)


def engine_overrides_for_demo(seconds_per_window: float) -> EngineOverrides:
    """Engine settings for the demo: continuous, offline, outcome judge, thresholds for 12 agents."""
    return EngineOverrides(
        judge="outcome", backend="offline", iterations=None, windows_per_iteration=4, auto_rollback=True,
        eval_every=5,
        min_agents=5, min_steps=1, settle_seconds=60, poll_seconds=max(1.0, seconds_per_window / 4),
    )
