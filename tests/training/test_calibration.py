"""Judge calibration of a window: the judge's ranking beside the market's, their correlation, and the
pair they disagree on most with the steps that made the money; thin or odd data says why, never raises."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.training.calibration import descending_ranks, window_calibration
from tests.factories import step, trajectory_row, user_row

WINDOW = "2026-11-24T10:00"


def pnl_steps(*pnls: float | None) -> str:
    """Steps whose environment records these P&L values (None: the key is absent)."""
    steps = []
    for n, pnl in enumerate(pnls):
        state: dict[str, Any] = {"agentBalance": 1000.0}
        if pnl is not None:
            state["agentPnL"] = pnl
        steps.append(step(n, environmentState=state,
                          action={"actionType": "BUY" if n % 2 else "SELL", "parameters": {"ticker": f"T{n}"},
                                  "success": True, "reasoning": f"why {n}"}))
    return orjson.dumps(steps).decode()


async def insert(pool: asyncpg.Pool, rows: list[tuple[Any, ...]]) -> dict[str, str]:
    """The rows (and their agents); agentId -> trajectoryId."""
    from babylon_console.core.game.schema import TRAJECTORY_COLUMNS

    agent_at, id_at = TRAJECTORY_COLUMNS.index("agentId"), TRAJECTORY_COLUMNS.index("trajectoryId")
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row(a) for a in sorted({r[agent_at] for r in rows})])
        await copy_rows(conn, "trajectories", rows)
    return {r[agent_at]: r[id_at] for r in rows}


async def judge(pool: asyncpg.Pool, trajectory_id: str, score: float, explanation: str = "",
                name: str = "outcome") -> None:
    await pool.execute("INSERT INTO console_judgments (trajectory_id, window_id, judge, score, explanation) "
                       "VALUES ($1, $2, $3, $4, $5)", trajectory_id, WINDOW, name, score,
                       explanation or f"{name} on {trajectory_id}")


async def four_agents(pool: asyncpg.Pool) -> dict[str, str]:
    return await insert(pool, [
        trajectory_row(WINDOW, "a0", steps=3, pnl=5.0, steps_json=pnl_steps(0.0, 12.0, -3.0)),
        trajectory_row(WINDOW, "a1", steps=3, pnl=20.0, steps_json=pnl_steps(0.0, 5.0, 5.0)),
        trajectory_row(WINDOW, "a2", steps=3, pnl=10.0),
        trajectory_row(WINDOW, "a3", steps=3, pnl=-8.0),
    ])


def test_ranks_put_the_largest_first_share_ties_and_skip_what_is_not_finite() -> None:
    assert descending_ranks([3.0, 1.0, 3.0, None, float("nan"), 0.5]) == [1.5, 3.0, 1.5, None, None, 4.0]


async def test_the_judges_ranking_beside_the_markets_with_the_pair_they_disagree_on_most(pool) -> None:
    ids = await four_agents(pool)
    await judge(pool, ids["a0"], 0.2, "an older verdict")  # the newest verdict on a trajectory counts
    for agent, score in (("a0", 0.9), ("a1", 0.7), ("a2", 0.5), ("a3", 0.1)):
        await judge(pool, ids[agent], score, f"{agent}: reasons")

    cal = await window_calibration(pool, WINDOW)

    assert cal.judge == "outcome" and cal.judges == ["outcome"] and cal.unjudged == 0
    assert [(a.agent_id, a.score, a.judge_rank, a.pnl, a.pnl_rank) for a in cal.agents] == [
        ("a0", 0.9, 1.0, 5.0, 3.0), ("a1", 0.7, 2.0, 20.0, 1.0), ("a2", 0.5, 3.0, 10.0, 2.0),
        ("a3", 0.1, 4.0, -8.0, 4.0)]
    assert cal.correlation.value == pytest.approx(0.4)  # d = (2, -1, -1, 0): 1 - 6*6/(4*15)
    pair = cal.pair
    assert pair is not None and cal.pair_missing is None
    # (a0 over a1): 0.2 x 15 = 3.0 beats (a0 over a2): 0.4 x 5 = 2.0
    assert pair.judged_higher.agent.agent_id == "a0" and pair.paid_more.agent.agent_id == "a1"
    assert (pair.score_gap, pair.pnl_gap, pair.measure) == (pytest.approx(0.2), 15.0, pytest.approx(3.0))
    assert pair.judged_higher.agent.explanation == "a0: reasons"
    # a0: P&L 0 -> 12 -> -3, then 5 at the end: +12, -15, +8; largest change first
    assert [(s.index, s.pnl_change) for s in pair.judged_higher.steps] == [(2, -15.0), (1, 12.0), (3, 8.0)]
    assert pair.judged_higher.steps[0].action == 'BUY {"ticker": "T1"}'
    assert pair.judged_higher.steps[0].reasoning == "why 1"
    assert [(s.index, s.pnl_change) for s in pair.paid_more.steps] == [(3, 15.0), (1, 5.0), (2, 0.0)]


async def test_no_judgment_yet_leaves_the_figure_and_the_pair_missing_with_why(pool) -> None:
    await four_agents(pool)
    cal = await window_calibration(pool, WINDOW)
    assert cal.judge is None and cal.agents == []
    assert cal.correlation.value is None and cal.correlation.missing == "no judgment of this window yet"
    assert cal.pair is None and cal.pair_missing == "no judgment of this window yet"
    assert (await window_calibration(pool, "2020-01-01T00:00")).pair_missing == "no judgment of this window yet"


async def test_one_judged_agent_has_no_correlation_and_no_pair(pool) -> None:
    ids = await four_agents(pool)
    await judge(pool, ids["a2"], 0.5)
    cal = await window_calibration(pool, WINDOW)
    assert [a.agent_id for a in cal.agents] == ["a2"] and cal.unjudged == 3
    assert cal.correlation.missing is not None and "1 agent(s) to rank" in cal.correlation.missing
    assert cal.pair is None and "a pair needs two" in (cal.pair_missing or "")


async def test_equal_scores_and_a_nan_score_say_why_there_is_no_ranking(pool) -> None:
    ids = await four_agents(pool)
    for agent in ("a0", "a1", "a2"):
        await judge(pool, ids[agent], 0.5)
    await judge(pool, ids["a3"], float("nan"))
    cal = await window_calibration(pool, WINDOW)
    nan = next(a for a in cal.agents if a.agent_id == "a3")
    assert nan.score is None and nan.judge_rank is None and cal.agents[-1] is nan  # unranked last
    assert cal.correlation.missing == "the judge's score is the same for every agent: no ranking"
    assert cal.pair is None and cal.pair_missing is not None and "same score" in cal.pair_missing


async def test_missing_pnl_is_left_out_and_steps_without_pnl_are_not_invented(pool) -> None:
    ids = await insert(pool, [
        trajectory_row(WINDOW, "b0", steps=2, pnl=1.0, steps_json=pnl_steps(None, None)),
        trajectory_row(WINDOW, "b1", steps=2, pnl=9.0, steps_json=pnl_steps(None, None)),
        trajectory_row(WINDOW, "b2", steps=2, pnl=None),
    ])
    await judge(pool, ids["b0"], 0.8, "b0 looked sharp")
    await judge(pool, ids["b1"], 0.3, "b1 looked lost")
    await judge(pool, ids["b2"], 0.9)
    await judge(pool, "traj-gone", 0.4)  # a verdict whose row is not in the window

    cal = await window_calibration(pool, WINDOW)

    by_trajectory = {a.trajectory_id: a for a in cal.agents}
    assert by_trajectory[ids["b2"]].pnl is None and by_trajectory[ids["b2"]].note == "the row records no final P&L"
    assert by_trajectory["traj-gone"].agent_id is None
    assert by_trajectory["traj-gone"].note == "no trajectory row with this id in the window"
    assert cal.correlation.value == pytest.approx(-1.0)  # the two with both figures, in opposite order
    pair = cal.pair
    assert pair is not None
    assert (pair.judged_higher.agent.agent_id, pair.paid_more.agent.agent_id) == ("b0", "b1")
    assert pair.judged_higher.agent.explanation == "b0 looked sharp"
    assert pair.judged_higher.steps == [] and pair.paid_more.steps == []
    assert "record no P&L" in (pair.judged_higher.steps_missing or "")


async def test_the_newest_judge_is_chosen_unless_one_is_asked_for(pool) -> None:
    ids = await four_agents(pool)
    for agent, score in (("a0", 0.1), ("a1", 0.9), ("a2", 0.5), ("a3", 0.0)):
        await judge(pool, ids[agent], score, name="outcome")
    for agent, score in (("a0", 0.9), ("a1", 0.1)):
        await judge(pool, ids[agent], score, name="ruler")

    newest = await window_calibration(pool, WINDOW)
    assert newest.judge == "ruler" and newest.judges == ["ruler", "outcome"] and newest.unjudged == 2
    assert newest.correlation.value == pytest.approx(-1.0)

    asked = await window_calibration(pool, WINDOW, judge="outcome")
    assert asked.judge == "outcome" and len(asked.agents) == 4
    assert asked.pair is None and asked.pair_missing is not None and "order every pair alike" in asked.pair_missing

    absent = await window_calibration(pool, WINDOW, judge="nobody")
    assert absent.judge is None
    assert absent.pair_missing == "no verdict of the nobody judge on this window (judged by: ruler, outcome)"


async def test_inspect_calibration_prints_the_same_from_the_shell(pool, database_url) -> None:
    import asyncio

    from typer.testing import CliRunner

    from babylon_console.cli import app

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, ["inspect", *args], env={"DATABASE_URL": database_url}, catch_exceptions=False)

    ids = await four_agents(pool)
    for agent, score in (("a0", 0.9), ("a1", 0.7), ("a2", 0.5), ("a3", 0.1)):
        await judge(pool, ids[agent], score, f"[{agent}] reasons")  # brackets are text, not markup

    shown = await asyncio.to_thread(invoke, WINDOW, "--calibration")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"Judge calibration of {WINDOW} judge outcome 4 judged, 0 not" in text
    assert "judge's score vs realised P&L: +0.40" in text
    assert "the judge ranks a0 above a1" in text and "judge: [a0] reasons" in text and "judge: [a1] reasons" in text
    assert "step 2 -15.00 BUY" in text
    as_json = orjson.loads((await asyncio.to_thread(invoke, WINDOW, "--calibration", "--json")).output)
    assert as_json["correlation"]["value"] == pytest.approx(0.4)
    assert as_json["pair"]["paid_more"]["agent"]["agent_id"] == "a1"
    absent = await asyncio.to_thread(invoke, WINDOW, "--calibration", "--judge", "ruler")
    assert absent.exit_code == 0
    assert "Most disagreed pair: none, no verdict of the ruler judge on this window (judged by: outcome)" in (
        " ".join(absent.output.split()))
