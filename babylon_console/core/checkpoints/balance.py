"""Were the two arms' agents alike before the rollout?

The gateway keeps each agent on one arm for a whole rollout (a hash of agent and rollout id), so the A/B
difference is the models' difference plus whatever already separated the two groups of agents: a standing
gap in skill reads as a model effect, and no sequential test over windows can tell the two apart. Before
the rollout started both groups were served alike (the live model, or the base model, or an earlier
rollout's arms, which were drawn by another hash and so fall on both groups alike), so the same comparison
over the windows before it (the share of agent pairs the candidate's agents out-earned, minus 1/2, as the
gate reads it) measures that gap on its own: an interval that excludes zero there says the readout mixes
the agents with the models. It is one fixed look at data that no longer changes once the rollout has started, so the
plain 95% t interval is the right one."""

from __future__ import annotations

import math
import statistics
from datetime import datetime

import asyncpg
from pydantic import BaseModel, computed_field

from ..game.store import GameStore
from ..game.windows import WINDOW_LENGTH, window_id_for, window_start_of
from ..stats import out_earn_share, t95

PRE_WINDOWS = 24  # windows before the rollout read for the balance check
MIN_WINDOWS = 3  # with fewer, no interval is said


class ArmBalance(BaseModel):
    """The two arms' agents compared before the rollout, when they were served alike."""

    first_window: str  # the first window read before the rollout (the readout's own first_window is after it)
    windows: int  # windows before the rollout in which both groups had a trajectory
    candidate_agents: int
    live_agents: int
    share: float  # mean per window of the out-earn share, minus 1/2
    ci_low: float | None = None  # plain 95% t interval of that mean (None under MIN_WINDOWS)
    ci_high: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def imbalanced(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)


def balance_of(rows: list[tuple[str, str, float]], candidate_agents: set[str], live_agents: set[str],
               first_window: str) -> ArmBalance | None:
    """The balance from (window, agent, P&L) rows before the rollout; None without a window in which
    both groups traded."""
    by_window: dict[str, tuple[list[float], list[float]]] = {}
    for window_id, agent, pnl in rows:
        side = by_window.setdefault(window_id, ([], []))
        if agent in candidate_agents:
            side[0].append(pnl)
        elif agent in live_agents:
            side[1].append(pnl)
    paired = [by_window[w] for w in sorted(by_window) if by_window[w][0] and by_window[w][1]]
    shares = [s for c, x in paired if (s := out_earn_share(c, x)) is not None]
    if not shares:
        return None
    found = ArmBalance(first_window=first_window, windows=len(shares), candidate_agents=len(candidate_agents),
                       live_agents=len(live_agents), share=statistics.fmean(shares))
    if len(shares) >= MIN_WINDOWS:
        # the spread is never taken below what equal groups of these sizes would show (the share's null
        # variance, (m + n + 1) / 12mn): a share that happened not to move, e.g. one agent a side winning
        # three windows of three, would otherwise make an interval of zero width that "excludes zero"
        null_sd = math.sqrt(statistics.fmean((len(c) + len(x) + 1) / (12 * len(c) * len(x)) for c, x in paired))
        half = t95(len(shares) - 1) * max(statistics.stdev(shares), null_sd) / math.sqrt(len(shares))
        found.ci_low, found.ci_high = found.share - half, found.share + half
    return found


async def pre_rollout_balance(pool: asyncpg.Pool | asyncpg.Connection, started: datetime,
                              candidate_agents: set[str], live_agents: set[str]) -> ArmBalance | None:
    """The balance of the agents the rollout put on each arm over the PRE_WINDOWS windows that closed
    before it started (not the window it started in: part of that one was served on the rollout's arms).
    An agent seen on both arms counts on neither."""
    both = candidate_agents & live_agents
    candidate_agents, live_agents = candidate_agents - both, live_agents - both
    if not candidate_agents or not live_agents:
        return None
    before = window_start_of(started)
    first, end = window_id_for(before - PRE_WINDOWS * WINDOW_LENGTH), window_id_for(before)
    rows = await GameStore(pool).agent_pnl(sorted(candidate_agents | live_agents), first, end)
    return balance_of(rows, candidate_agents, live_agents, first)


def balance_warning(balance: ArmBalance | None, rollout_id: int | None) -> str | None:
    """The readout's warning when the two groups of agents already differed before the rollout."""
    if balance is None or not balance.imbalanced:
        return None
    who = "out-earned" if balance.share > 0 else "earned less than"
    return (f"before rollout {rollout_id} started, when both groups were served alike, the candidate arm's "
            f"{balance.candidate_agents} agents already {who} the live arm's {balance.live_agents} (share of pairs "
            f"{balance.share:+.2f}, 95% CI [{balance.ci_low:+.2f}, {balance.ci_high:+.2f}] over {balance.windows} "
            "windows): the A/B difference mixes the agents' skill with the models' (the gateway keeps each agent "
            "on one arm for the whole rollout)")

