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

import contextlib
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import orjson
from pydantic import BaseModel, Field

from ..game.rows import RecordedCall
from ..stats import Figure, rank_correlation
from .groups import WindowGroup


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


# -- compute ---------------------------------------------------------------------------------------

KL_KEY = "loss/kl_div"  # ART's name (LocalBackend, ServerlessBackend) and the offline backend's
ENTROPY_KEY = "loss/entropy"
# trained assistant tokens: the engine's own count first (what ART trains of these groups), then ART's
TOKEN_KEYS = ("babylon/trainable_assistant_tokens", "data/step_trainable_assistant_tokens")
ZERO_VARIANCE = 1e-12  # ART's rule (`art.utils.grpo.rewards_have_zero_variance`)
MIN_TREND_POINTS = 3  # a slope through two points is only their difference
NO_ACTION = "(none recorded)"


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _mean(values: Iterable[float | None], missing: str) -> Figure:
    found = _finite(values)
    return Figure.of(statistics.fmean(found)) if found else Figure.lacking(missing)


def _metric(metrics: Mapping[str, float] | None, *keys: str) -> Figure:
    if not metrics:
        return Figure.lacking("the backend reported no metrics for this step")
    for key in keys:
        if key in metrics:
            value = metrics[key]
            return Figure.of(value, missing=f"{key} is empty")
    return Figure.lacking(f"the backend did not report {' or '.join(keys)}")


def _zero_spread(rewards: Sequence[float]) -> bool:
    finite = _finite(rewards)
    return len(finite) < 2 or max(finite) - min(finite) <= ZERO_VARIANCE


def action_kind(call: RecordedCall) -> str:
    """The kind of action a call chose: the one it recorded, else the one its JSON reply names."""
    if call.action_type:
        return call.action_type
    with contextlib.suppress(Exception):
        reply = orjson.loads(call.response)
        action = reply.get("action", reply) if isinstance(reply, dict) else None
        if isinstance(action, dict) and isinstance(kind := action.get("actionType"), str) and kind:
            return kind
    return NO_ACTION


def trained_calls(group: WindowGroup) -> list[RecordedCall]:
    """The calls ART trains of a judged group: tokenized calls of trajectories whose advantage is not
    zero (a group with no reward spread, or a trajectory at the group's mean, trains nothing)."""
    rewards = group.rewards
    if len(rewards) != len(group.trajectories) or _zero_spread(rewards):
        return []
    mean = statistics.fmean(rewards) if all(math.isfinite(r) for r in rewards) else math.nan
    out: list[RecordedCall] = []
    for i, (calls, reward) in enumerate(zip(group.calls, rewards, strict=True)):
        if not math.isfinite(reward) or reward - mean == 0:
            continue
        tokens = group.tokens[i] if group.tokens is not None else [None] * len(calls)
        out.extend(c for c, t in zip(calls, tokens, strict=True) if t is not None or group.tokens is None)
    return out


def window_health(group: WindowGroup) -> WindowHealth:
    """Does the judge rank this window's agents as the market paid them?"""
    pnl = [t.final_pnl for t in group.trajectories]
    scores: list[float | None] = list(group.rewards) if len(group.rewards) == len(pnl) else [None] * len(pnl)
    return WindowHealth(
        window_id=group.window_id, agents=len(pnl),
        rank_correlation=rank_correlation(scores, pnl, x_name="the judge's score", y_name="realised P&L"),
        judge_mean=_mean(scores, "no finite judge score"), pnl_mean=_mean(pnl, "no realised P&L recorded"))


def action_entropy(mix: Mapping[str, int]) -> Figure:
    """Shannon entropy of the action mix, in bits (0: every call chose one kind)."""
    total = sum(mix.values())
    if total <= 0:
        return Figure.lacking("no trained call to count")
    return Figure.of(-sum(n / total * math.log2(n / total) for n in mix.values() if n > 0) + 0.0)


