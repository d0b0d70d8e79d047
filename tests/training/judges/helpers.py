"""Test data for the judges: simulated windows and hand-built trajectories with known facts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from babylon_console.core.game.parsing import parse_rows
from babylon_console.core.game.rows import MarketOutcome, Trajectory, WindowGroundTruth
from babylon_console.core.game.schema import MARKET_OUTCOME_COLUMNS, TRAJECTORY_COLUMNS
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.training.groups import build_window_group
from babylon_console.core.training.judges import JudgeInput

WINDOW = "2026-01-01T11:00"
_ids = itertools.count(1)


def simulated_window(seed: int = 3, n_agents: int = 8, hour: int = 11, steps: int = 12) -> JudgeInput:
    """A real simulated window, as the engine hands it to a judge (`WindowGroup.judge_input`): every
    agent in the group, no dropout. Tokenization, which only drops trajectories without a trainable
    call, is left out."""
    sim = Simulation(seed=seed, n_agents=n_agents, steps_per_window=steps)
    result = sim.simulate_window(datetime(2026, 1, 1, hour))
    trajectories, rejected = parse_rows([dict(zip(TRAJECTORY_COLUMNS, r, strict=True)) for r in result.trajectories])
    assert not rejected
    outcomes = [
        MarketOutcome.model_validate(dict(zip(MARKET_OUTCOME_COLUMNS, r, strict=True))) for r in result.market_outcomes
    ]
    gt = WindowGroundTruth(
        window_id=result.window_id,
        stocks=[o for o in outcomes if o.is_stock],
        predictions=[o for o in outcomes if not o.is_stock],
    )
    group = build_window_group(result.window_id, trajectories, max_per_group=len(trajectories), dropout=0.0, seed=0)
    assert len(group.trajectories) == len(trajectories)
    return group.judge_input(gt)


def ground_truth(window_id: str = WINDOW, *, stocks: bool = True, predictions: bool = True) -> WindowGroundTruth:
    rows: list[MarketOutcome] = []
    if stocks:
        rows += [
            stock("NOVA", 100.0, 104.6, ["Nova Dynamics wins a major government contract"], window_id),
            stock("HELX", 26.34, 25.12, [], window_id),
        ]
    preds = (
        [
            prediction("pm-1", "Will NOVA close above $103 this hour?", "YES", "0.9700", window_id),
            prediction("pm-2", "Will Helix Bio be added to the B50 index?", "NO", "0.0300", window_id),
        ]
        if predictions
        else []
    )
    return WindowGroundTruth(window_id=window_id, stocks=rows, predictions=preds)


def stock(ticker: str, start: float, end: float, news: list[str], window_id: str = WINDOW) -> MarketOutcome:
    chg = (end - start) / start * 100
    return MarketOutcome(
        id=f"mo-{ticker}", window_id=window_id, stock_ticker=ticker, start_price=Decimal(f"{start:.2f}"),
        end_price=Decimal(f"{end:.2f}"), change_percent=Decimal(f"{chg:.2f}"),
        sentiment="bullish" if chg > 0.5 else ("bearish" if chg < -0.5 else "neutral"), news_events=news,
    )


def prediction(market_id: str, question: str, outcome: str, prob: str, window_id: str = WINDOW) -> MarketOutcome:
    return MarketOutcome(
        id=f"mo-{market_id}", window_id=window_id, prediction_market_id=market_id, question=question,
        outcome=outcome, final_probability=Decimal(prob), volume=Decimal("1000.00"),
    )


def act(kind: str, success: bool = True, error: str | None = None, **params: Any) -> dict[str, Any]:
    return {"actionType": kind, "parameters": params, "success": success, "result": None, "error": error}


def trajectory(actions: list[dict[str, Any] | None], pnls: list[float], final_pnl: float | None,
               *, start: float = 1000.0, window_id: str = WINDOW, tid: str | None = None,
               metadata: dict[str, Any] | None = None) -> Trajectory:
    """A hand-built trajectory: one step per action, `pnls[i]` the P&L seen before step i."""
    n = next(_ids)
    begin = datetime(2026, 1, 1, 11, 5, tzinfo=UTC)
    steps = []
    for i, action in enumerate(actions):
        steps.append({
            "stepNumber": i,
            "timestamp": 1_767_265_500_000 + i * 1000,
            "environmentState": {"agentBalance": start + pnls[i], "agentPnL": pnls[i], "openPositions": 0},
            "llmCalls": [{"purpose": "action", "systemPrompt": "You trade.", "userPrompt": f"tick {i}",
                          "response": "{}"}],
            "action": action,
            "reward": 0.0,
        })
    return Trajectory.model_validate({
        "id": tid or f"t-{n}", "trajectoryId": tid or f"t-{n}", "agentId": f"agent-{n}", "windowId": window_id,
        "startTime": begin, "endTime": begin + timedelta(minutes=50), "steps": steps,
        "metadata": metadata if metadata is not None else {"startingBalance": start},
        "totalReward": 0.0, "episodeLength": len(steps),
        "finalBalance": None if final_pnl is None else start + final_pnl, "finalPnL": final_pnl,
    })


def item_of(trajectories: list[Trajectory], gt: WindowGroundTruth | None = None) -> JudgeInput:
    gt = gt if gt is not None else ground_truth()
    return JudgeInput(
        window_id=gt.window_id, ground_truth=gt, trajectories=trajectories,
        messages=[[{"role": "system", "content": "You trade."}, {"role": "user", "content": t.trajectory_id},
                   {"role": "assistant", "content": '{"action": {"actionType": "HOLD"}}'}] for t in trajectories],
    )
