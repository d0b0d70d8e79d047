"""A live simulated market with a model gateway of its own: what `seed --live` and the demo run.

`LiveSimulation` (`core.simgame.seeding`) writes a window every `seconds_per_window` of real time; before
each window `GatewayAgents` (`core.simgame.serving`) sends the driven agents to a gateway started in process,
which serves them the live model or, for its share of them, the candidate, as the game's agents are
served. The gateway is up before the first window and down after the last.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from ..config import Settings
from ..sim.simulation import Simulation, WindowResult
from .seeding import LiveSimulation
from .serving import GatewayAgents


class LiveMarket:
    """One live market: its windows (`simulation`) and the gateway its driven agents call (`gateway`).

    `policy_agents`: how many agents call the gateway (0: none). `on_warning`: what the gateway's agents
    report once (an endpoint down, a checkpoint that cannot serve). `stop` may be called from the
    market's loop at any time: the window being written is finished, the next one is not started."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, settings: Settings, sim: Simulation,
                 seconds_per_window: float, policy_agents: int,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.simulation = LiveSimulation(pool, sim, seconds_per_window)
        self.gateway = GatewayAgents(pool, dsn, settings, policy_agents, on_warning=on_warning)
        self.simulation.before_window = self.gateway.before_window

    @property
    def written(self) -> list[str]:
        """The windows written so far, oldest first."""
        return self.simulation.written

    def stop(self) -> None:
        self.simulation.stop()

    async def run(self, max_windows: int | None = None, *,
                  on_live: Callable[[GatewayAgents], object] | None = None,
                  on_window: Callable[[WindowResult], object] | None = None) -> list[str]:
        """Start the gateway, write windows until stopped (or `max_windows`), stop the gateway; the
        windows written. `on_live` is called once the gateway is up, before the first window;
        `on_window` after each window is written."""
        async with self.gateway:
            if on_live is not None:
                on_live(self.gateway)
            await self.simulation.run(max_windows=max_windows, on_window=on_window)
        return self.written
