"""Turn a simulated window into the game's rows: trajectories, llm_call_logs, market_outcomes, User.

`Episode` runs one agent through one window (portfolio, observations, step JSON) and produces
tuples in the column orders of `babylon_console.core.schema`. Everything that is the same for all
agents in a window is computed once in `WindowContext`. This is the generation hot path (millions
of steps per benchmark), hence pre-drawn randomness, pre-escaped JSON fragments and no validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from .market import WindowMarket
from .observation import Observation, TickFragments, build_system_prompt, render_parts, tick_fragments
from .policy import Decision
from .portfolio import REWARD_CLIP, REWARD_SCALE, Portfolio, cents

SIMULATOR_VERSION = 1
PROVIDER_NAME = "BABYLON_MARKETS"
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)

Row = tuple[Any, ...]


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@dataclass(slots=True)
class AgentSpec:
    """One simulated agent: identity, prompt and whatever decides for it."""

    index: int
    agent_id: str
    username: str
    display_name: str
    strategy: str  # scripted strategy assigned by the population (kept when a policy is swapped in)
    policy: Any  # Policy or AsyncPolicy
    persona: str
    model: str
    system_prompt: str = ""
    temperature: float = 0.7
    max_tokens: int = 256
    messages_head: str = ""  # '[{"role":"system","content":...},{"role":"user","content":'
    call_prefix: str = ""  # '{"model":...,"systemPrompt":...,"userPrompt":' of the step's llmCalls entries
    call_mid: str = ""  # ',"temperature":...,"maxTokens":...,"latencyMs":'
    call_meta: dict[str, Any] = field(default_factory=dict)
    call_meta_json: str = "{}"
    policy_params: dict[str, Any] | None = None  # a scripted strategy's per-agent parameters

    def refresh(self, seed: int) -> None:
        """Recompute the derived prompt/metadata after the policy changes."""
        self.system_prompt = build_system_prompt(self.display_name, self.persona)
        system_json = _dumps(self.system_prompt)
        self.messages_head = '[{"role":"system","content":' + system_json + '},{"role":"user","content":'
        self.call_prefix = (
            '{"model":' + _dumps(self.model) + ',"systemPrompt":' + system_json + ',"userPrompt":'
        )
        self.call_mid = (
            f',"temperature":{float(self.temperature)!r},"maxTokens":{int(self.max_tokens)},"latencyMs":'
        )
        self.call_meta = {
            "simulated": True,
            "seed": seed,
            "strategy": self.strategy,
            "policy": getattr(self.policy, "name", self.strategy),
        }
        self.call_meta_json = _dumps(self.call_meta)
        params = getattr(self.policy, "params", None)
        self.policy_params = params() if callable(params) else None


@dataclass(slots=True)
class WindowContext:
    """Agent-independent, per-window data shared by every episode (computed once per window)."""

    wm: WindowMarket
    namespace: str
    seed: int
    hour_tag: str  # "2026112314", used in ids
    batch_id: str
    start_ms: int
    dt_ms: int
    clocks: list[str]
    frags: list[TickFragments]
    provider_json: list[str]  # the step's providerAccesses array, pre-serialized
    active: list[int]
    offsets: list[list[int]]  # [agent][step]: ms from the window start at which the step happens
    # [agent][2 * step + k]: simulated latency of a step's action call (k=0) / reasoning call (k=1)
    latencies: list[list[int]]
    call_ts: list[list[datetime]]  # [agent][step]: start + offset, as naive datetimes
    call_end: list[list[datetime]]  # [agent][step]: call_ts + action-call latency
    uniforms: list[list[float]]  # [agent][step]: the one uniform a scripted strategy uses per step
    agent_seeds: list[int]  # [agent]: seed of the agent's decision generator for this window
    step_suffix: list[str]  # "-step-{s}"
    call_suffix: list[tuple[str, str]]  # ("-s{s}-c0", "-s{s}-c1")
    # (step, cash) -> (observation, prompt, escaped prompt) for agents holding nothing: their view
    # depends on nothing else, and many agents are flat at any step.
    flat_cache: dict[tuple[int, float], tuple[Observation, str, str, str, str]] = field(default_factory=dict)


def window_context(wm: WindowMarket, namespace: str, seed: int, n_agents: int) -> WindowContext:
    start_ms = int(wm.window_start.replace(tzinfo=UTC).timestamp() * 1000)
    n = wm.ticks
    dt_ms = 3_600_000 // n
    clocks = [(wm.window_start + s * dt_ms * _MS).strftime("%H:%M") for s in range(n)]
    frags = [tick_fragments(s, n, clocks[s], wm.stocks[s], wm.markets[s]) for s in range(n)]
    provider_json = [
        _dumps(
            [
                {
                    "providerName": PROVIDER_NAME,
                    "data": {
                        "prices": {q.ticker: q.price for q in wm.stocks[s]},
                        "predictions": {m.market_id: m.yes_price for m in wm.markets[s]},
                    },
                    "purpose": "market_scan",
                }
            ]
        )
        for s in range(n)
    ]
    active = [len(wm.stocks[s]) + len(wm.markets[s]) for s in range(n)]
    tag = wm.window_start.strftime("%Y%m%d%H")
    # Timing noise for all agents at once; each agent reads its own row, so a subset of agents
    # gets the same values as a full run. Steps land at a jittered time inside their tick and their
    # calls fit in the rest of it, so every timestamp stays inside the hour.
    rng = np.random.default_rng([seed, 3, wm.hour])
    jitter = rng.integers(0, max(1, int(dt_ms * 0.4)), size=(n_agents, n))
    offsets_np = np.arange(n, dtype=np.int64) * dt_ms + jitter
    offsets = offsets_np.tolist()
    lat = rng.lognormal(math.log(850.0), 0.35, size=(n_agents, 2 * n))
    lat_i = np.clip(lat, 1, max(1, int(dt_ms * 0.25))).astype(np.int64)
    latencies = lat_i.tolist()
    start64 = np.datetime64(wm.window_start, "ms")
    off64 = offsets_np.astype("timedelta64[ms]")
    call_ts = (start64 + off64).tolist()
    call_end = (start64 + off64 + lat_i[:, 0::2].astype("timedelta64[ms]")).tolist()
    uniforms = rng.random((n_agents, n)).tolist()
    agent_seeds = np.random.SeedSequence([seed, 2, wm.hour]).generate_state(n_agents, np.uint64).tolist()
    return WindowContext(
        wm,
        namespace,
        seed,
        tag,
        f"{namespace}-batch-{tag}",
        start_ms,
        dt_ms,
        clocks,
        frags,
        provider_json,
        active,
        offsets,
        latencies,
        call_ts,
        call_end,
        uniforms,
        agent_seeds,
        [f"-step-{s}" for s in range(n)],
        [(f"-s{s}-c0", f"-s{s}-c1") for s in range(n)],
    )


@dataclass(slots=True)
class EpisodeStats:
    """Summary of one agent's window, for analysis without parsing JSON."""

    agent_id: str
    agent_index: int
    strategy: str
    policy: str
    trajectory_id: str
    total_reward: float
    final_balance: float
    final_pnl: float
    max_drawdown: float
    trades: int
    errors: int
    steps: int


