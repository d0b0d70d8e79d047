"""What every episode reads, prepared once: the agent (`AgentSpec`) and the window (`WindowContext`).

An agent carries the pre-escaped JSON fragments of its prompt and call rows (rebuilt by `refresh`
when its policy changes). Everything that is the same for all agents in a window is computed once
in `WindowContext`: the market's pre-serialized fragments, and the timing and decision randomness
drawn for all agents at once. Rows are tuples in the column orders of `babylon_console.core.game.schema`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from .market import WindowMarket
from .observation import Observation, TickFragments, build_system_prompt, tick_fragments

PROVIDER_NAME = "BABYLON_MARKETS"
ONE_MS = timedelta(milliseconds=1)

Row = tuple[Any, ...]


def json_text(obj: Any) -> str:
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
        system_json = json_text(self.system_prompt)
        self.messages_head = '[{"role":"system","content":' + system_json + '},{"role":"user","content":'
        self.call_prefix = (
            '{"model":' + json_text(self.model) + ',"systemPrompt":' + system_json + ',"userPrompt":'
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
        self.call_meta_json = json_text(self.call_meta)
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
    clocks = [(wm.window_start + s * dt_ms * ONE_MS).strftime("%H:%M") for s in range(n)]
    frags = [tick_fragments(s, n, clocks[s], wm.stocks[s], wm.markets[s]) for s in range(n)]
    provider_json = [
        json_text(
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
