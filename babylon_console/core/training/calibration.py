"""Judge calibration of one window: does the judge rank the agents as the market paid them?

Each judged trajectory's score and rank stand next to its realised P&L (`finalPnL`) and rank; the
Spearman correlation of the two says how far the judge agrees with the market, and the pair they
disagree on most is shown with both judge explanations and the steps that made or lost the money.
Read-only: verdicts (`console_judgments`) and game rows are read through `GameStore`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import asyncpg
from pydantic import BaseModel, Field

from ..game.rows import Rejection, Trajectory
from ..game.store import ConsoleJudgment, GameStore
from ..stats import Figure, rank_correlation

STEPS_PER_SIDE = 3  # the steps with the largest P&L changes shown for each side of the pair
ACTION_CHARS = 80


class AgentCalibration(BaseModel):
    """One judged trajectory: the judge's score and rank beside its realised P&L and rank (rank 1 is
    the best; tied values share the mean of their places; None: no finite value to rank)."""

    trajectory_id: str
    agent_id: str | None  # None: the judged trajectory's row is missing or unreadable
    score: float | None  # None: the recorded score is not a finite number
    judge_rank: float | None
    pnl: float | None  # None: the row records no finite P&L
    pnl_rank: float | None
    explanation: str
    note: str | None = None  # why the row gives no P&L, when it does not


class StepMoney(BaseModel):
    """A step's P&L change: the P&L recorded at the next step (the final P&L after the last) minus
    the P&L recorded at this one (the state a step records is the one its action started from)."""

    index: int  # 1..n, as the inspector numbers steps
    step_number: int  # as recorded
    pnl_change: float
    action: str | None = None
    reasoning: str | None = None


class PairSide(BaseModel):
    agent: AgentCalibration
    steps: list[StepMoney] = Field(default_factory=list)  # largest |P&L change| first
    steps_missing: str | None = None  # why no step is listed


class Disagreement(BaseModel):
    """Two agents the judge and the market order oppositely. `measure` = score gap x P&L gap, the
    size of the disagreement on both axes at once (each gap in its own unit: within one window
    the product orders pairs the same whatever the scales)."""

    judged_higher: PairSide  # the judge ranked it above the other ...
    paid_more: PairSide  # ... while the market paid this one more
    score_gap: float
    pnl_gap: float
    measure: float


class WindowCalibration(BaseModel):
    window_id: str
    judge: str | None  # None: no judgment of this window (of the judge asked for)
    judge_model: str | None = None
    judges: list[str] = Field(default_factory=list)  # every judge with verdicts here, newest first
    agents: list[AgentCalibration] = Field(default_factory=list)  # by judge rank, unranked last
    unjudged: int = 0  # readable trajectories of the window the judge gave no verdict
    correlation: Figure
    pair: Disagreement | None = None
    pair_missing: str | None = None  # why there is no pair; set exactly when `pair` is None


async def window_calibration(pool: asyncpg.Pool, window_id: str, *, judge: str | None = None) -> WindowCalibration:
    """The window's calibration for `judge` (None: the judge of the window's newest judgment),
    each trajectory by the judge's newest verdict on it. Never raises on thin or odd data: no
    verdict, one agent, NaN or equal scores, missing P&L each leave the figure or the pair missing
    with the reason."""
    store = GameStore(pool)
    by_judge = await store.window_verdicts_by_judge(window_id)
    judges = list(by_judge)
    chosen = judge if judge is not None else (judges[0] if judges else None)
    verdicts = by_judge.get(chosen or "", {})
    if not verdicts:
        if judge is None:
            why = "no judgment of this window yet"
        else:
            others = f" (judged by: {', '.join(judges)})" if judges else ""
            why = f"no verdict of the {judge} judge on this window{others}"
        return WindowCalibration(window_id=window_id, judge=None, judges=judges,
                                 correlation=Figure.lacking(why), pair_missing=why)
    loaded = await store.window_trajectories(window_id)
    rows: dict[str, Trajectory] = {t.trajectory_id: t for t in loaded.trajectories}
    rejected: dict[str, Rejection] = {r.trajectory_id: r for r in loaded.rejections if r.trajectory_id}
    agents = calibrate(verdicts, rows, rejected)
    unjudged = sum(1 for trajectory_id in rows if trajectory_id not in verdicts)
    correlation = rank_correlation([a.score for a in agents], [a.pnl for a in agents],
                                   x_name="the judge's score", y_name="the realised P&L")
    pair, pair_missing = most_disagreed(agents, rows)
    first = next(iter(verdicts.values()))
    return WindowCalibration(window_id=window_id, judge=chosen, judge_model=first.judge_model, judges=judges,
                             agents=agents, unjudged=unjudged, correlation=correlation, pair=pair,
                             pair_missing=pair_missing)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def descending_ranks(values: Sequence[float | None]) -> list[float | None]:
    """Rank 1 for the largest finite value, tied values sharing the mean of their places; None for
    a value that is missing or not finite."""
    ranked = sorted((v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v))
    ranked.reverse()
    ranks: list[float | None] = [None] * len(values)
    start = 0
    while start < len(ranked):
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        for _, i in ranked[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def calibrate(verdicts: dict[str, ConsoleJudgment], rows: dict[str, Trajectory],
              rejected: dict[str, Rejection]) -> list[AgentCalibration]:
    """One entry per judged trajectory, ranked both ways, in the judge's order (unranked last)."""
    entries: list[AgentCalibration] = []
    for trajectory_id, verdict in verdicts.items():
        row = rows.get(trajectory_id)
        note = None
        if row is None:
            note = (f"row unreadable: {rejected[trajectory_id].reason}" if trajectory_id in rejected
                    else "no trajectory row with this id in the window")
        elif row.final_pnl is None:
            note = "the row records no final P&L"
        entries.append(AgentCalibration(
            trajectory_id=trajectory_id, agent_id=row.agent_id if row is not None else None,
            score=_finite(verdict.score), judge_rank=None,
            pnl=row.final_pnl if row is not None else None, pnl_rank=None,
            explanation=verdict.explanation, note=note))
    judge_ranks = descending_ranks([a.score for a in entries])
    pnl_ranks = descending_ranks([a.pnl for a in entries])
    for agent, judge_rank, pnl_rank in zip(entries, judge_ranks, pnl_ranks, strict=True):
        agent.judge_rank, agent.pnl_rank = judge_rank, pnl_rank
    return sorted(entries, key=lambda a: (a.judge_rank is None, a.judge_rank or 0.0, a.agent_id or "",
                                          a.trajectory_id))


