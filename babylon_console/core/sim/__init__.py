"""Headless market simulator: a seeded market, a population of agents, and the game's rows.

    sim = Simulation(seed=7, n_agents=12)
    result = sim.simulate_window(datetime(2026, 11, 23, 14))
    result.trajectories, result.llm_calls, result.market_outcomes   # tuples in schema column order
    sim.user_rows()                                                  # "User" rows for the agents

The endpoint agent (`EndpointPolicy`) imports `openai` lazily; nothing here imports textual,
asyncpg or a database driver.
"""

from .actions import (
    ACTION_TYPES,
    FEATURE_DIM,
    FEATURE_NAMES,
    HOLD,
    Action,
    ParseResult,
    action_features,
    candidate_actions,
    candidate_features,
    format_response,
    parse_response,
)
from .endpoint import EndpointPolicy
from .episode_context import AgentSpec
from .game_rows import EpisodeStats, market_outcome_rows, user_row
from .market import (
    DEFAULT_TICKERS,
    Market,
    PredictionQuote,
    StockQuote,
    WindowMarket,
    window_id,
    window_start_of,
)
from .observation import HoldingView, Observation, PositionView, build_system_prompt, render_user_prompt
from .policy import AsyncPolicy, CheckpointError, Decision, LinearSoftmaxPolicy, Policy
from .portfolio import Portfolio
from .simulation import Simulation, WindowResult
from .strategies import DEFAULT_STRATEGY_ORDER, STRATEGIES, ScriptedStrategy, make_strategy

__all__ = [
    "ACTION_TYPES",
    "DEFAULT_STRATEGY_ORDER",
    "DEFAULT_TICKERS",
    "FEATURE_DIM",
    "FEATURE_NAMES",
    "HOLD",
    "STRATEGIES",
    "Action",
    "AgentSpec",
    "AsyncPolicy",
    "CheckpointError",
    "Decision",
    "EndpointPolicy",
    "EpisodeStats",
    "HoldingView",
    "LinearSoftmaxPolicy",
    "Market",
    "Observation",
    "ParseResult",
    "Policy",
    "Portfolio",
    "PositionView",
    "PredictionQuote",
    "ScriptedStrategy",
    "Simulation",
    "StockQuote",
    "WindowMarket",
    "WindowResult",
    "action_features",
    "build_system_prompt",
    "candidate_actions",
    "candidate_features",
    "format_response",
    "make_strategy",
    "market_outcome_rows",
    "parse_response",
    "render_user_prompt",
    "user_row",
    "window_id",
    "window_start_of",
]
