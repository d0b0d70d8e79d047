"""Training health alarms: rules over the health of a model's recent steps (`core.training.health`)
that say when training is going wrong, each with a threshold from `AlarmSettings`.

A rule reads the newest step and the steps before it; a rule whose figure is missing (no metrics,
no correlation, too short a history) stays quiet, and a rule that fails is logged and skipped:
checking never fails a step.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import BaseModel

from ..config import AlarmSettings
from ..stats import Figure
from .health import NO_ACTION, StepHealth, step_pnl

log = logging.getLogger(__name__)
MAD_TO_SD = 1.4826  # the MAD of a normal sample times this estimates its standard deviation
MIN_SCALE_SHARE = 0.05  # a KL spike's scale is at least this share of the median (MAD 0 on flat history)


class AlarmRule(StrEnum):
    kl_spike = "kl_spike"
    entropy_collapse = "entropy_collapse"
    action_collapse = "action_collapse"
    tokens_blowup = "tokens_blowup"
    zero_spread = "zero_spread"
    judge_disagrees = "judge_disagrees"
    judge_diverges = "judge_diverges"


class RaisedAlarm(BaseModel):
    rule: AlarmRule
    step: int | None
    window_id: str | None = None
    figures: dict[str, float | None]
    threshold: float | None
    message: str  # one sentence with the figures


def _earlier(history: Sequence[StepHealth], figure: Callable[[StepHealth], Figure], limit: int) -> list[float]:
    """The figure's values in the steps before the newest, the newest `limit` of them."""
    return [v for h in history[:-1] if (v := figure(h).value) is not None][-limit:]


def _against_recent(history: Sequence[StepHealth], figure: Callable[[StepHealth], Figure], s: AlarmSettings
                    ) -> tuple[float, float, list[float]] | None:
    """(the newest step's value, the median of the recent steps before it, those values); None while the
    figure is missing or the history is shorter than `min_history`."""
    value = figure(history[-1]).value
    before = _earlier(history, figure, s.recent_steps)
    if value is None or len(before) < s.min_history:
        return None
    return value, statistics.median(before), before