def step_health(model_name: str, step: int, groups: Sequence[WindowGroup], metrics: Mapping[str, float] | None,
                *, trainable_tokens: int | None = None, unspread_groups: int = 0,
                run_id: str | None = None) -> StepHealth:
    """The figures of one trained step from its judged groups and the backend's metrics.

    `trainable_tokens`: the assistant tokens ART trains in these groups (None: read from the metrics);
    `unspread_groups`: groups judged for this step but left out before training because their scores
    were all equal (they count in the zero-spread share)."""
    judged = [g for g in groups if g.rewards]
    total = len(judged) + unspread_groups
    zero = unspread_groups + sum(1 for g in judged if _zero_spread(g.rewards))
    calls = [c for g in judged for c in trained_calls(g)]
    mix = dict(Counter(action_kind(c) for c in calls).most_common())
    tokens = Figure.of(float(trainable_tokens)) if trainable_tokens is not None else _metric(metrics, *TOKEN_KEYS)
    if not calls:
        per_call = Figure.lacking("no trained call in this step")
    elif tokens.value is None:
        per_call = Figure.lacking(f"trained tokens unknown: {tokens.missing}")
    else:
        per_call = Figure.of(tokens.value / len(calls))
    spreads = [statistics.pstdev(f) for g in judged if len(f := _finite(g.rewards)) >= 2]
    windows = [window_health(g) for g in groups]
    return StepHealth(
        model_name=model_name, step=step, run_id=run_id, groups=total,
        zero_spread_share=Figure.of(zero / total) if total else Figure.lacking("no judged group"),
        reward_mean=_mean((r for g in judged for r in g.rewards), "no finite judge score"),
        reward_std=Figure.of(statistics.fmean(spreads)) if spreads else Figure.lacking(
            "no group with two finite scores"),
        kl=_metric(metrics, KL_KEY), entropy=_metric(metrics, ENTROPY_KEY), tokens_per_call=per_call,
        action_mix=mix, action_entropy=action_entropy(mix), windows=windows,
        rank_correlation=_window_mean(windows, "in this step's windows"),
    )


def _window_mean(windows: Sequence[WindowHealth], where: str) -> Figure:
    values = _finite(w.rank_correlation.value for w in windows)
    if values:
        return Figure.of(statistics.fmean(values))
    reasons = sorted({w.rank_correlation.missing for w in windows if w.rank_correlation.missing})
    return Figure.lacking(f"no rank correlation {where}" + (f" ({'; '.join(reasons)})" if reasons else ""))


def slope(points: Sequence[tuple[float, float | None]], what: str) -> Figure:
    """Least-squares slope of value on x (per step), or why there is none."""
    pts = [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(y)]
    if len(pts) < MIN_TREND_POINTS:
        return Figure.lacking(f"{len(pts)} point(s) of {what}: a trend needs {MIN_TREND_POINTS}")
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return Figure.lacking(f"every point of {what} is at the same step")
    return Figure.of(sum((x - mx) * (y - my) for x, y in pts) / sxx)


def step_pnl(health: StepHealth) -> float | None:
    """Realised mean P&L of a step's windows."""
    values = _finite(w.pnl_mean.value for w in health.windows)
    return statistics.fmean(values) if values else None


def rolling(history: Sequence[StepHealth], current: StepHealth, *, windows: int = 12, min_windows: int = 4,
            trend_steps: int = 6, holdout: Sequence[tuple[int, float]] = ()) -> StepHealth:
    """`current` with its cross-step figures, from the steps before it (`history`, oldest first, of
    the same model): the mean rank correlation over the newest `windows` windows (at least
    `min_windows`), and the slopes per step over the last `trend_steps` steps of the judge's mean
    score, of realised mean P&L, and of held-out evaluations' mean difference (`holdout`: (step,
    mean difference) of the model's evaluated checkpoints)."""
    before = [h for h in history if h.step < current.step]
    recent = [*(before[-(trend_steps - 1):] if trend_steps > 1 else []), current]
    values = _finite(w.rank_correlation.value for h in [*before, current] for w in h.windows)[-windows:]
    if len(values) >= min_windows:
        corr = Figure.of(statistics.fmean(values))
    else:
        corr = Figure.lacking(f"{len(values)} window(s) with a rank correlation: the rolling mean needs {min_windows}")
    evals = sorted((s, d) for s, d in holdout if s <= current.step)[-trend_steps:]
    return current.model_copy(update={
        "rank_correlation_rolling": corr,
        "judge_trend": slope([(h.step, h.reward_mean.value) for h in recent], "the judge's mean score"),
        "pnl_trend": slope([(h.step, step_pnl(h)) for h in recent], "realised mean P&L"),
        "holdout_trend": slope(evals, "held-out evaluations"),
    })
