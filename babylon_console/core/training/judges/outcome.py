"""The offline judge: deterministic scores from the ground truth and the recorded actions and P&L.

No network, no randomness, plain float arithmetic in a fixed order: the same window gives the same
scores bit for bit. Each trajectory gets five components in [0, 1], combined with fixed weights:

- **rank**: where its return stands among the other agents of the window (ties share the rank);
- **edge**: its return against the window median, squashed by `tanh` on a scale set by how much the
  market moved (mean absolute stock move) and how far the agents spread (MAD), so "slightly better"
  gives a small difference and "much better" a large one;
- **direction** (needs stock ground truth): share of its stock positions opened in the direction the
  stock then moved over the window, Laplace-smoothed so no trades reads as neutral 0.5;
- **bets** (needs resolved prediction markets): share of its prediction-market bets on the side that
  won, Laplace-smoothed the same way;
- **risk**: one minus penalties for maximum drawdown, oversized orders (share of equity) and failed
  actions (errors per step).

A component whose ground truth is missing is dropped and the weights renormalized, so a window with
no ground truth is scored on P&L and risk alone (and the explanation says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from babylon_console.core.game.rows import Trajectory, WindowGroundTruth

from .base import JudgeInput, TrajectoryScore, WindowJudgment

WEIGHTS: dict[str, float] = {"rank": 0.20, "edge": 0.25, "direction": 0.15, "bets": 0.15, "risk": 0.25}

DEFAULT_STARTING_BALANCE = 1000.0  # the game's starting balance, used when a row does not say
NEUTRAL_MOVE_PCT = 0.05  # a stock that moved less than this is neither up nor down
MIN_EDGE_SCALE_PCT = 0.25  # floor of the edge scale, in return percentage points
DRAWDOWN_FULL_PENALTY = 0.15  # a 15% fall from the peak within the hour takes the whole penalty
ORDER_FRACTION_OK = 0.25  # orders up to 25% of equity carry no penalty ...
ORDER_FRACTION_FULL_PENALTY = 0.75  # ... and 75% or more takes the whole penalty
ERROR_RATE_FULL_PENALTY = 0.25  # one failed action in four steps takes the whole penalty
RISK_WEIGHTS = (0.5, 0.25, 0.25)  # drawdown, order size, errors

_OPEN_TYPES = ("OPEN_LONG", "OPEN_SHORT")
_BUY_TYPE = "BUY_SHARES"
_HOLD_TYPES = ("HOLD", "")


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric text ("$250", "1e3"); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().lstrip("$").replace(",", ""))
        except ValueError:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _first(params: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if params.get(key) is not None:
            return params[key]
    return None


@dataclass(slots=True)
class AgentFacts:
    """What one trajectory did, extracted from its steps and columns."""

    trajectory_id: str
    steps: int
    attempted: int  # steps with a non-HOLD action
    trades: int  # successful non-HOLD actions
    start_balance: float | None
    pnl: float | None
    drawdown: float | None  # fraction of the peak
    max_order_fraction: float | None  # largest order as a share of equity at the time
    errors: int
    direction_right: int
    direction_total: int
    bets_right: int
    bets_total: int
    bets_unresolved: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.steps if self.steps else 0.0


def _start_balance(t: Trajectory) -> float | None:
    recorded = _number(t.metadata.get("startingBalance"))
    if recorded is not None and recorded > 0:
        return recorded
    if t.final_balance is not None and t.final_pnl is not None and t.final_balance - t.final_pnl > 0:
        return t.final_balance - t.final_pnl
    for step in t.steps:  # the balance seen before the first action
        env = step.environment_state
        if env is not None and env.agent_balance is not None:
            return env.agent_balance if env.agent_balance > 0 else None
    return None


def _final_pnl(t: Trajectory) -> float | None:
    if t.final_pnl is not None:
        return t.final_pnl
    recorded = _number(t.metrics.get("finalPnL"))
    if recorded is not None:
        return recorded
    for step in reversed(t.steps):
        env = step.environment_state
        if env is not None and env.agent_pnl is not None:
            return env.agent_pnl
    return None


def _drawdown(t: Trajectory, start: float | None, pnl: float | None) -> float | None:
    recorded = [
        v
        for v in (_number(t.metadata.get("maxDrawdown")), _number(t.reward_components.get("maxDrawdown")))
        if v is not None and 0.0 <= v <= 1.0
    ]
    series = [s.environment_state.agent_pnl for s in t.steps if s.environment_state is not None]
    values = [v for v in series if v is not None]
    if pnl is not None:
        values.append(pnl)
    computed: float | None = None
    if start is not None and values:
        peak = start
        worst = 0.0
        for v in values:
            equity = start + v
            if equity > peak:
                peak = equity
            elif peak > 0:
                worst = max(worst, (peak - equity) / peak)
        computed = worst
    candidates = recorded + ([computed] if computed is not None else [])
    return max(candidates) if candidates else None


def stock_moves(gt: WindowGroundTruth) -> dict[str, float]:
    """Ticker -> % change over the window."""
    moves: dict[str, float] = {}
    for row in gt.stocks:
        chg = _number(row.change_percent)
        if row.stock_ticker and chg is not None:
            moves[row.stock_ticker.strip().upper()] = chg
    return moves


def resolutions(gt: WindowGroundTruth) -> dict[str, str]:
    """Prediction market id -> the side that won (YES or NO), for the markets that resolved."""
    outcomes: dict[str, str] = {}
    for row in gt.predictions:
        if row.prediction_market_id and row.outcome and row.outcome.strip().upper() in ("YES", "NO"):
            outcomes[row.prediction_market_id] = row.outcome.strip().upper()
    return outcomes


def extract_facts(t: Trajectory, gt: WindowGroundTruth) -> AgentFacts:
    start = _start_balance(t)
    pnl = _final_pnl(t)
    moves = stock_moves(gt)
    outcomes = resolutions(gt)

    attempted = trades = failed = 0
    d_right = d_total = b_right = b_total = b_unresolved = 0
    max_fraction: float | None = None
    for step in t.steps:
        action = step.action
        if action is None:
            continue
        kind = (action.action_type or "").strip().upper()
        if action.success is False:
            failed += 1
        if kind in _HOLD_TYPES:
            continue
        attempted += 1
        if action.success is False:
            continue
        trades += 1
        params = action.parameters
        size = None
        if kind in _OPEN_TYPES:
            size = _number(_first(params, "size", "amount", "notional"))
            ticker = _first(params, "ticker", "symbol")
            move = moves.get(ticker.strip().upper()) if isinstance(ticker, str) else None
            if move is not None and abs(move) >= NEUTRAL_MOVE_PCT:
                d_total += 1
                if (move > 0) == (kind == "OPEN_LONG"):
                    d_right += 1
        elif kind == _BUY_TYPE:
            size = _number(_first(params, "amount", "size", "cost"))
            market = _first(params, "marketId", "market_id", "marketID", "predictionMarketId")
            side = _first(params, "side", "outcome")
            won = outcomes.get(market) if isinstance(market, str) else None
            if won is None or not isinstance(side, str):
                b_unresolved += 1
            else:
                b_total += 1
                if side.strip().upper() == won:
                    b_right += 1
        if size is not None and size > 0:
            env = step.environment_state
            equity = None
            if env is not None and start is not None and env.agent_pnl is not None:
                equity = start + env.agent_pnl
            elif env is not None and env.agent_balance is not None:
                equity = env.agent_balance
            elif start is not None:
                equity = start
            if equity is not None and equity > 0:
                fraction = size / equity
                max_fraction = fraction if max_fraction is None else max(max_fraction, fraction)
    recorded_errors = _number(t.metrics.get("errorCount"))
    errors = max(failed, int(recorded_errors) if recorded_errors is not None and recorded_errors >= 0 else 0)
    return AgentFacts(
        t.trajectory_id, len(t.steps), attempted, trades, start, pnl, _drawdown(t, start, pnl), max_fraction,
        errors, d_right, d_total, b_right, b_total, b_unresolved,
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


def _risk(f: AgentFacts) -> float:
    dd_pen = _clamp01((f.drawdown or 0.0) / DRAWDOWN_FULL_PENALTY)
    excess = (f.max_order_fraction or 0.0) - ORDER_FRACTION_OK
    size_pen = _clamp01(excess / (ORDER_FRACTION_FULL_PENALTY - ORDER_FRACTION_OK))
    err_pen = _clamp01(f.error_rate / ERROR_RATE_FULL_PENALTY)
    w_dd, w_size, w_err = RISK_WEIGHTS
    return _clamp01(1.0 - (w_dd * dd_pen + w_size * size_pen + w_err * err_pen))


def _money(x: float) -> str:
    return f"{x:+,.2f}"


def _explain(
    f: AgentFacts,
    ret: float | None,
    median_pnl: float | None,
    place: int,
    n: int,
    gt: WindowGroundTruth,
    market_note: str,
    score: float,
) -> str:
    parts: list[str] = []
    if gt.empty:
        parts.append("No ground truth for this window: scored on P&L and risk only.")
    if f.pnl is None:
        parts.append(f"P&L not recorded (treated as the window median); rank {place}/{n}.")
    else:
        pct = f" ({ret:+.2f}%)" if ret is not None and f.start_balance is not None else ""
        versus = f" vs window median {_money(median_pnl)}" if median_pnl is not None else ""
        parts.append(f"P&L {_money(f.pnl)}{pct}{versus}, rank {place}/{n}{market_note}.")
    if f.steps == 0:
        parts.append("No steps recorded.")
    elif f.attempted == 0:
        parts.append(f"No trades: held for all {f.steps} steps.")
    else:
        facts: list[str] = []
        if f.direction_total:
            facts.append(f"{f.direction_right}/{f.direction_total} stock positions with the market's move")
        if gt.predictions:
            if f.bets_total:
                facts.append(f"{f.bets_right}/{f.bets_total} prediction bets correct")
            elif not f.bets_unresolved:
                facts.append("no prediction bets")
        if f.bets_unresolved:
            facts.append(f"{f.bets_unresolved} bet(s) on markets not resolved in the window")
        facts.insert(0, f"{f.trades} trade(s) of {f.attempted} attempted")
        parts.append("; ".join(facts) + ".")
    risk: list[str] = []
    if f.drawdown is not None:
        risk.append(f"max drawdown {f.drawdown * 100:.1f}%")
    if f.max_order_fraction is not None:
        risk.append(f"largest order {f.max_order_fraction * 100:.0f}% of equity")
    if f.steps:
        risk.append(f"{f.errors} failed action(s) in {f.steps} steps")
    if risk:
        parts.append("Risk: " + ", ".join(risk) + ".")
    parts.append(f"Score {score:.3f}.")
    return " ".join(parts)


def score_group(trajectories: Sequence[Trajectory], gt: WindowGroundTruth) -> list[TrajectoryScore]:
    """Relative, deterministic scores for one window's trajectories (in input order)."""
    n = len(trajectories)
    if n == 0:
        return []
    facts = [extract_facts(t, gt) for t in trajectories]
    known_starts = [f.start_balance for f in facts if f.start_balance is not None]
    fallback_start = _median(known_starts) if known_starts else DEFAULT_STARTING_BALANCE

    # Return in percent of the starting balance; an unknown P&L sits at the median (neutral).
    rets: list[float | None] = []
    for f in facts:
        if f.pnl is None:
            rets.append(None)
        else:
            base = f.start_balance if f.start_balance is not None else fallback_start
            rets.append(f.pnl / base * 100.0)
    known = [r for r in rets if r is not None]
    median_ret = _median(known) if known else 0.0
    perf = [median_ret if r is None else r for r in rets]
    pnls = [f.pnl for f in facts if f.pnl is not None]
    median_pnl = _median(pnls) if pnls else None

    moves = sorted(
        (
            (row.stock_ticker or "?", float(row.change_percent))
            for row in gt.stocks
            if row.change_percent is not None
        ),
        key=lambda m: (-abs(m[1]), m[0]),
    )
    mean_abs_move = math.fsum(abs(m) for _, m in moves) / len(moves) if moves else 0.0
    mad = _median([abs(p - median_ret) for p in perf]) * 1.4826
    scale = max(MIN_EDGE_SCALE_PCT, mean_abs_move, mad)
    market_note = ""
    if moves:
        avg = math.fsum(m for _, m in moves) / len(moves)
        market_note = f"; market avg move {avg:+.2f}% ({moves[0][0]} {moves[0][1]:+.2f}% largest)"

    weights = dict(WEIGHTS)
    if not gt.stocks:
        del weights["direction"]
    if not gt.predictions:
        del weights["bets"]
    total_w = math.fsum(weights.values())

    out: list[TrajectoryScore] = []
    for i, f in enumerate(facts):
        p = perf[i]
        below = sum(1 for j, q in enumerate(perf) if j != i and q < p)
        ties = sum(1 for j, q in enumerate(perf) if j != i and q == p)
        parts = {
            "rank": 0.5 if n == 1 else (below + 0.5 * ties) / (n - 1),
            "edge": 0.5 + 0.5 * math.tanh((p - median_ret) / scale),
            "direction": (f.direction_right + 1.0) / (f.direction_total + 2.0),
            "bets": (f.bets_right + 1.0) / (f.bets_total + 2.0),
            "risk": _risk(f),
        }
        raw = math.fsum(weights[k] * parts[k] for k in WEIGHTS if k in weights) / total_w
        score = round(_clamp01(raw), 6)
        place = 1 + sum(1 for q in perf if q > p)
        text = _explain(f, rets[i], median_pnl, place, n, gt, market_note, score)
        out.append(TrajectoryScore(trajectory_id=f.trajectory_id, score=score, explanation=text))
    return out


