"""The offline outcome judge: deterministic, sensible ordering, missing ground truth, empty trajectories."""

from __future__ import annotations

import math

from babylon_console.core.game.rows import WindowGroundTruth
from babylon_console.core.training.judges import JudgeInput, OutcomeJudge, TrajectoryScore, ground_truth_text
from babylon_console.core.training.judges.outcome import score_group

from .helpers import WINDOW, act, ground_truth, item_of, simulated_window, trajectory

HOLD = {"actionType": "HOLD", "parameters": {}, "success": True}


def good_agent():
    """Long the stock that rose, correct bets on both resolved markets, modest sizes, profit."""
    return trajectory(
        [
            act("OPEN_LONG", ticker="NOVA", size=200),
            act("BUY_SHARES", marketId="pm-1", side="YES", amount=100),
            act("BUY_SHARES", marketId="pm-2", side="NO", amount=100),
            HOLD,
            act("CLOSE_POSITION", ticker="NOVA"),
        ],
        [0.0, 1.0, 3.0, 6.0, 8.5],
        62.0,
        tid="good",
    )


def reckless_agent():
    """Short the stock that rose with most of the balance, wrong bets, failed orders, a deep drawdown."""
    return trajectory(
        [
            act("OPEN_SHORT", ticker="NOVA", size=800),
            act("BUY_SHARES", marketId="pm-1", side="NO", amount=150),
            act("OPEN_LONG", ticker="HELX", success=False, error="insufficient balance", size=900),
            act("BUY_SHARES", marketId="pm-9", success=False, error="unknown market", side="YES", amount=50),
            act("CLOSE_POSITION", ticker="NOVA"),
        ],
        [0.0, -40.0, -120.0, -260.0, -300.0],
        -236.0,
        tid="reckless",
    )


def holder():
    return trajectory([HOLD] * 5, [0.0] * 5, 0.0, tid="holder")


async def test_sensible_ordering_and_explanations() -> None:
    item = item_of([reckless_agent(), holder(), good_agent()])
    judgment = await OutcomeJudge().judge(item)
    by_id = {s.trajectory_id: s for s in judgment.scores}
    assert [s.trajectory_id for s in judgment.scores] == ["reckless", "holder", "good"]
    assert by_id["good"].score > by_id["holder"].score > by_id["reckless"].score
    assert by_id["good"].score - by_id["reckless"].score > 0.4
    good = by_id["good"].explanation
    assert "P&L +62.00 (+6.20%) vs window median +0.00" in good
    assert "2/2 prediction bets correct" in good and "1/1 stock positions with the market's move" in good
    bad = by_id["reckless"].explanation
    assert "0/1 prediction bets correct" in bad and "0/1 stock positions" in bad
    assert "largest order 80% of equity" in bad and "2 failed action(s) in 5 steps" in bad
    assert "max drawdown 30.0%" in bad
    assert "No trades: held for all 5 steps." in by_id["holder"].explanation
    assert judgment.judge == "outcome" and judgment.judge_model is None and judgment.cost_usd == 0.0
    assert judgment.window_id == WINDOW and judgment.attempts == 1


async def test_deterministic_bit_for_bit_on_simulated_window() -> None:
    item = simulated_window(seed=5, n_agents=8)
    first = await OutcomeJudge().judge(item)
    again = await OutcomeJudge().judge(simulated_window(seed=5, n_agents=8))
    assert [(s.trajectory_id, s.score, s.explanation) for s in first.scores] == [
        (s.trajectory_id, s.score, s.explanation) for s in again.scores
    ]
    assert [s.trajectory_id for s in first.scores] == [t.trajectory_id for t in item.trajectories]
    scores = [s.score for s in first.scores]
    assert all(0.0 <= x <= 1.0 and math.isfinite(x) for x in scores)
    assert all(s.explanation.strip() for s in first.scores)
    assert max(scores) - min(scores) > 0.2  # relative: the group spreads out
    # Reordering the group does not change anyone's score.
    rev = JudgeInput(
        window_id=item.window_id, ground_truth=item.ground_truth,
        trajectories=item.trajectories[::-1], messages=item.messages[::-1],
    )
    again_rev = {s.trajectory_id: s.score for s in (await OutcomeJudge().judge(rev)).scores}
    assert again_rev == {s.trajectory_id: s.score for s in first.scores}