_TYPE_JSON = {t: f'"{t}"' for t in ("HOLD", "OPEN_LONG", "OPEN_SHORT", "CLOSE_POSITION", "BUY_SHARES")}


class Episode:
    """One agent through one window. `loop()` is a generator: it yields each step's Observation
    (the rendered prompt is in `prompt`) and receives the Decision for it; `finish()` gives the rows.

    The loop is the generation hot path, so it keeps state in locals and assembles the step JSON
    from pre-escaped fragments (the user prompt is escaped once, for both the step and the call
    row's messagesJson). The output is the JSON orjson would write for the equivalent dicts.
    """

    __slots__ = (
        "_rng",
        "agent",
        "calls",
        "ctx",
        "pf",
        "prompt",
        "record_messages",
        "start_balance",
        "steps",
        "tid",
        "total_reward",
        "value",
    )

    def __init__(
        self,
        agent: AgentSpec,
        ctx: WindowContext,
        starting_balance: float = 1000.0,
        record_messages: bool = True,
    ) -> None:
        self.agent = agent
        self.ctx = ctx
        self.pf = Portfolio(starting_balance)
        self.start_balance = starting_balance
        self.value = starting_balance  # marked-to-market portfolio value (final once the loop ends)
        self.steps: list[str] = []  # each step's JSON text
        self.calls: list[Row] = []
        self.tid = f"{ctx.namespace}-{ctx.hour_tag}-{agent.index:05d}"
        self.total_reward = 0.0
        self.record_messages = record_messages
        self._rng: np.random.Generator | None = None
        self.prompt = ""  # user prompt of the step being decided

    @property
    def rng(self) -> np.random.Generator:
        """The agent's decision generator for this window (created on first use: it costs ~10 us)."""
        if self._rng is None:
            self._rng = np.random.default_rng(self.ctx.agent_seeds[self.agent.index])
        return self._rng

    @property
    def uniforms(self) -> list[float]:
        """One pre-drawn uniform per step, for scripted strategies."""
        return self.ctx.uniforms[self.agent.index]

    def run(self, decide: Callable[[Observation, int], Decision]) -> None:
        """Drive the loop with a synchronous `decide(obs, step)`."""
        loop = self.loop()
        try:
            obs = next(loop)
            while True:
                obs = loop.send(decide(obs, obs.step))
        except StopIteration:
            pass

    def loop(self) -> Generator[Observation, Decision, None]:
        """Yield each step's Observation (prompt in `self.prompt`); receive its Decision."""
        ctx = self.ctx
        wm = ctx.wm
        pf = self.pf
        agent = self.agent
        i = agent.index
        tid = self.tid
        start = self.start_balance
        calls = self.calls
        steps = self.steps
        offsets = ctx.offsets[i]
        latencies = ctx.latencies[i]
        call_ts = ctx.call_ts[i]
        call_end = ctx.call_end[i]
        flat_cache = ctx.flat_cache
        price_maps = wm.price_maps
        yes_maps = wm.yes_maps
        resolutions = wm.resolutions
        positions = pf.positions
        holdings = pf.holdings
        system = agent.system_prompt
        model = agent.model
        prefix = agent.call_prefix
        call_mid = agent.call_mid
        messages_head = agent.messages_head if self.record_messages else None
        temperature = agent.temperature
        max_tokens = agent.max_tokens
        call_meta_json = agent.call_meta_json
        sys_tokens = len(system)
        cap = max(1, int(ctx.dt_ms * 0.25))
        start_ms = ctx.start_ms
        value = start
        total = 0.0
        for s in range(wm.ticks):
            # -- observe ----------------------------------------------------------------------
            if not positions and not holdings:
                # A flat agent's view depends only on (step, cash): share it across agents.
                hit = flat_cache.get((s, pf.cash))
                if hit is None:
                    obs = Observation(
                        s,
                        wm.ticks,
                        ctx.clocks[s],
                        pf.cash,
                        cents(pf.cash - start) + 0.0,
                        (),
                        (),
                        wm.stocks[s],
                        wm.markets[s],
                    )
                    user, bal_s, pnl_s = render_parts(obs, ctx.frags[s])
                    hit = flat_cache[(s, pf.cash)] = (obs, user, _dumps(user), bal_s, pnl_s)
                obs, user, user_json, bal_s, pnl_s = hit
            else:
                obs = Observation(
                    s,
                    wm.ticks,
                    ctx.clocks[s],
                    pf.cash,
                    cents(value - start) + 0.0,
                    pf.position_views(price_maps[s]) if positions else (),
                    pf.holding_views() if holdings else (),
                    wm.stocks[s],
                    wm.markets[s],
                )
                user, bal_s, pnl_s = render_parts(obs, ctx.frags[s])
                user_json = None
            self.prompt = user
            d: Decision = yield obs

            # -- act, then move to tick s + 1 -------------------------------------------------
            if d.error is None:
                act = d.action
                at = act.action_type
                if at == "HOLD":
                    ok, result_json, err_json, params_json = True, "null", "null", "{}"
                else:
                    ok, result, err = pf.execute(act, price_maps[s], yes_maps[s])
                    result_json = "null" if result is None else _dumps(result)
                    err_json = "null" if err is None else _dumps(err)
                    params_json = d.params_json or _dumps(act.parameters())
            else:
                pf.errors += 1
                ok = False
                at = d.attempted_type or "HOLD"
                result_json = "null"
                err_json = _dumps(d.error)
                params_json = _dumps(d.attempted_parameters or {})
            at_json = _TYPE_JSON.get(at) or _dumps(at)
            res = resolutions.get(s + 1)
            if res:
                pf.settle(res)
            after = pf.value(price_maps[s + 1], yes_maps[s + 1]) if (positions or holdings) else pf.cash
            if after > pf.peak:
                pf.peak = after
            elif pf.peak > 0.0 and (pf.peak - after) / pf.peak > pf.max_drawdown:
                pf.max_drawdown = (pf.peak - after) / pf.peak
            r = (after - value) / start * REWARD_SCALE
            r = REWARD_CLIP if r > REWARD_CLIP else (-REWARD_CLIP if r < -REWARD_CLIP else r)
            reward = int(r * 1e6 + (0.5 if r >= 0.0 else -0.5)) / 1e6  # 6 decimals, written as such below
            value = after
            total += reward

            # -- record -----------------------------------------------------------------------
            step_id = tid + ctx.step_suffix[s]
            reasoning_json = d.reasoning_json
            if reasoning_json is None:
                reasoning_json = d.reasoning_json = _dumps(d.reasoning)
            response_json = d.response_json
            if response_json is None:
                response_json = d.response_json = _dumps(d.response)
            if user_json is None:
                user_json = _dumps(user)
            if (
                d.thought is None
                and d.latency_ms is None
                and d.model is None
                and d.prompt_tokens is None
                and d.logprob is None
            ):
                # Common case, inlined: one action call with simulated timing.
                cid = tid + ctx.call_suffix[s][0]
                latency = latencies[2 * s]
                pt = (sys_tokens + len(user)) >> 2
                ct = (len(d.response) >> 2) + 1
                calls.append(
                    (
                        cid,
                        tid,
                        step_id,
                        cid,
                        call_ts[s],
                        latency,
                        model,
                        "action",
                        at,
                        system,
                        user,
                        None if messages_head is None else messages_head + user_json + "}]",
                        d.response,
                        d.reasoning,
                        temperature,
                        max_tokens,
                        1.0,
                        pt,
                        ct,
                        pt + ct,
                        call_meta_json,
                        call_end[s],
                    )
                )
                calls_json = (
                    f'{prefix}{user_json},"response":{response_json},"reasoning":{reasoning_json}'
                    f'{call_mid}{latency},"purpose":"action","actionType":{at_json}}}'
                )
            else:
                calls_json = self._calls_slow(
                    s, step_id, d, at, at_json, user, user_json, response_json, reasoning_json, cap
                )
            steps.append(
                f'{{"stepNumber":{s},"timestamp":{start_ms + offsets[s]},"environmentState":'
                f'{{"agentBalance":{bal_s},"agentPnL":{pnl_s},'
                f'"openPositions":{len(obs.positions) + len(obs.holdings)},"activeMarkets":{ctx.active[s]}}},'
                f'"providerAccesses":{ctx.provider_json[s]},"llmCalls":[{calls_json}],"action":'
                f'{{"actionType":{at_json},"parameters":{params_json},"success":{"true" if ok else "false"},'
                f'"result":{result_json},"error":{err_json},"reasoning":{reasoning_json}}},"reward":{reward:.6f}}}'
            )
        self.value = value
        self.total_reward = total

    def _calls_slow(
        self,
        s: int,
        step_id: str,
        d: Decision,
        at: str,
        at_json: str,
        user: str,
        user_json: str,
        response_json: str,
        reasoning_json: str,
        cap: int,
    ) -> str:
        """Calls of a step with a reasoning call, a measured latency or per-call overrides."""
        ctx = self.ctx
        i = self.agent.index
        ts = ctx.call_ts[i][s]
        suffix = ctx.call_suffix[s]
        out = ""
        k = 0
        if d.thought is not None:
            thought_json = _dumps(d.thought)
            lat = ctx.latencies[i][2 * s + 1]
            end = ts + lat * _MS
            out = (
                self._call(
                    self.tid + suffix[0],
                    step_id,
                    ts,
                    end,
                    lat,
                    "reasoning",
                    at,
                    at_json,
                    user,
                    user_json,
                    d.thought,
                    thought_json,
                    d.thought,
                    thought_json,
                    d,
                )
                + ","
            )
            ts = end
            user = f"{user}\n\nYour analysis:\n{d.thought}"
            user_json = _dumps(user)
            k = 1
        latency = sim_lat = ctx.latencies[i][2 * s]
        if d.latency_ms is not None:
            latency = d.latency_ms  # the real latency is recorded; the simulated clock stays inside the tick
            sim_lat = min(max(1, latency), cap)
        return out + self._call(
            self.tid + suffix[k],
            step_id,
            ts,
            ts + sim_lat * _MS,
            latency,
            "action",
            at,
            at_json,
            user,
            user_json,
            d.response,
            response_json,
            d.reasoning,
            reasoning_json,
            d,
        )

    def _call(
        self,
        cid: str,
        step_id: str,
        ts: datetime,
        end: datetime,
        latency: int,
        purpose: str,
        at: str,
        at_json: str,
        user: str,
        user_json: str,
        response: str,
        response_json: str,
        reasoning: str,
        reasoning_json: str,
        d: Decision,
    ) -> str:
        """Append one llm_call_logs row; return the call's JSON for the step."""
        agent = self.agent
        system = agent.system_prompt
        if d.model is None or d.model == agent.model:
            model = agent.model
            prefix = agent.call_prefix
        else:
            model = d.model
            prefix = (
                '{"model":' + _dumps(model) + agent.call_prefix[agent.call_prefix.index(',"systemPrompt"') :]
            )
        if d.prompt_tokens is not None and purpose == "action":
            pt = d.prompt_tokens
            ct = d.completion_tokens or 0
        else:
            pt = (len(system) + len(user)) >> 2
            ct = (len(response) >> 2) + 1
        self.calls.append(
            (
                cid,
                self.tid,
                step_id,
                cid,
                ts,
                latency,
                model,
                purpose,
                at,
                system,
                user,
                agent.messages_head + user_json + "}]" if self.record_messages else None,
                response,
                reasoning,
                agent.temperature,
                agent.max_tokens,
                1.0,
                pt,
                ct,
                pt + ct,
                agent.call_meta_json
                if d.logprob is None
                else _dumps({**agent.call_meta, "logprob": d.logprob}),
                end,
            )
        )
        return (
            f'{prefix}{user_json},"response":{response_json},"reasoning":{reasoning_json}'
            f'{agent.call_mid}{latency},"purpose":"{purpose}","actionType":{at_json}}}'
        )

    def finish(self) -> tuple[Row, list[Row], EpisodeStats]:
        """The trajectory row, its llm_call_logs rows, and a summary."""
        ctx = self.ctx
        agent = self.agent
        pf = self.pf
        first = self.calls[0][4]
        end = self.calls[-1][21]
        final_balance = round(self.value, 2)
        final_pnl = round(self.value - self.start_balance, 2)
        n = len(self.steps)
        total_reward = round(self.total_reward, 6)
        policy_name = getattr(agent.policy, "name", agent.strategy)
        metrics = {
            "episodeLength": n,
            "finalStatus": "completed",
            "finalBalance": final_balance,
            "finalPnL": final_pnl,
            "tradesExecuted": pf.trades,
            "postsCreated": 0,
            "errorCount": pf.errors,
        }
        components = {
            "pnl": final_pnl,
            "pnlPercent": round(final_pnl / self.start_balance * 100.0, 4),
            "maxDrawdown": round(pf.max_drawdown, 6),
            "errors": pf.errors,
            "predictionsResolved": pf.predictions_resolved,
            "predictionsWon": pf.predictions_won,
        }
        metadata = {
            "simulated": True,
            "simulatorVersion": SIMULATOR_VERSION,
            "seed": ctx.seed,
            "namespace": ctx.namespace,
            "strategy": agent.strategy,
            "policy": policy_name,
            "model": agent.model,
            "agentIndex": agent.index,
            "startingBalance": self.start_balance,
            "finalCash": round(pf.cash, 2),
            "maxDrawdown": round(pf.max_drawdown, 6),
            "balanceIsMarkedToMarket": True,
            "policyParams": agent.policy_params,
        }
        row = (
            self.tid,
            self.tid,
            agent.agent_id,
            first,
            end,
            (end - first) // _MS,
            ctx.wm.window_id,
            1,
            f"{ctx.namespace}-ep-{ctx.hour_tag}-{agent.index:05d}",
            ctx.wm.window_id,
            ctx.batch_id,
            "[" + ",".join(self.steps) + "]",
            _dumps(components),
            _dumps(metrics),
            _dumps(metadata),
            total_reward,
            n,
            "completed",
            final_balance,
            final_pnl,
            pf.trades,
            0,
            True,
            False,
            False,
            end,
            end,
        )
        stats = EpisodeStats(
            agent.agent_id,
            agent.index,
            agent.strategy,
            policy_name,
            self.tid,
            total_reward,
            final_balance,
            final_pnl,
            pf.max_drawdown,
            pf.trades,
            pf.errors,
            n,
        )
        return row, self.calls, stats