# -- one answer to one prompt (held-out evaluation of endpoint models, core/checkpoints/prompt_eval.py) ------

ANSWER_RIGHT, ANSWER_NEUTRAL, ANSWER_WRONG, ANSWER_UNUSABLE = 1.0, 0.5, 0.0, 0.0
ANSWER_SIZE_PENALTY = 0.25  # taken off in full by an order of ORDER_FRACTION_FULL_PENALTY of the cash


@dataclass(frozen=True, slots=True)
class AnswerScore:
    score: float  # in [0, 1]
    explanation: str


def _call(move: float | None, with_market: bool | None, what: str) -> tuple[float, str]:
    """Right, wrong or neutral for a position that profits when the price goes up (`with_market`
    True), down (False), or a call the ground truth cannot settle (None)."""
    if move is None or with_market is None:
        return ANSWER_NEUTRAL, f"{what}: no ground truth for it in this window"
    if abs(move) < NEUTRAL_MOVE_PCT:
        return ANSWER_NEUTRAL, f"{what}: the price barely moved ({move:+.2f}%)"
    right = (move > 0) == with_market
    return (ANSWER_RIGHT if right else ANSWER_WRONG), f"{what}: the price then moved {move:+.2f}%"


def score_answer(text: str | None, user_prompt: str, gt: WindowGroundTruth) -> AnswerScore:
    """The outcome judge's per-action scoring of one answer to one recorded prompt, against what the
    window's markets then did: an open or close in the direction the stock moved, or a bet on the side
    that resolved, scores 1; against it 0; a hold, a move under NEUTRAL_MOVE_PCT or a call the ground
    truth cannot settle 0.5; an answer that is not a valid action 0. An order larger than
    ORDER_FRACTION_OK of the cash shown in the prompt loses up to ANSWER_SIZE_PENALTY."""
    from babylon_console.core.sim.actions import BUY_SHARES as BUY
    from babylon_console.core.sim.actions import CLOSE_POSITION, HOLD_T, OPEN_LONG, parse_response
    from babylon_console.core.sim.observation import Observation

    obs = Observation.from_prompt(user_prompt)
    parsed = parse_response(text, obs)
    action = parsed.action
    if action is None:
        return AnswerScore(ANSWER_UNUSABLE, f"unusable answer: {parsed.error or 'no action'}")
    if action.action_type == HOLD_T:
        return AnswerScore(ANSWER_NEUTRAL, "HOLD")
    moves = stock_moves(gt)
    size = 0.0
    if action.action_type == BUY:
        won = resolutions(gt).get(action.market_id or "")
        size = action.amount
        what = f"BUY_SHARES {action.side} on {action.market_id}"
        if won is None:
            score, why = ANSWER_NEUTRAL, f"{what}: the market did not resolve in this window"
        else:
            score = ANSWER_RIGHT if action.side == won else ANSWER_WRONG
            why = f"{what}: it resolved {won}"
    elif action.action_type == CLOSE_POSITION:
        held = obs.position(action.ticker or "") if obs is not None else None
        # closing a long is right when the price then fell, closing a short when it rose
        score, why = _call(moves.get(action.ticker or ""), None if held is None else held.side != "long",
                           f"CLOSE_POSITION {action.ticker}" + ("" if held is None else f" ({held.side})"))
    else:
        size = action.size
        score, why = _call(moves.get(action.ticker or ""), action.action_type == OPEN_LONG,
                           f"{action.action_type} {action.ticker}")
    if size > 0 and obs is not None and obs.balance > 0:
        excess = size / obs.balance - ORDER_FRACTION_OK
        penalty = ANSWER_SIZE_PENALTY * _clamp01(excess / (ORDER_FRACTION_FULL_PENALTY - ORDER_FRACTION_OK))
        if penalty > 0:
            score = _clamp01(score - penalty)
            why += f"; order of {size / obs.balance:.0%} of the cash (-{penalty:.2f})"
    return AnswerScore(round(score, 6), why)


class OutcomeJudge:
    """Offline, deterministic judge (DESIGN 1.4 `outcome`); never touches the network."""

    name = "outcome"
    scores_alone = True  # an answer's score does not depend on the others (held-out evaluation)

    async def judge(self, item: JudgeInput) -> WindowJudgment:
        started = time.perf_counter()
        scores = score_group(item.trajectories, item.ground_truth)
        return WindowJudgment(
            window_id=item.window_id,
            judge=self.name,
            judge_model=None,
            scores=scores,
            cost_usd=0.0,
            attempts=1,
            duration_s=time.perf_counter() - started,
        )

    async def judge_answers(self, window_id: str, gt: WindowGroundTruth, prompt: list[dict[str, Any]],
                            answers: Sequence[str]) -> list[AnswerScore]:
        """Each answer to the same prompt scored on its own (`score_answer`); the order does not matter."""
        user = next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
        return [score_answer(a, str(user), gt) for a in answers]
