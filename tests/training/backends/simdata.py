"""Trajectory groups from the market simulator, shaped as the engine builds them."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from babylon_console.core.game.rows import RecordedCall
from babylon_console.core.sim.simulation import Simulation, WindowResult
from babylon_console.core.training.groups import art_trajectory
from babylon_console.core.training.tokenization import encode_calls

START = datetime(2025, 3, 1)


def rank_rewards(pnls: list[float]) -> list[float]:
    """Each agent's final P&L rank within its window, scaled to [0, 1] (ties share the mean rank)."""
    x = np.asarray(pnls, dtype=np.float64)
    n = len(x)
    if n < 2:
        return [0.5] * n
    order = np.argsort(x, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    for v in np.unique(x):  # average ties
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return list(ranks / (n - 1))


def window_calls(result: WindowResult) -> dict[str, list[RecordedCall]]:
    """trajectory id -> its recorded calls, from the llm_call_logs rows."""
    calls: dict[str, list[RecordedCall]] = defaultdict(list)
    for row in result.llm_calls:  # columns: see schema.LLM_CALL_COLUMNS
        step = int(row[2].rsplit("-", 1)[-1])
        calls[row[1]].append(RecordedCall(step, row[9], row[10], row[12], row[7], row[8]))
    return calls


def test_tokenizer() -> Any:
    """The tokenizer the suite trains for itself (tests/conftest.py), loaded as production does."""
    from babylon_console.core.training.tokenization import load_tokenizer

    return load_tokenizer(str(TOKENIZER_DIR[0]))


TOKENIZER_DIR: list[Any] = []  # set by the backends conftest from the session tokenizer fixture


def minmax_rewards(pnls: list[float]) -> list[float]:
    """Final P&L scaled to [0, 1] within the window (all 0.5 when everyone made the same)."""
    x = np.asarray(pnls, dtype=np.float64)
    span = float(x.max() - x.min()) if len(x) else 0.0
    return [0.5] * len(x) if span <= 0 else list((x - x.min()) / span)


def window_group(result: WindowResult, reward: str = "rank") -> Any:
    """One `art.TrajectoryGroup` for a simulated window, rewarded by P&L rank (or min-max P&L), built
    as the engine builds it: every recorded call a tokenized, trainable `Choice`."""
    import art

    calls = window_calls(result)
    tokenizer = test_tokenizer()
    pnls = [s.final_pnl for s in result.stats]
    rewards = rank_rewards(pnls) if reward == "rank" else minmax_rewards(pnls)
    trajs = []
    for s, r in zip(result.stats, rewards, strict=True):
        mine = calls[s.trajectory_id]
        tokens = encode_calls(tokenizer, mine).tokens
        trajs.append(art_trajectory(
            mine, tokens, r, {}, {"window_id": result.window_id, "agent_id": s.agent_id,
                                  "trajectory_id": s.trajectory_id}))
    return art.TrajectoryGroup(trajs, metadata={"scenario_id": result.window_id})


def simulate(sim: Simulation, n_windows: int, first_hour: int = 0) -> list[WindowResult]:
    return [sim.simulate_window(START + timedelta(hours=first_hour + h)) for h in range(n_windows)]