def most_disagreed(agents: list[AgentCalibration], rows: dict[str, Trajectory]
                   ) -> tuple[Disagreement | None, str | None]:
    """The pair (A, B) with the judge's score of A above B's while B's P&L is above A's, of the
    largest score gap x P&L gap; (None, why) when there is none."""
    both = [a for a in agents if a.score is not None and a.pnl is not None]
    if len(both) < 2:
        left_out = len(agents) - len(both)
        why = f" ({left_out} without a finite score or P&L)" if left_out else ""
        return None, f"{len(both)} agent(s) with both a score and a P&L{why}: a pair needs two"
    if len({a.score for a in both}) == 1:
        return None, "the judge gave every agent the same score: it ranks no agent above another"
    best: tuple[float, AgentCalibration, AgentCalibration] | None = None
    for higher in both:
        for paid in both:
            assert higher.score is not None and paid.score is not None
            assert higher.pnl is not None and paid.pnl is not None
            if higher.score > paid.score and paid.pnl > higher.pnl:
                measure = (higher.score - paid.score) * (paid.pnl - higher.pnl)
                if best is None or measure > best[0]:
                    best = (measure, higher, paid)
    if best is None:
        return None, "the judge and the market order every pair alike: no pair to disagree on"
    measure, higher, paid = best
    assert higher.score is not None and paid.score is not None and higher.pnl is not None and paid.pnl is not None
    return Disagreement(judged_higher=_side(higher, rows), paid_more=_side(paid, rows),
                        score_gap=higher.score - paid.score, pnl_gap=paid.pnl - higher.pnl,
                        measure=measure), None


def _side(agent: AgentCalibration, rows: dict[str, Trajectory]) -> PairSide:
    row = rows[agent.trajectory_id]
    steps, missing = step_money(row)
    return PairSide(agent=agent, steps=steps[:STEPS_PER_SIDE], steps_missing=missing)


def step_money(t: Trajectory) -> tuple[list[StepMoney], str | None]:
    """Each step's P&L change (see `StepMoney`), largest |change| first, from the steps'
    `environmentState.agentPnL`; a step whose change needs a value the row lacks is left out.
    ([], why) when the row gives no change at all: nothing is made up."""
    if not t.steps:
        return [], "the trajectory has no steps"
    recorded = [s.environment_state.agent_pnl if s.environment_state is not None else None for s in t.steps]
    after = [*recorded[1:], t.final_pnl]
    out: list[StepMoney] = []
    for index, (step, before, then) in enumerate(zip(t.steps, recorded, after, strict=True), start=1):
        if before is None or then is None or not math.isfinite(before) or not math.isfinite(then):
            continue
        action, reasoning = None, None
        if step.action is not None:
            params = json.dumps(step.action.parameters, default=str, ensure_ascii=False) \
                if step.action.parameters else ""
            action = f"{step.action.action_type or '?'} {params}".strip()[:ACTION_CHARS]
            reasoning = step.action.reasoning
        out.append(StepMoney(index=index, step_number=step.step_number, pnl_change=then - before, action=action,
                             reasoning=reasoning))
    if not out:
        return [], "the steps record no P&L (environmentState.agentPnL) to tell which step made the money"
    out.sort(key=lambda s: (-abs(s.pnl_change), s.index))
    return out, None