async def test_simulated_reckless_agent_ranks_below_cautious() -> None:
    item = simulated_window(seed=3, n_agents=6, steps=20)
    judgment = await OutcomeJudge().judge(item)
    by_strategy = {t.metadata["strategy"]: s for t, s in zip(item.trajectories, judgment.scores, strict=True)}
    pnl = {t.metadata["strategy"]: t.final_pnl for t in item.trajectories}
    assert pnl["reckless"] < pnl["cautious"]
    assert by_strategy["cautious"].score > by_strategy["reckless"].score


async def test_missing_ground_truth_scores_on_pnl_and_risk() -> None:
    empty = WindowGroundTruth(window_id=WINDOW)
    judgment = await OutcomeJudge().judge(item_of([reckless_agent(), holder(), good_agent()], empty))
    by_id = {s.trajectory_id: s for s in judgment.scores}
    assert by_id["good"].score > by_id["holder"].score > by_id["reckless"].score
    for s in judgment.scores:
        assert s.explanation.startswith("No ground truth for this window: scored on P&L and risk only.")
        assert "prediction bets correct" not in s.explanation
        assert 0.0 <= s.score <= 1.0
    assert "bet(s) on markets not resolved" in by_id["good"].explanation


async def test_partial_ground_truth_drops_only_missing_components() -> None:
    gt = ground_truth(predictions=False)
    scores = score_group([good_agent(), reckless_agent()], gt)
    assert "stock positions with the market's move" in scores[0].explanation
    assert "prediction bets correct" not in scores[0].explanation
    assert scores[0].score > scores[1].score


async def test_zero_actions_and_zero_steps_and_unknown_pnl() -> None:
    empty_steps = trajectory([], [], None, tid="nothing", metadata={})
    no_action = trajectory([None, None], [0.0, 0.0], None, tid="silent")
    judgment = await OutcomeJudge().judge(item_of([empty_steps, no_action, good_agent()]))
    by_id = {s.trajectory_id: s for s in judgment.scores}
    assert "No steps recorded." in by_id["nothing"].explanation
    assert "P&L not recorded" in by_id["nothing"].explanation
    assert "No trades: held for all 2 steps." in by_id["silent"].explanation
    assert all(0.0 <= s.score <= 1.0 and s.explanation for s in judgment.scores)
    assert by_id["good"].score > by_id["nothing"].score


async def test_single_trajectory_and_empty_group() -> None:
    [only] = score_group([good_agent()], ground_truth())
    assert isinstance(only, TrajectoryScore) and 0.0 <= only.score <= 1.0
    assert "rank 1/1" in only.explanation
    assert score_group([], ground_truth()) == []


async def test_identical_trajectories_tie() -> None:
    a = trajectory([HOLD, act("OPEN_LONG", ticker="NOVA", size=100)], [0.0, 0.0], 5.0, tid="a")
    b = trajectory([HOLD, act("OPEN_LONG", ticker="NOVA", size=100)], [0.0, 0.0], 5.0, tid="b")
    sa, sb = score_group([a, b], ground_truth())
    assert sa.score == sb.score


def test_ground_truth_text_is_compact_and_complete() -> None:
    text = ground_truth_text(ground_truth())
    assert "NOVA 100.00 -> 104.60 (+4.60%, bullish)" in text
    assert '"Nova Dynamics wins a major government contract"' in text
    assert "[pm-1] Will NOVA close above $103 this hour? -> YES (final probability 0.97)" in text
    assert "HELX" in text and "pm-2" in text
    assert "no market outcomes" in ground_truth_text(WindowGroundTruth(window_id=WINDOW))
