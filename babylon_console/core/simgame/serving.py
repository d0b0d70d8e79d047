"""Which simulated agents trade with which checkpoint.

`ServedPolicies` applies the serving rows (`console_serving`: the live model and, during an A/B
rollout, the candidate with its share) to a simulation directly, with no gateway: the last
`policy_agents` agents trade with the live checkpoint, the first `round(share * k)` of them with the
candidate; with no live model they keep their scripted strategies. The rollout benchmark uses it.

Offline checkpoints (`offline://...`) are loaded and drive their agents in process. Given the
settings, a served checkpoint (`wandb-artifact://`, `local-lora://`) drives its agents through its
OpenAI-compatible endpoint (`core.checkpoints.endpoints`): their LLM calls are logged under its `storagePath`,
which the A/B readout attributes by name. A name that cannot
drive agents (no settings, no endpoint configured, an unreadable checkpoint) is reported once
through `on_warning` and those agents keep their scripted strategy; an endpoint that fails is
reported once too, and its agents hold while it is down (`GuardedEndpointPolicy`).

The demo and `seed --live` use `GatewayAgents` instead: the market starts a model gateway in process
(`core.gateway`) and the driven agents call it as the newest game's agents do: the alias, their agent
id in `X-Agent-Id`, their calls logged under the provider's name (`GAME_PROVIDER`). The gateway, not
the market, decides live or candidate, so the A/B readout is read from the gateway's call log.
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

from ..checkpoints.registry import Served, serving
from ..names import is_offline

log = logging.getLogger(__name__)

REFRESH_S = 2.0
POLICY_CACHE = 16  # checkpoints kept loaded (a rollout needs two)
ENDPOINT_TIMEOUT_S = 20.0  # one call of a served agent (no retries: the next step asks again)
ENDPOINT_PAUSE_S = 30.0  # after a failed call, the endpoint's agents hold without asking for this long
# The newest game logs `llm_call_logs.model` as its provider's name (AGENT_LLM_PROVIDER), never the
# checkpoint that answered; agents driven through the gateway are logged the same way.
GAME_PROVIDER = "huggingface"
GATEWAY_HOST = "127.0.0.1"  # the market's own gateway: loopback only, with a key of its own


class WarnOnce:
    """Says each warning once, by key, to `on_warning` (the console, the CLI) or else to the log."""

    def __init__(self, on_warning: Callable[[str], None] | None) -> None:
        self.on_warning = on_warning
        self.said: set[str] = set()

    def __call__(self, key: str, message: str) -> None:
        if key in self.said:
            return
        self.said.add(key)
        (self.on_warning or log.warning)(message)


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
        self._warn_once = WarnOnce(on_warning)

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
            from ..training.backends.factory import checkpoint_root
            from ..training.backends.offline import OfflineBackend

            if is_offline(storage_path) or self.settings is None:
                policy = OfflineBackend(checkpoint_root(self.data_dir, "offline")).load_policy(storage_path)
            else:
                policy = self._endpoint_policy(served)
        except Exception as exc:  # any unreadable checkpoint: agents keep their strategy, said once
            self._warn_once(storage_path, f"live model {storage_path} cannot drive simulated agents: {exc}")
        self._policies[storage_path] = policy
        if len(self._policies) > POLICY_CACHE:
            self._retired.append(self._policies.pop(next(iter(self._policies))))
        return policy

    def _endpoint_policy(self, served: Served) -> Any:
        from ..checkpoints.endpoints import endpoint_for
        from ..sim.endpoint import EndpointPolicy

        endpoint = endpoint_for(served.storage_path, self.settings)
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        timeout = min(self.settings.eval_timeout_s, ENDPOINT_TIMEOUT_S)
        inner = EndpointPolicy(endpoint.model, endpoint.base_url, key, name=served.model_id, timeout=timeout,
                               max_retries=0)
        return GuardedEndpointPolicy(inner, timeout + 1.0, self._warn_once)

    async def aclose(self) -> None:
        """Close the endpoint clients (each one, whatever the others do)."""
        for policy in [*self._policies.values(), *self._retired]:
            await _close(policy)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._policies.clear()
        self._retired.clear()


class GatewayAgents:
    """The market's own model gateway and the agents that call it, as the newest game's agents do.

    `start` opens a gateway in process (loopback, a free port, a key generated for this market). Before
    each window the last `policy_agents` agents are given a policy that asks the gateway for the
    alias (BABYLON_GATEWAY_MODEL) with their agent id in `X-Agent-Id`: the gateway serves the live
    model, or the candidate for its sticky share of agents, and logs each call with its arm; the
    agents' calls are logged under `GAME_PROVIDER`. While nothing is live the agents are not sent to
    the gateway (it would answer 503) and keep their scripted strategies."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, settings: Any, policy_agents: int = 3,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.pool = pool
        self.dsn = dsn
        self.settings = settings
        self.policy_agents = policy_agents
        self.on_warning = on_warning
        self.server: Any = None
        self._client: Any = None
        self._agents: dict[str, GuardedEndpointPolicy] = {}
        self._outage = EndpointPause()
        self._warn_once = WarnOnce(on_warning)

    @property
    def alias(self) -> str:
        return str(self.settings.gateway_model)

    @property
    def served(self) -> list[Served]:
        """What the gateway serves now (its routing table, which follows the registry)."""
        if self.server is None:
            return []
        table = self.server.follower.table
        rows = []
        if table.live is not None:
            share = 1.0 - table.share if table.candidate is not None else 1.0
            rows.append(Served(table.live.model_id, table.live.storage_path, "live", share, table.rollout_id))
        if table.candidate is not None:
            rows.append(Served(table.candidate.model_id, table.candidate.storage_path, "candidate", table.share,
                               table.rollout_id))
        return rows

    async def start(self) -> GatewayAgents:
        import importlib
        import secrets

        from pydantic import SecretStr

        from ..gateway.server import GatewayServer

        key = secrets.token_urlsafe(24)
        settings = self.settings.model_copy(update={"gateway_keys": SecretStr(key)})
        self.server = await GatewayServer(settings, self.pool, self.dsn, host=GATEWAY_HOST, port=0).start()
        try:
            # the OpenAI client takes about a second to import: not on the loop that runs the market
            openai = await asyncio.to_thread(importlib.import_module, "openai")
            self._client = openai.AsyncOpenAI(base_url=self.server.base_url, api_key=key,
                                              timeout=self._timeout(), max_retries=0)
        except BaseException:
            await self.server.stop()
            self.server = None
            raise
        return self

    def _timeout(self) -> float:
        return min(float(self.settings.eval_timeout_s), ENDPOINT_TIMEOUT_S)

    def before_window(self, sim: Any, _window_id: str) -> None:
        """Send the driven agents to the gateway while something is live, else their strategies."""
        live = self.server is not None and self.server.follower.table.live is not None
        k = min(self.policy_agents, len(sim.agents))
        for index in range(len(sim.agents) - k, len(sim.agents)):
            sim.set_policy(index, self._policy(sim, sim.agents[index]) if live else None)

    def _policy(self, sim: Any, agent: Any) -> GuardedEndpointPolicy:
        policy = self._agents.get(agent.agent_id)
        if policy is None:
            from ..sim.endpoint import EndpointPolicy
            from ..sim.strategies import make_strategy

            inner = EndpointPolicy(self.alias, client=self._client, name=f"gateway:{self.alias}",
                                   extra_headers={"X-Agent-Id": agent.agent_id}, log_model=GAME_PROVIDER)
            policy = GuardedEndpointPolicy(inner, self._timeout() + 1.0, self._warn_once,
                                           fallback=make_strategy(agent.strategy, sim.seed, agent.index),
                                           outage=self._outage, label=f"the market's gateway ({self.alias})")
            self._agents[agent.agent_id] = policy
        return policy

    async def aclose(self) -> None:
        """Close the client, then stop the gateway (its calls in flight finish, its log is written)."""
        client, server = self._client, self.server
        self._client = self.server = None
        self._agents.clear()
        try:
            if client is not None:
                await client.close()
        finally:
            if server is not None:
                await server.stop()

    async def __aenter__(self) -> GatewayAgents:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _close(policy: Any) -> None:
    close = getattr(policy, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:  # a client that fails to close must not keep the others open
        log.info("endpoint client not closed cleanly: %s", exc)


@dataclass(slots=True)
class EndpointPause:
    """When an endpoint may be asked again, shared by every agent that asks it (so an endpoint that is
    down costs one timeout, not one per agent)."""

    down_until: float = 0.0


class GuardedEndpointPolicy:
    """A served checkpoint's agents asking its endpoint, so that an endpoint that is down cannot
    stall the market: each call is bounded, a failed call is a failed action (HOLD, the reason
    recorded), the first failure is said once, and the endpoint is left alone for
    ENDPOINT_PAUSE_S after a failure (its agents hold) instead of costing a timeout per step.

    With a `fallback` (the agent's scripted strategy), an endpoint that answers 503 (the gateway:
    nothing it can serve) is not a failure: the agent trades with its strategy, said once."""

    def __init__(self, inner: Any, deadline_s: float, warn: Callable[[str, str], None], *,
                 fallback: Any = None, outage: EndpointPause | None = None, label: str | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.temperature = inner.temperature
        self.deadline_s = deadline_s
        self.warn = warn
        self.fallback = fallback
        self.outage = outage or EndpointPause()
        self.label = label or f"{self.name} ({self.model})"
        self._scripted = False  # the last answer was a 503: the strategy trades until the pause ends

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def adecide(self, obs: Any, rng: Any, system_prompt: str, user_prompt: str) -> Any:
        import time

        from ..sim.actions import HOLD
        from ..sim.policy import Decision

        if time.monotonic() < self.outage.down_until:
            if self._scripted:
                return self._fall_back(obs, rng)
            return Decision(HOLD, "", "", error="endpoint error: skipped, the endpoint failed moments ago",
                            model=self.model)
        try:
            async with asyncio.timeout(self.deadline_s):
                decision = await self.inner.adecide(obs, rng, system_prompt, user_prompt)
        except TimeoutError:
            decision = Decision(HOLD, "", "", error=f"endpoint error: no answer within {self.deadline_s:g} s",
                                model=self.model)
        self._scripted = False
        if not (decision.error and decision.error.startswith("endpoint error")):
            return decision
        self.outage.down_until = time.monotonic() + ENDPOINT_PAUSE_S
        if self.fallback is not None and UNAVAILABLE in decision.error:
            self._scripted = True
            self.warn("unavailable:" + self.label, f"{self.label} serves nothing now ({decision.error}); "
                      "the simulated agents keep their scripted strategies")
            return self._fall_back(obs, rng)
        self.warn(f"endpoint:{self.label}", f"{self.label} cannot serve its simulated agents: "
                  f"{decision.error}; they hold, and the endpoint is asked again in {ENDPOINT_PAUSE_S:g} s")
        return decision

    def _fall_back(self, obs: Any, rng: Any) -> Any:
        """The scripted strategy's decision, logged under the strategy's name (it is no model's)."""
        import dataclasses

        # a copy: strategies reuse their Decision objects
        return dataclasses.replace(self.fallback.decide(obs, rng), model=getattr(self.fallback, "model", None))


UNAVAILABLE = "(HTTP 503)"  # how `sim.endpoint` describes a 503 answer
