"""The population and the window loop.

`Simulation` owns one `Market` and a fixed set of agents. Each call to `simulate_window` advances
the market by one hour (prices carry over) and runs every agent through it; each agent starts the
window with a fresh portfolio, so agents in a window are comparable (one window = one scenario).
Agent randomness is keyed by (seed, hour, agent index): swapping one agent's policy does not change
what the others do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .episode import Episode
from .episode_context import AgentSpec, Row, WindowContext, window_context
from .game_rows import EpisodeStats, episode_rows, market_outcome_rows, user_row
from .market import DEFAULT_TICKERS, Market, WindowMarket
from .strategies import DEFAULT_STRATEGY_ORDER, STRATEGIES, ScriptedStrategy, make_strategy

AgentKey = int | str


@dataclass(slots=True)
class WindowResult:
    """One simulated hour: rows for the four game tables (User rows: `Simulation.user_rows`)."""

    window_id: str
    window_start: datetime
    market: WindowMarket
    trajectories: list[Row]
    llm_calls: list[Row]
    market_outcomes: list[Row]
    stats: list[EpisodeStats]


class Simulation:
    """A seeded market plus `n_agents` agents, strategies assigned round-robin from `strategies`
    (default: momentum, contrarian, cautious, reckless, news, random). `policies` (or `set_policy`)
    hands agents, by index or id, to a Policy (sync `decide`) or an AsyncPolicy (`adecide`, e.g.
    `EndpointPolicy`). Ids are prefixed with `namespace` (default `sim{seed}`) so runs with
    different seeds never collide; `record_messages=False` leaves `messagesJson` NULL (a quarter of
    the bytes)."""

    def __init__(
        self,
        seed: int = 0,
        n_agents: int = 12,
        steps_per_window: int = 20,
        tickers: Sequence[str] = DEFAULT_TICKERS,
        n_prediction_markets: int = 3,
        strategies: Sequence[str] | None = None,
        policies: Mapping[AgentKey, Any] | None = None,
        starting_balance: float = 1000.0,
        regime_weights: dict[str, float] | None = None,
        namespace: str | None = None,
        record_messages: bool = True,
    ) -> None:
        if n_agents < 1:
            raise ValueError("n_agents must be >= 1")
        if not 1 <= steps_per_window <= 3600:
            raise ValueError("steps_per_window must be in [1, 3600]")
        order = tuple(strategies) if strategies else DEFAULT_STRATEGY_ORDER
        for name in order:
            if name not in STRATEGIES:
                raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
        self.seed = int(seed)
        self.namespace = namespace or f"sim{self.seed}"
        self.steps_per_window = int(steps_per_window)
        self.starting_balance = float(starting_balance)
        self.record_messages = record_messages
        self.market = Market(
            self.seed,
            tuple(tickers),
            self.steps_per_window,
            n_prediction_markets,
            regime_weights,
            self.namespace,
        )
        self.agents: list[AgentSpec] = []
        for i in range(n_agents):
            name = order[i % len(order)]
            strategy = make_strategy(name, self.seed, i)
            spec = AgentSpec(
                index=i,
                agent_id=f"{self.namespace}-agent-{i:05d}",
                username=f"{self.namespace}_{name}_{i:05d}",
                display_name=f"{name.title()} Trader {i + 1}",
                strategy=name,
                policy=strategy,
                persona=strategy.persona,
                model=strategy.model,
            )
            spec.refresh(self.seed)
            self.agents.append(spec)
        for key, policy in (policies or {}).items():
            self.set_policy(key, policy)

    # -- agents -----------------------------------------------------------------------------

    def agent(self, key: AgentKey) -> AgentSpec:
        """An agent by index or agent id."""
        if isinstance(key, int):
            if not 0 <= key < len(self.agents):
                raise KeyError(f"no agent with index {key}")
            return self.agents[key]
        for a in self.agents:
            if a.agent_id == key:
                return a
        raise KeyError(f"no agent with id {key!r}")

    def set_policy(self, key: AgentKey, policy: Any | None) -> None:
        """Let `policy` (Policy or AsyncPolicy) decide for an agent; None restores its scripted strategy."""
        a = self.agent(key)
        if policy is None:
            policy = make_strategy(a.strategy, self.seed, a.index)
        if not (callable(getattr(policy, "decide", None)) or callable(getattr(policy, "adecide", None))):
            raise TypeError(
                "a policy needs decide(obs, rng) or async adecide(obs, rng, system_prompt, user_prompt)"
            )
        a.policy = policy
        # A persona key (see PERSONAS) or a free-text persona; the agent's own strategy otherwise.
        a.persona = getattr(policy, "persona", None) or a.strategy
        a.model = getattr(policy, "model", None) or f"sim/{getattr(policy, 'name', a.strategy)}"
        a.temperature = float(getattr(policy, "temperature", 0.7)) if hasattr(policy, "adecide") else 0.7
        a.max_tokens = int(getattr(policy, "max_tokens", 256))
        a.refresh(self.seed)

    def user_rows(self, created_at: datetime | None = None) -> list[Row]:
        """`"User"` rows for every agent (insert before their trajectories)."""
        created = created_at or datetime(2025, 1, 1)
        return [user_row(a, created) for a in self.agents]

    # -- windows ----------------------------------------------------------------------------

    def begin_window(self, window_start: datetime) -> WindowContext:
        """Advance the market by one hour; the returned context is what every agent sees."""
        wm = self.market.advance(window_start)
        return window_context(wm, self.namespace, self.seed, len(self.agents))

    def _agents(self, agents: Iterable[AgentKey] | None) -> list[AgentSpec]:
        return self.agents if agents is None else [self.agent(k) for k in agents]

    def run_agent(self, a: AgentSpec, ctx: WindowContext) -> tuple[Row, list[Row], EpisodeStats]:
        """One agent through one window with a synchronous policy."""
        policy = a.policy
        ep = Episode(a, ctx, self.starting_balance, self.record_messages)
        if isinstance(policy, ScriptedStrategy):
            # Fast path: the strategy's one uniform per step is pre-drawn for the whole window.
            decide_u = policy.decide_u
            u = ep.uniforms
            ep.run(lambda obs, s: decide_u(obs, u[s]))
            return episode_rows(ep)
        decide = getattr(policy, "decide", None)
        if decide is None:
            raise TypeError(f"agent {a.agent_id} has an async policy; use simulate_window_async")
        rng = ep.rng
        ep.run(lambda obs, s: decide(obs, rng))
        return episode_rows(ep)

    async def run_agent_async(self, a: AgentSpec, ctx: WindowContext) -> tuple[Row, list[Row], EpisodeStats]:
        adecide = getattr(a.policy, "adecide", None)
        if adecide is None:
            return self.run_agent(a, ctx)
        ep = Episode(a, ctx, self.starting_balance, self.record_messages)
        rng = ep.rng
        system = a.system_prompt
        loop = ep.loop()
        try:
            obs = next(loop)
            while True:
                obs = loop.send(await adecide(obs, rng, system, ep.prompt))
        except StopIteration:
            pass
        return episode_rows(ep)

    def _sync_agents(self, agents: Iterable[AgentKey] | None) -> list[AgentSpec]:
        chosen = self._agents(agents)
        for a in chosen:  # checked before the market moves, so a refusal leaves no gap
            if not callable(getattr(a.policy, "decide", None)):
                raise TypeError(f"agent {a.agent_id} has an async policy; use simulate_window_async")
        return chosen

    def iter_window(
        self, window_start: datetime, agents: Iterable[AgentKey] | None = None
    ) -> tuple[list[Row], Iterator[tuple[Row, list[Row], EpisodeStats]]]:
        """Streaming form: (market outcome rows, lazy per-agent rows). The market advances now."""
        chosen = self._sync_agents(agents)
        ctx = self.begin_window(window_start)
        return market_outcome_rows(ctx.wm, self.namespace), (self.run_agent(a, ctx) for a in chosen)

    def simulate_window(
        self, window_start: datetime, agents: Iterable[AgentKey] | None = None
    ) -> WindowResult:
        """Simulate one hour for every agent (or the given subset) with synchronous policies."""
        chosen = self._sync_agents(agents)
        ctx = self.begin_window(window_start)
        return self._collect(ctx, [self.run_agent(a, ctx) for a in chosen])

    async def simulate_window_async(
        self, window_start: datetime, agents: Iterable[AgentKey] | None = None, concurrency: int = 16
    ) -> WindowResult:
        """Like `simulate_window`, with async policies (LLM endpoints) run concurrently."""
        ctx = self.begin_window(window_start)
        chosen = self._agents(agents)
        sem = asyncio.Semaphore(max(1, concurrency))

        async def one(a: AgentSpec) -> tuple[Row, list[Row], EpisodeStats]:
            if getattr(a.policy, "adecide", None) is None:
                return self.run_agent(a, ctx)
            async with sem:
                return await self.run_agent_async(a, ctx)

        return self._collect(ctx, list(await asyncio.gather(*(one(a) for a in chosen))))

    def _collect(
        self, ctx: WindowContext, results: list[tuple[Row, list[Row], EpisodeStats]]
    ) -> WindowResult:
        calls: list[Row] = []
        for _, c, _ in results:
            calls.extend(c)
        return WindowResult(
            ctx.wm.window_id,
            ctx.wm.window_start,
            ctx.wm,
            [r for r, _, _ in results],
            calls,
            market_outcome_rows(ctx.wm, self.namespace),
            [st for _, _, st in results],
        )