def kl_spike(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    if (recent := _against_recent(history, lambda h: h.kl, s)) is None:
        return None
    kl, median, before = recent
    mad = statistics.median(abs(v - median) for v in before)
    scale = max(MAD_TO_SD * mad, MIN_SCALE_SHARE * abs(median), 1e-12)
    z = (kl - median) / scale
    if z <= s.kl_z:
        return None
    return RaisedAlarm(rule=AlarmRule.kl_spike, step=now.step, figures={"kl": kl, "median": median, "z": z},
                       threshold=s.kl_z, message=f"KL {kl:.4g} at step {now.step} is {z:.1f} robust SDs above the "
                                             f"median {median:.4g} of the {len(before)} steps before (alarm above "
                                             f"{s.kl_z:g})")


def entropy_collapse(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    entropy = now.entropy.value
    early = [v for h in history[:-1] if (v := h.entropy.value) is not None][:s.min_history]
    if entropy is None or len(early) < s.min_history:
        return None
    level = statistics.median(early)
    if level <= 0 or entropy >= s.entropy_fraction * level:
        return None
    return RaisedAlarm(rule=AlarmRule.entropy_collapse, step=now.step,
                       figures={"entropy": entropy, "early": level, "ratio": entropy / level},
                       threshold=s.entropy_fraction,
                       message=f"entropy {entropy:.3g} at step {now.step} is {entropy / level:.0%} of its early "
                               f"level {level:.3g} (alarm below {s.entropy_fraction:.0%})")


def action_collapse(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    # calls whose action kind was not recorded are no kind: a game that logs none is not a collapse
    known = {k: n for k, n in now.action_mix.items() if k != NO_ACTION}
    total = sum(known.values())
    if total < s.min_action_calls:
        return None
    kind, top = max(known.items(), key=lambda kv: kv[1])
    share = top / total
    if share < s.action_share:
        return None
    return RaisedAlarm(rule=AlarmRule.action_collapse, step=now.step,
                       figures={"share": share, "calls": float(total), "entropy_bits": now.action_entropy.value},
                       threshold=s.action_share,
                       message=f"{share:.0%} of the {total} trained calls at step {now.step} chose {kind} "
                               f"(alarm at {s.action_share:.0%})")


def tokens_blowup(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    if (recent := _against_recent(history, lambda h: h.tokens_per_call, s)) is None:
        return None
    per_call, median, _ = recent
    if median <= 0 or per_call <= s.tokens_ratio * median:
        return None
    return RaisedAlarm(rule=AlarmRule.tokens_blowup, step=now.step,
                       figures={"tokens_per_call": per_call, "median": median, "ratio": per_call / median},
                       threshold=s.tokens_ratio,
                       message=f"{per_call:.0f} trained tokens per call at step {now.step}, {per_call / median:.1f}x "
                               f"the recent median {median:.0f} (alarm above {s.tokens_ratio:g}x)")


def zero_spread(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    share = now.zero_spread_share.value
    if share is None or share < s.zero_spread_share:
        return None
    return RaisedAlarm(rule=AlarmRule.zero_spread, step=now.step,
                       figures={"share": share, "groups": float(now.groups)}, threshold=s.zero_spread_share,
                       message=f"{share:.0%} of the {now.groups} groups judged for step {now.step} have no reward "
                               f"spread and give no gradient (alarm at {s.zero_spread_share:.0%})")


def judge_disagrees(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    rolling = now.rank_correlation_rolling.value
    if rolling is None or rolling >= s.min_rank_correlation:
        return None
    return RaisedAlarm(rule=AlarmRule.judge_disagrees, step=now.step,
                       figures={"rolling": rolling, "step": now.rank_correlation.value},
                       threshold=s.min_rank_correlation,
                       message=f"judge vs realised P&L rank correlation {rolling:+.2f} at step {now.step}, below "
                               f"{s.min_rank_correlation:+.2f} (Spearman, rolling mean over the recent windows): the "
                               "judge does not rank the agents as the market paid them")


def judge_diverges(history: Sequence[StepHealth], s: AlarmSettings) -> RaisedAlarm | None:
    now = history[-1]
    judge, pnl = now.judge_trend.value, now.pnl_trend.value
    if judge is None or pnl is None or judge < s.judge_rise or pnl > s.pnl_flat:
        return None
    return RaisedAlarm(rule=AlarmRule.judge_diverges, step=now.step,
                       figures={"judge_slope": judge, "pnl_slope": pnl, "pnl": step_pnl(now)},
                       threshold=s.judge_rise,
                       message=f"the judge's mean score rises {judge:+.3f} per step while realised P&L moves "
                               f"{pnl:+.2f} per step over the last {s.trend_steps} steps up to step {now.step} (alarm: "
                               f"score rising {s.judge_rise:g}+ with P&L at or below {s.pnl_flat:+g})")


RULES: dict[AlarmRule, Callable[[Sequence[StepHealth], AlarmSettings], RaisedAlarm | None]] = {
    AlarmRule.kl_spike: kl_spike,
    AlarmRule.entropy_collapse: entropy_collapse,
    AlarmRule.action_collapse: action_collapse,
    AlarmRule.tokens_blowup: tokens_blowup,
    AlarmRule.zero_spread: zero_spread,
    AlarmRule.judge_disagrees: judge_disagrees,
    AlarmRule.judge_diverges: judge_diverges,
}


def check(history: list[StepHealth], settings: AlarmSettings) -> list[RaisedAlarm]:
    """The alarms of the newest step of `history` (oldest first, one model)."""
    if not history:
        return []
    raised = []
    for rule, fires in RULES.items():
        try:
            alarm = fires(history, settings)
        except Exception:  # a figure this rule did not expect: no alarm, never a failed check
            log.warning("alarm rule %s failed on step %s", rule.value, history[-1].step, exc_info=True)
            continue
        if alarm is not None:
            raised.append(alarm)
    return raised