# -- other tables ----------------------------------------------------------------------------

SENTIMENT_THRESHOLD_PCT = 0.5


def sentiment_of(change_pct: float) -> str:
    if change_pct > SENTIMENT_THRESHOLD_PCT:
        return "bullish"
    if change_pct < -SENTIMENT_THRESHOLD_PCT:
        return "bearish"
    return "neutral"


def market_outcome_rows(wm: WindowMarket, namespace: str, created_at: datetime | None = None) -> list[Row]:
    """One stock row per ticker and one prediction row per market resolved in the window."""
    created = created_at if created_at is not None else wm.window_start + timedelta(hours=1)
    tag = wm.window_start.strftime("%Y%m%d%H")
    rows: list[Row] = []
    for i, tk in enumerate(wm.tickers):
        start = wm.prices[0][i]
        end = wm.prices[-1][i]
        chg = max(-999.99, min(999.99, (end - start) / start * 100.0))
        news = [n.headline for n in wm.news if n.ticker == tk]
        rows.append(
            (
                f"{namespace}-mo-{tag}-{tk}",
                wm.window_id,
                tk,
                Decimal(f"{start:.2f}"),
                Decimal(f"{end:.2f}"),
                Decimal(f"{chg:.2f}"),
                sentiment_of(chg),
                _dumps(news),
                None,
                None,
                None,
                None,
                None,
                created,
            )
        )
    for r in wm.resolved:
        rows.append(
            (
                f"{namespace}-mo-{tag}-{r.market_id}",
                wm.window_id,
                None,
                None,
                None,
                None,
                None,
                None,
                r.market_id,
                r.question,
                r.outcome,
                Decimal(f"{min(1.0, max(0.0, r.final_probability)):.4f}"),
                Decimal(f"{r.volume:.2f}"),
                created,
            )
        )
    return rows


def user_row(agent: AgentSpec, created_at: datetime) -> Row:
    return (agent.agent_id, agent.username, agent.display_name, True, created_at, created_at)
