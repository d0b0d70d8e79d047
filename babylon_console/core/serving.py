"""Which simulated agents trade with which checkpoint: the serving rule of the simulated market.

The game reads `console_serving` (the live model and, during an A/B rollout, the candidate with its
share). The simulator stands in for the game here: the last `policy_agents` agents of the market
trade with the live checkpoint, and the candidate's share of those agents with the candidate during
a rollout; with no live model they keep their scripted strategies. The demo console and headless
`seed --live` both use this one rule, so a promotion changes what agents do in either.

Offline checkpoints (`offline://...`) are loaded and drive their agents in process. Given the
settings, a served checkpoint (`wandb-artifact://`, `local-lora://`) drives its agents through its
OpenAI-compatible endpoint (`core.inference`), as the game's agents would call it: their LLM calls
are logged under its `storagePath`, so the live A/B readout attributes them. A name that cannot
drive agents (no settings, no endpoint configured, an unreadable checkpoint) is reported once
through `on_warning` and those agents keep their scripted strategy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

REFRESH_S = 2.0
POLICY_CACHE = 16  # checkpoints kept loaded (a rollout needs two)


@dataclass(frozen=True, slots=True)
class Served:
    model_id: str
    storage_path: str
    role: str  # live or candidate
    share: float


async def serving(pool: asyncpg.Pool | asyncpg.Connection) -> list[Served]:
    """What the game serves now (the `console_serving` view)."""
    rows = await pool.fetch("SELECT model_id, storage_path, role, share FROM console_serving")
    return [Served(r["model_id"], r["storage_path"], r["role"], float(r["share"] or 0)) for r in rows]


def assignment(n_agents: int, policy_agents: int, served: list[Served]) -> list[tuple[int, Served | None]]:
    """(agent index, what it trades with) for the agents the rule drives: the last `policy_agents`
    agents; the first `round(share * k)` of them take the candidate during a rollout."""
    k = min(policy_agents, n_agents)
    live = next((s for s in served if s.role == "live"), None)
    candidate = next((s for s in served if s.role == "candidate"), None)
    n_candidate = round(candidate.share * k) if candidate is not None else 0
    return [(n_agents - 1 - i, candidate if candidate is not None and i < n_candidate else live) for i in range(k)]


class ServedPolicies:
    """Keeps the serving rows fresh and applies the rule to a simulation before each window."""

    def __init__(self, pool: asyncpg.Pool, data_dir: Path, policy_agents: int = 3,
                 on_warning: Callable[[str], None] | None = None, settings: Any = None) -> None:
        """`settings` (endpoints and keys) lets served checkpoints drive agents through their endpoint."""
        self.pool = pool
        self.data_dir = data_dir
        self.policy_agents = policy_agents
        self.on_warning = on_warning
        self.settings = settings
        self.served: list[Served] = []
        self._policies: dict[str, Any] = {}
        self._retired: list[Any] = []  # endpoint policies out of the cache, closed by `aclose`
        self._warned: set[str] = set()

    async def refresh(self) -> None:
        self.served = await serving(self.pool)

    async def keep_fresh(self, every_s: float = REFRESH_S) -> None:
        """Re-read the serving rows every `every_s` until cancelled; a failed read keeps the last rows."""
        while True:
            try:
                await self.refresh()
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                log.info("serving rows not refreshed: %s", exc)
            await asyncio.sleep(every_s)

    def before_window(self, sim: Any, _window_id: str) -> None:
        """Set each driven agent's policy for the next window (the `LiveSimulation.before_window` hook)."""
        for index, served in assignment(len(sim.agents), self.policy_agents, self.served):
            sim.set_policy(index, self._policy(served.storage_path) if served is not None else None)

    def _policy(self, storage_path: str) -> Any | None:
        if storage_path in self._policies:
            return self._policies[storage_path]
        policy = None
        try:
            from .backends.factory import checkpoint_root
            from .backends.offline import OfflineBackend
            from .inference import is_offline

            if is_offline(storage_path) or self.settings is None:
                policy = OfflineBackend(checkpoint_root(self.data_dir, "offline")).load_policy(storage_path)
            else:
                policy = self._endpoint_policy(storage_path)
        except Exception as exc:  # any unreadable checkpoint: agents keep their strategy, said once
            if storage_path not in self._warned:
                self._warned.add(storage_path)
                message = f"live model {storage_path} cannot drive simulated agents: {exc}"
                if self.on_warning is not None:
                    self.on_warning(message)
                else:
                    log.warning(message)
        self._policies[storage_path] = policy
        if len(self._policies) > POLICY_CACHE:
            self._retired.append(self._policies.pop(next(iter(self._policies))))
        return policy

    def _endpoint_policy(self, storage_path: str) -> Any:
        from .inference import endpoint_for
        from .sim.endpoint import EndpointPolicy

        endpoint = endpoint_for(storage_path, self.settings)
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        return EndpointPolicy(endpoint.model, endpoint.base_url, key, name=storage_path.rsplit("/", 1)[-1],
                              timeout=self.settings.eval_timeout_s)

    async def aclose(self) -> None:
        """Close the endpoint clients."""
        for policy in [*self._policies.values(), *self._retired]:
            close = getattr(policy, "aclose", None)
            if close is not None:
                await close()
        self._policies.clear()
        self._retired.clear()
