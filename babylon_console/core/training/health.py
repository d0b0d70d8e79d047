"""Training health per step: the figures an operator watches to catch training going wrong, each
a `Figure` (a value, or why there is none), computed from what one step trained on.

Per step: the share of groups with no reward spread (they give GRPO no gradient); the reward's mean
and spread; KL and entropy from the backend's metrics (ART's names `loss/kl_div`, `loss/entropy`;
the offline backend reports the same names); trained tokens per trained call; the mix of action
kinds in the trained calls and its entropy. Per window: the rank correlation between the judge's
scores and the agents' realised P&L. Across steps: the rolling mean of that correlation, and the
trends (slope per step) of the judge's mean score, of realised P&L and of held-out evaluations.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..stats import Figure


class WindowHealth(BaseModel):
    """One trained window: does the judge rank the agents as the market paid them?"""

    window_id: str
    agents: int  # trajectories judged in the window
    rank_correlation: Figure  # Spearman, judge score vs realised P&L (finalPnL)
    judge_mean: Figure
    pnl_mean: Figure


class StepHealth(BaseModel):
    """The health figures of one trained step of one model (its training key)."""

    model_name: str  # the training key, `<backend>:<model>`
    step: int
    run_id: str | None = None
    created_at: datetime | None = None  # set when read back
    groups: int = 0
    zero_spread_share: Figure = Field(default_factory=Figure)  # groups whose rewards are all equal
    reward_mean: Figure = Field(default_factory=Figure)
    reward_std: Figure = Field(default_factory=Figure)
    kl: Figure = Field(default_factory=Figure)
    entropy: Figure = Field(default_factory=Figure)
    tokens_per_call: Figure = Field(default_factory=Figure)  # trained assistant tokens per trained call
    action_mix: dict[str, int] = Field(default_factory=dict)  # action kind -> trained calls
    action_entropy: Figure = Field(default_factory=Figure)  # of `action_mix`, in bits
    windows: list[WindowHealth] = Field(default_factory=list)
    rank_correlation: Figure = Field(default_factory=Figure)  # mean over this step's windows
    rank_correlation_rolling: Figure = Field(default_factory=Figure)  # over the recent steps' windows
    judge_trend: Figure = Field(default_factory=Figure)  # slope per step of the judge's mean score
    pnl_trend: Figure = Field(default_factory=Figure)  # slope per step of realised mean P&L
    holdout_trend: Figure = Field(default_factory=Figure)  # slope per evaluation of held-out mean diff
