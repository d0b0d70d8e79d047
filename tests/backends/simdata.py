"""Trajectory groups from the market simulator, shaped as the engine builds them."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from babylon_console.core.sim.simulation import Simulation, WindowResult

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


def window_messages(result: WindowResult) -> dict[str, list[dict[str, str]]]:
    """trajectory id -> [system, user, assistant, user, assistant, ...] from the llm_call_logs rows."""
    calls: dict[str, list[Any]] = defaultdict(list)
    for row in result.llm_calls:
        calls[row[1]].append(row)
    out: dict[str, list[dict[str, str]]] = {}
    for tid, rows in calls.items():
        msgs = [{"role": "system", "content": rows[0][9]}]
        for r in rows:
            msgs.append({"role": "user", "content": r[10]})
            msgs.append({"role": "assistant", "content": r[12]})
        out[tid] = msgs
    return out


def minmax_rewards(pnls: list[float]) -> list[float]:
    """Final P&L scaled to [0, 1] within the window (all 0.5 when everyone made the same)."""
    x = np.asarray(pnls, dtype=np.float64)
    span = float(x.max() - x.min()) if len(x) else 0.0
    return [0.5] * len(x) if span <= 0 else list((x - x.min()) / span)


def window_group(result: WindowResult, reward: str = "rank") -> Any:
    """One `art.TrajectoryGroup` for a simulated window, rewarded by P&L rank (or min-max P&L)."""
    import art

    msgs = window_messages(result)
    pnls = [s.final_pnl for s in result.stats]
    rewards = rank_rewards(pnls) if reward == "rank" else minmax_rewards(pnls)
    trajs = [
        art.Trajectory(
            messages_and_choices=msgs[s.trajectory_id],
            reward=r,
            metadata={"window_id": result.window_id, "agent_id": s.agent_id, "trajectory_id": s.trajectory_id},
        )
        for s, r in zip(result.stats, rewards, strict=True)
    ]
    return art.TrajectoryGroup(trajs, metadata={"scenario_id": result.window_id})


def simulate(sim: Simulation, n_windows: int, first_hour: int = 0) -> list[WindowResult]:
    return [sim.simulate_window(START + timedelta(hours=first_hour + h)) for h in range(n_windows)]
