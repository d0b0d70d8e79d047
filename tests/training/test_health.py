"""Training health per step: figures from judged groups and backend metrics, each a value or why
there is none; the cross-step figures; and `Figure` / `rank_correlation` at their edges."""

from __future__ import annotations

import math

import pytest

from babylon_console.core.game.rows import RecordedCall, Trajectory
from babylon_console.core.stats import Figure, rank_correlation
from babylon_console.core.training.groups import WindowGroup
from babylon_console.core.training.health import (
    StepHealth,
    WindowHealth,
    action_entropy,
    action_kind,
    rolling,
    slope,
    step_health,
)

METRICS = {"loss/kl_div": 0.02, "loss/entropy": 1.3, "babylon/trainable_assistant_tokens": 120.0}


def _call(kind: str | None, response: str = "{}") -> RecordedCall:
    return RecordedCall(1, "sys", "user", response, "action", kind)


def _group(window: str, rewards: list[float], pnl: list[float | None], kinds: str = "hold") -> WindowGroup:
    ts = [Trajectory.model_construct(trajectory_id=f"{window}-{i}", agent_id=f"a{i}", final_pnl=p)
          for i, p in enumerate(pnl)]
    return WindowGroup(window_id=window, trajectories=ts, calls=[[_call(kinds), _call(kinds)] for _ in ts],
                       steps_without_calls=0, rewards=rewards)


def test_step_health_from_groups_and_metrics() -> None:
    g = _group("w1", [0.9, 0.5, 0.1], [30.0, 0.0, -20.0], kinds="open_long")
    h = step_health("offline:m", 3, [g], METRICS)
    assert h.groups == 1 and h.zero_spread_share.value == 0.0
    assert h.kl.value == 0.02 and h.entropy.value == 1.3
    assert h.windows[0].rank_correlation.value == pytest.approx(1.0)
    assert h.rank_correlation.value == pytest.approx(1.0)
    # the middle trajectory is at the group's mean: ART trains the other two (4 calls)
    assert h.action_mix == {"open_long": 4} and h.tokens_per_call.value == 30.0
    assert h.action_entropy.value == 0.0
    assert h.reward_mean.value == pytest.approx(0.5)


def test_unspread_groups_count_in_the_zero_spread_share() -> None:
    h = step_health("m", 1, [_group("w1", [1.0, 0.0], [1.0, 0.0])], METRICS, unspread_groups=3)
    assert h.groups == 4 and h.zero_spread_share.value == 0.75


def test_a_step_without_metrics_has_its_figures_missing_with_why() -> None:
    h = step_health("m", 1, [_group("w1", [1.0, 0.0], [1.0, 0.0])], None)
    assert h.kl.value is None and "no metrics" in (h.kl.missing or "")
    assert h.tokens_per_call.value is None and "no metrics" in (h.tokens_per_call.missing or "")
    named = step_health("m", 1, [_group("w1", [1.0, 0.0], [1.0, 0.0])], {"loss/train": 0.1})
    assert "loss/kl_div" in (named.kl.missing or "")
    nan = step_health("m", 1, [_group("w1", [1.0, 0.0], [1.0, 0.0])], {"loss/kl_div": math.nan})
    assert nan.kl.value is None and nan.kl.missing


def test_a_judge_of_nan_or_equal_scores_and_a_lone_agent_give_reasons_not_crashes() -> None:
    nan = step_health("m", 1, [_group("w1", [math.nan, math.nan, 0.3], [1.0, 2.0, 3.0])], METRICS)
    assert nan.windows[0].rank_correlation.value is None and "two" in (nan.windows[0].rank_correlation.missing or "")
    equal = step_health("m", 1, [_group("w1", [0.5, 0.5, 0.5], [1.0, 2.0, 3.0])], METRICS)
    assert equal.zero_spread_share.value == 1.0
    assert "same for every agent" in (equal.windows[0].rank_correlation.missing or "")
    assert equal.tokens_per_call.value is None and equal.action_entropy.value is None
    lone = step_health("m", 1, [_group("w1", [0.7], [4.0])], METRICS)
    assert lone.windows[0].agents == 1 and lone.windows[0].rank_correlation.value is None
    assert lone.rank_correlation.value is None and "no rank correlation" in (lone.rank_correlation.missing or "")
    empty = step_health("m", 1, [], None)
    assert empty.zero_spread_share.value is None and empty.reward_mean.value is None


