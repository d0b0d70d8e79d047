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
through `on_warning` and those agents keep their scripted strategy; an endpoint that fails is
reported once too, and its agents hold while it is down (`GuardedEndpointPolicy`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from .inference import is_offline

log = logging.getLogger(__name__)

REFRESH_S = 2.0
POLICY_CACHE = 16  # checkpoints kept loaded (a rollout needs two)
ENDPOINT_TIMEOUT_S = 20.0  # one call of a served agent (no retries: the next step asks again)
ENDPOINT_PAUSE_S = 30.0  # after a failed call, the endpoint's agents hold without asking for this long


@dataclass(frozen=True, slots=True)
class Served:
    model_id: str
    storage_path: str
    role: str  # live or candidate
    share: float
    rollout_id: int | None = None  # the A/B rollout in progress (core.registry), if any


async def serving(pool: asyncpg.Pool | asyncpg.Connection) -> list[Served]:
    """What the game serves now (the `console_serving` view)."""
    rows = await pool.fetch("SELECT model_id, storage_path, role, share, rollout_id FROM console_serving")
    return [Served(r["model_id"], r["storage_path"], r["role"], float(r["share"] or 0), r["rollout_id"])
            for r in rows]


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
        self._policies: dict[str, Any] = {}  # least recently used first
        self._retired: list[Any] = []  # endpoint policies out of the cache, closed before the next window
        self._closing: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()

    async def refresh(self) -> None:
        self.served = await serving(self.pool)
        if "openai" not in sys.modules and self.settings is not None and not all(
                is_offline(s.storage_path) for s in self.served):
            import importlib

            # the OpenAI client takes about a second to import: not on the loop that runs the market
            await asyncio.to_thread(importlib.import_module, "openai")

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
        for policy in self._retired:  # out of the cache since the last window: no agent uses them now
            task = asyncio.ensure_future(_close(policy))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._retired.clear()
        for index, served in assignment(len(sim.agents), self.policy_agents, self.served):
            sim.set_policy(index, self._policy(served) if served is not None else None)

    def _policy(self, served: Served) -> Any | None:
        storage_path = served.storage_path
        if storage_path in self._policies:
            policy = self._policies.pop(storage_path)  # most recently used last
            self._policies[storage_path] = policy
            return policy
        policy = None
        try:
            from .backends.factory import checkpoint_root
            from .backends.offline import OfflineBackend

            if is_offline(storage_path) or self.settings is None:
                policy = OfflineBackend(checkpoint_root(self.data_dir, "offline")).load_policy(storage_path)
            else:
                policy = self._endpoint_policy(served)
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

    def _endpoint_policy(self, served: Served) -> Any:
        from .inference import endpoint_for
        from .sim.endpoint import EndpointPolicy

        endpoint = endpoint_for(served.storage_path, self.settings)
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        timeout = min(self.settings.eval_timeout_s, ENDPOINT_TIMEOUT_S)
        inner = EndpointPolicy(endpoint.model, endpoint.base_url, key, name=served.model_id, timeout=timeout,
                               max_retries=0)
        return GuardedEndpointPolicy(inner, timeout + 1.0, self._warn_once)

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            log.warning(message)

    async def aclose(self) -> None:
        """Close the endpoint clients (each one, whatever the others do)."""
        for policy in [*self._policies.values(), *self._retired]:
            await _close(policy)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._policies.clear()
        self._retired.clear()


async def _close(policy: Any) -> None:
    close = getattr(policy, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:  # a client that fails to close must not keep the others open
        log.info("endpoint client not closed cleanly: %s", exc)


class GuardedEndpointPolicy:
    """A served checkpoint's agents asking its endpoint, so that an endpoint that is down cannot
    stall the market: each call is bounded, a failed call is a failed action (HOLD, the reason
    recorded), the first failure is said once, and the endpoint is left alone for
    ENDPOINT_PAUSE_S after a failure (its agents hold) instead of costing a timeout per step."""

    def __init__(self, inner: Any, deadline_s: float, warn: Callable[[str, str], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.temperature = inner.temperature
        self.deadline_s = deadline_s
        self.warn = warn
        self._down_until = 0.0

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def adecide(self, obs: Any, rng: Any, system_prompt: str, user_prompt: str) -> Any:
        import time

        from .sim.actions import HOLD
        from .sim.policy import Decision

        if time.monotonic() < self._down_until:
            return Decision(HOLD, "", "", error="endpoint error: skipped, the endpoint failed moments ago",
                            model=self.model)
        try:
            async with asyncio.timeout(self.deadline_s):
                decision = await self.inner.adecide(obs, rng, system_prompt, user_prompt)
        except TimeoutError:
            decision = Decision(HOLD, "", "", error=f"endpoint error: no answer within {self.deadline_s:g} s",
                                model=self.model)
        if decision.error and decision.error.startswith("endpoint error"):
            self._down_until = time.monotonic() + ENDPOINT_PAUSE_S
            self.warn(f"endpoint:{self.model}", f"{self.name} ({self.model}) cannot serve its simulated agents: "
                      f"{decision.error}; they hold, and the endpoint is asked again in {ENDPOINT_PAUSE_S:g} s")
        return decision
