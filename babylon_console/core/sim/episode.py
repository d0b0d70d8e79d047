"""One agent through one window: observe, decide, act, and record each step as the game writes it.

`Episode` moves a fresh portfolio through the window's ticks and writes each step's JSON and its
llm_call_logs rows as it goes (`game_rows.episode_rows` closes it into its trajectory row). This
is the generation hot path (millions of steps per benchmark), hence pre-drawn randomness,
pre-escaped JSON fragments and no validation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime

import numpy as np

from .episode_context import ONE_MS, AgentSpec, Row, WindowContext, json_text
from .observation import Observation, render_parts
from .policy import Decision
from .portfolio import REWARD_CLIP, REWARD_SCALE, Portfolio, cents

_TYPE_JSON = {t: f'"{t}"' for t in ("HOLD", "OPEN_LONG", "OPEN_SHORT", "CLOSE_POSITION", "BUY_SHARES")}


class Episode:
    """One agent through one window. `loop()` is a generator: it yields each step's Observation
    (the rendered prompt is in `prompt`) and receives the Decision for it; once it ends,
    `game_rows.episode_rows` gives the rows.

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
                    hit = flat_cache[(s, pf.cash)] = (obs, user, json_text(user), bal_s, pnl_s)
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
                    result_json = "null" if result is None else json_text(result)
                    err_json = "null" if err is None else json_text(err)
                    params_json = d.params_json or json_text(act.parameters())
            else:
                pf.errors += 1
                ok = False
                at = d.attempted_type or "HOLD"
                result_json = "null"
                err_json = json_text(d.error)
                params_json = json_text(d.attempted_parameters or {})
            at_json = _TYPE_JSON.get(at) or json_text(at)
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
                reasoning_json = d.reasoning_json = json_text(d.reasoning)
            response_json = d.response_json
            if response_json is None:
                response_json = d.response_json = json_text(d.response)
            if user_json is None:
                user_json = json_text(user)
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
            thought_json = json_text(d.thought)
            lat = ctx.latencies[i][2 * s + 1]
            end = ts + lat * ONE_MS
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
            user_json = json_text(user)
            k = 1
        latency = sim_lat = ctx.latencies[i][2 * s]
        if d.latency_ms is not None:
            latency = d.latency_ms  # the real latency is recorded; the simulated clock stays inside the tick
            sim_lat = min(max(1, latency), cap)
        return out + self._call(
            self.tid + suffix[k],
            step_id,
            ts,
            ts + sim_lat * ONE_MS,
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
                '{"model":' + json_text(model) + agent.call_prefix[agent.call_prefix.index(',"systemPrompt"') :]
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
                else json_text({**agent.call_meta, "logprob": d.logprob}),
                end,
            )
        )
        return (
            f'{prefix}{user_json},"response":{response_json},"reasoning":{reasoning_json}'
            f'{agent.call_mid}{latency},"purpose":"{purpose}","actionType":{at_json}}}'
        )