def test_action_kind_reads_the_recorded_kind_then_the_reply() -> None:
    assert action_kind(_call("buy_shares")) == "buy_shares"
    assert action_kind(_call(None, '{"action":{"actionType":"open_short"}}')) == "open_short"
    assert action_kind(_call(None, "not json")) == "(none recorded)"
    assert action_entropy({"a": 1, "b": 1}).value == pytest.approx(1.0)
    assert action_entropy({}).value is None


def _step(step: int, corr: float | None, judge: float, pnl: float) -> StepHealth:
    w = WindowHealth(window_id=f"w{step}", agents=4, rank_correlation=Figure.of(corr, missing="none"),
                     judge_mean=Figure.of(judge), pnl_mean=Figure.of(pnl))
    return StepHealth(model_name="m", step=step, windows=[w], reward_mean=Figure.of(judge))


def test_rolling_mean_and_trends() -> None:
    history = [_step(s, 0.1 * s, 0.5 + 0.02 * s, 10.0 - s) for s in range(1, 6)]
    now = rolling(history, _step(6, 0.6, 0.62, 4.0), windows=4, min_windows=2, trend_steps=4,
                  holdout=[(2, 1.0), (4, 0.0), (6, -1.0), (9, 5.0)])
    assert now.rank_correlation_rolling.value == pytest.approx((0.3 + 0.4 + 0.5 + 0.6) / 4)
    assert now.judge_trend.value == pytest.approx(0.02)
    assert now.pnl_trend.value == pytest.approx(-1.0)
    assert now.holdout_trend.value == pytest.approx(-0.5)  # evaluations after step 6 are not its past


def test_rolling_says_why_when_history_is_short() -> None:
    now = rolling([], _step(1, None, 0.5, 1.0))
    assert now.rank_correlation_rolling.value is None and "needs 4" in (now.rank_correlation_rolling.missing or "")
    assert now.judge_trend.value is None and "a trend needs 3" in (now.judge_trend.missing or "")
    assert now.holdout_trend.value is None


def test_slope_edges() -> None:
    assert slope([(1, 1.0), (2, math.nan), (3, 3.0)], "x").value is None
    assert slope([(1, 1.0), (1, 2.0), (1, 3.0)], "x").value is None
    assert slope([(1, 1.0), (2, None), (3, 3.0), (4, 4.0)], "x").value == pytest.approx(1.0, abs=0.2)


def test_figure_edges() -> None:
    assert Figure.of(None).missing == "not measured"
    assert Figure.of(math.inf).value is None and "finite" in (Figure.of(math.inf).missing or "")
    assert Figure.of(0.0).value == 0.0 and Figure.of(0.0).missing is None
    assert Figure.lacking("why").text() == "— (why)" and Figure.of(1.234).text("{:.1f}") == "1.2"


def test_rank_correlation_edges() -> None:
    assert rank_correlation([1, 2, 3], [3, 2, 1]).value == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 2, 3], [1, 2, 2, 3]).value == pytest.approx(1.0)  # ties share a rank
    assert rank_correlation([1], [2]).value is None
    assert "1 without" in (rank_correlation([1, None], [2, 3]).missing or "")
    assert rank_correlation([1, math.nan, 3], [1, 2, 3]).value == pytest.approx(1.0)  # the NaN pair left out
    assert "without a finite value" in (rank_correlation([1, math.nan], [1, 2]).missing or "")
    assert "judge" in (rank_correlation([1, 1], [1, 2], x_name="the judge").missing or "")
    assert "P&L" in (rank_correlation([1, 2], [5, 5], y_name="P&L").missing or "")
    with pytest.raises(ValueError):
        rank_correlation([1, 2], [1])
