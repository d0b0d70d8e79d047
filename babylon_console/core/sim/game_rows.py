"""A finished episode's trajectory row, and the window's other tables: market_outcomes and "User".

`episode_rows` closes an `Episode` into its trajectory row, hands over the llm_call_logs rows it
recorded and adds a summary for analysis (`EpisodeStats`). `market_outcome_rows` is what the window
really did (the ground truth the outcome judge reads); `user_row` is an agent's "User" row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from .episode import Episode
from .episode_context import ONE_MS, AgentSpec, Row, json_text
from .market import WindowMarket

SIMULATOR_VERSION = 1


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


def episode_rows(ep: Episode) -> tuple[Row, list[Row], EpisodeStats]:
    """The trajectory row, its llm_call_logs rows, and a summary."""
    ctx = ep.ctx
    agent = ep.agent
    pf = ep.pf
    first = ep.calls[0][4]
    end = ep.calls[-1][21]
    final_balance = round(ep.value, 2)
    final_pnl = round(ep.value - ep.start_balance, 2)
    n = len(ep.steps)
    total_reward = round(ep.total_reward, 6)
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
        "pnlPercent": round(final_pnl / ep.start_balance * 100.0, 4),
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
        "startingBalance": ep.start_balance,
        "finalCash": round(pf.cash, 2),
        "maxDrawdown": round(pf.max_drawdown, 6),
        "balanceIsMarkedToMarket": True,
        "policyParams": agent.policy_params,
    }
    row = (
        ep.tid,
        ep.tid,
        agent.agent_id,
        first,
        end,
        (end - first) // ONE_MS,
        ctx.wm.window_id,
        1,
        f"{ctx.namespace}-ep-{ctx.hour_tag}-{agent.index:05d}",
        ctx.wm.window_id,
        ctx.batch_id,
        "[" + ",".join(ep.steps) + "]",
        json_text(components),
        json_text(metrics),
        json_text(metadata),
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
        ep.tid,
        total_reward,
        final_balance,
        final_pnl,
        pf.max_drawdown,
        pf.trades,
        pf.errors,
        n,
    )
    return row, ep.calls, stats


# -- the window's other tables ---------------------------------------------------------------

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
                json_text(news),
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
