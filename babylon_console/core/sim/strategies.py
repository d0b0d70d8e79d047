"""Scripted agents: momentum, contrarian, cautious, reckless, news-driven and random.

Each reads the same Observation an LLM would and writes the reasoning and response an LLM agent
with that persona would plausibly write. They generate most of the simulated data, so they are
cheap: no candidate enumeration, one random draw per step, responses assembled from pre-escaped
pieces, and constant HOLD decisions built once.
"""

from __future__ import annotations

import numpy as np
import orjson
from numpy.random import Generator

from .actions import BUY_SHARES, CLOSE_POSITION, HOLD, OPEN_LONG, OPEN_SHORT, STOCK_FEE, Action
from .market import PredictionQuote, StockQuote
from .observation import Observation
from .policy import Decision


def _params_json(a: Action) -> str:
    # Tickers and market ids come from the market (validated names), amounts are whole dollars.
    t = a.action_type
    if t == BUY_SHARES:
        return f'{{"marketId":"{a.market_id}","side":"{a.side}","amount":{a.amount:.0f}}}'
    if t == CLOSE_POSITION:
        return f'{{"ticker":"{a.ticker}"}}'
    return f'{{"ticker":"{a.ticker}","size":{a.size:.0f}}}'


def _decision(action: Action, reasoning: str, thought: str | None = None) -> Decision:
    pj = "{}" if action is HOLD else _params_json(action)
    rj = orjson.dumps(reasoning).decode()
    response = f'{{"action":{{"actionType":"{action.action_type}","parameters":{pj}}},"reasoning":{rj}}}'
    return Decision(action, reasoning, response, thought, pj, rj)


def _strongest(stocks: tuple[StockQuote, ...]) -> StockQuote:
    best = stocks[0]
    top = abs(best.momentum)
    for q in stocks:
        m = q.momentum if q.momentum >= 0 else -q.momentum
        if m > top:
            best, top = q, m
    return best


def _strongest_drift(markets: tuple[PredictionQuote, ...]) -> PredictionQuote | None:
    best = None
    for m in markets:
        if m.ticks_left > 1 and (best is None or abs(m.drift) > abs(best.drift)):
            best = m
    return best


def _quote(obs: Observation, ticker: str) -> StockQuote | None:
    for q in obs.stocks:
        if q.ticker == ticker:
            return q
    return None


class ScriptedStrategy:
    """Base of the scripted agents. Per-agent parameters make agents of one strategy differ (a
    group of identical trajectories would teach a relative judge nothing): `size_scale` scales
    order sizes, `threshold_scale` the signal strength needed to act, `distraction` is the chance
    of sitting a step out."""

    name = "scripted"
    persona = "random"
    thought_rate = 0.06  # share of steps with a separate "reasoning" call before the action call

    def __init__(
        self, size_scale: float = 1.0, threshold_scale: float = 1.0, distraction: float = 0.0
    ) -> None:
        self.size_scale = float(size_scale)
        self.threshold_scale = float(threshold_scale)
        self.distraction = float(distraction)
        self.model = f"sim/{self.name}"
        self._distracted = _decision(HOLD, "Sitting this step out to re-check my numbers.")

    def params(self) -> dict[str, float]:
        return {
            "sizeScale": round(self.size_scale, 3),
            "thresholdScale": round(self.threshold_scale, 3),
            "distraction": round(self.distraction, 3),
        }

    def decide(self, obs: Observation, rng: Generator) -> Decision:
        return self.decide_u(obs, rng.random())

    def decide_u(self, obs: Observation, u: float) -> Decision:
        """Decide from one uniform draw `u` (the simulator pre-draws them for a whole window)."""
        thought = self._thought(obs, u)
        u2 = _next_uniform(u)
        if u2 < self.distraction:
            return (
                self._distracted if thought is None else _decision(HOLD, self._distracted.reasoning, thought)
            )
        return self._decide(obs, thought, _next_uniform(u2))

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        raise NotImplementedError

    def _size(self, base: float) -> float:
        return float(max(10, round(base * self.size_scale)))

    def _hold(self, hold: Decision, thought: str | None) -> Decision:
        return hold if thought is None else _decision(HOLD, hold.reasoning, thought)

    def _thought(self, obs: Observation, u: float) -> str | None:
        if u >= self.thought_rate:
            return None
        q = _strongest(obs.stocks)
        return (
            f"Scanning the board at {obs.clock}: {q.ticker} is the biggest mover ({q.change_pct:+.2f}% over "
            f"three steps, momentum {q.momentum:+.1f}). P&L so far {obs.pnl:+.2f} with "
            f"{len(obs.positions)} open positions."
        )


def _next_uniform(u: float) -> float:
    """Another uniform from the same draw: the low-order digits of u are independent of u < rate."""
    return (u * 7919.0) % 1.0


class MomentumStrategy(ScriptedStrategy):
    name = "momentum"
    persona = "momentum"
    max_positions = 2
    _HOLD = _decision(HOLD, "No clean trend on the board and no market drifting hard. Holding.")

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        for p in obs.positions:
            q = _quote(obs, p.ticker)
            d = 1.0 if p.side == "long" else -1.0
            if q is not None and d * q.momentum < -0.3:
                return _decision(
                    Action(CLOSE_POSITION, p.ticker),
                    f"{p.ticker} momentum flipped to {q.momentum:+.1f} against my {p.side}; taking it off.",
                    thought,
                )
        q = _strongest(obs.stocks)
        th = self.threshold_scale
        if (
            abs(q.momentum) >= th
            and len(obs.positions) < self.max_positions
            and not any(p.ticker == q.ticker for p in obs.positions)
        ):
            size = self._size(200.0 if abs(q.momentum) >= 2.0 * th else 120.0)
            if obs.balance >= size * (1.0 + STOCK_FEE):
                long = q.momentum > 0
                return _decision(
                    Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
                    f"{q.ticker} is trending {'up' if long else 'down'} ({q.change_pct:+.2f}%, momentum "
                    f"{q.momentum:+.1f}); riding it with ${size:.0f}.",
                    thought,
                )
        m = _strongest_drift(obs.markets)
        amount = self._size(60.0)
        if (
            m is not None
            and abs(m.drift) >= 0.03 * th
            and obs.balance >= amount
            and len(obs.holdings) < 2
            and not any(h.market_id == m.market_id for h in obs.holdings)
        ):
            side = "YES" if m.drift > 0 else "NO"
            return _decision(
                Action(BUY_SHARES, None, 0.0, m.market_id, side, amount),
                f"YES on '{m.question}' moved {m.drift:+.3f} to {m.yes_price:.3f}; "
                f"following the flow with {side}.",
                thought,
            )
        return self._hold(self._HOLD, thought)


class ContrarianStrategy(ScriptedStrategy):
    name = "contrarian"
    persona = "contrarian"
    _HOLD = _decision(HOLD, "Nothing is stretched enough to fade. Holding.")

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        for p in obs.positions:
            q = _quote(obs, p.ticker)
            d = 1.0 if p.side == "long" else -1.0
            if q is not None and (d * q.momentum > 0.5 or p.unrealized_pnl < -0.03 * p.size):
                why = "the snap-back came" if d * q.momentum > 0.5 else "the move kept running against me"
                return _decision(Action(CLOSE_POSITION, p.ticker), f"Closing {p.ticker}: {why}.", thought)
        q = _strongest(obs.stocks)
        size = self._size(150.0)
        if (
            abs(q.momentum) >= 1.5 * self.threshold_scale
            and obs.balance >= size * (1.0 + STOCK_FEE)
            and not any(p.ticker == q.ticker for p in obs.positions)
        ):
            long = q.momentum < 0
            return _decision(
                Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
                f"{q.ticker} {'dropped' if long else 'ran'} {q.change_pct:+.2f}% in three steps; that looks "
                f"overdone, fading it with a {'long' if long else 'short'}.",
                thought,
            )
        m = _strongest_drift(obs.markets)
        amount = self._size(25.0)
        if m is not None and abs(m.drift) >= 0.1 and obs.balance >= amount:
            side = "NO" if m.drift > 0 else "YES"
            return _decision(
                Action(BUY_SHARES, None, 0.0, m.market_id, side, amount),
                f"The crowd pushed '{m.question}' to {m.yes_price:.3f}; taking the other side with {side}.",
                thought,
            )
        return self._hold(self._HOLD, thought)


class CautiousStrategy(ScriptedStrategy):
    name = "cautious"
    persona = "cautious"
    thought_rate = 0.1
    max_exposure = 150.0
    _HOLD_IDLE = _decision(HOLD, "Preserving capital; no setup is strong enough to risk money on.")
    _HOLD_MIXED = _decision(HOLD, "Signals are mixed. Holding.")
    _HOLD_LIMIT = _decision(HOLD, "I already have as much at risk as I allow myself. Holding.")

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        for p in obs.positions:
            if p.unrealized_pnl < -0.004 * p.size:
                return _decision(
                    Action(CLOSE_POSITION, p.ticker),
                    f"{p.ticker} is {p.unrealized_pnl:+.2f} against me; cutting the loser early.",
                    thought,
                )
            if p.unrealized_pnl > 0.012 * p.size:
                return _decision(
                    Action(CLOSE_POSITION, p.ticker),
                    f"Locking in {p.unrealized_pnl:+.2f} on {p.ticker}.",
                    thought,
                )
        if u < 0.6:
            return self._hold(self._HOLD_IDLE, thought)
        if sum(p.size for p in obs.positions) + sum(h.cost for h in obs.holdings) >= self.max_exposure:
            return self._hold(self._HOLD_LIMIT, thought)
        q = _strongest(obs.stocks)
        th = self.threshold_scale
        if (
            abs(q.momentum) >= 1.5 * th
            and q.momentum * q.trend > 0
            and abs(q.trend) >= th
            and not any(p.ticker == q.ticker for p in obs.positions)
        ):
            long = q.momentum > 0
            size = self._size(50.0)
            return _decision(
                Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
                f"{q.ticker} short and long trends agree ({q.momentum:+.1f}/{q.trend:+.1f}); "
                f"a small ${size:.0f} {'long' if long else 'short'}.",
                thought,
            )
        m = _strongest_drift(obs.markets)
        amount = self._size(20.0)
        if m is not None and abs(m.drift) >= 0.05 and m.ticks_left > 8 and obs.balance >= amount:
            side = "YES" if m.drift > 0 else "NO"
            return _decision(
                Action(BUY_SHARES, None, 0.0, m.market_id, side, amount),
                f"Small {side} on '{m.question}': the price keeps moving that way.",
                thought,
            )
        return self._hold(self._HOLD_MIXED, thought)


class RecklessStrategy(ScriptedStrategy):
    name = "reckless"
    persona = "reckless"
    thought_rate = 0.02

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        if obs.positions and (obs.balance < 200.0 or u < 0.25):
            p = obs.positions[int(u * 1000) % len(obs.positions)]
            return _decision(
                Action(CLOSE_POSITION, p.ticker),
                f"Freeing up cash from {p.ticker} ({p.unrealized_pnl:+.2f}) for the next big swing.",
                thought,
            )
        if u < 0.45 and obs.markets:
            m = obs.markets[int(u * 997) % len(obs.markets)]
            side = "YES" if m.yes_price < 0.5 else "NO"  # the longshot: the biggest payout
            price = m.yes_price if side == "YES" else 1.0 - m.yes_price
            amount = float(min(self._size(300.0), max(10, int(obs.balance * 0.5))))
            return _decision(
                Action(BUY_SHARES, None, 0.0, m.market_id, side, amount),
                f"{side} on '{m.question}' at {price:.2f} pays {1.0 / price:.1f}x. Going big: ${amount:.0f}.",
                thought,
            )
        # Chases the last move on some ticker with more than the account may allow.
        q = obs.stocks[int(u * 10007) % len(obs.stocks)]
        long = q.change_pct >= 0
        size = 500.0 if u < 0.8 else 400.0
        return _decision(
            Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
            f"{q.ticker} {q.change_pct:+.2f}%: all in on the {'long' if long else 'short'} side, "
            f"${size:.0f}.",
            thought,
        )


class NewsStrategy(ScriptedStrategy):
    name = "news"
    persona = "news"
    thought_rate = 0.03
    _HOLD = _decision(HOLD, "No fresh headlines worth trading. Waiting for news.")

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        for p in obs.positions:
            q = _quote(obs, p.ticker)
            if q is None:
                continue
            d = 1.0 if p.side == "long" else -1.0
            if q.headline and d * q.sentiment < 0:
                return _decision(
                    Action(CLOSE_POSITION, p.ticker),
                    f"New headline cuts against my {p.side}: '{q.headline}'. Out.",
                    thought,
                )
            if not q.headline and (d * q.momentum < 0.3 or p.unrealized_pnl < -0.015 * p.size):
                return _decision(
                    Action(CLOSE_POSITION, p.ticker),
                    f"The {p.ticker} story is priced in now (momentum {q.momentum:+.1f}); closing.",
                    thought,
                )
        size = self._size(250.0)
        for q in obs.stocks:
            if (
                q.headline
                and abs(q.sentiment) >= 0.5 * self.threshold_scale
                and obs.balance >= size * (1.0 + STOCK_FEE)
                and not any(p.ticker == q.ticker for p in obs.positions)
            ):
                long = q.sentiment > 0
                analysis = (
                    f"Headline on {q.ticker}: '{q.headline}'. Sentiment {q.sentiment:+.2f}; the price "
                    f"already moved {q.change_pct:+.2f}%. News like this usually keeps drifting for a few "
                    "steps."
                )
                return _decision(
                    Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
                    f"Trading the headline '{q.headline}': {'long' if long else 'short'} {q.ticker} "
                    f"${size:.0f}.",
                    analysis,
                )
        return self._hold(self._HOLD, thought)


class RandomStrategy(ScriptedStrategy):
    name = "random"
    persona = "random"
    thought_rate = 0.04
    _HOLD = _decision(HOLD, "Not feeling it this round.")

    def _decide(self, obs: Observation, thought: str | None, u: float) -> Decision:
        if u < 0.4:
            return self._hold(self._HOLD, thought)
        k = int(u * 100003)
        if u < 0.5 and obs.positions:
            p = obs.positions[k % len(obs.positions)]
            return _decision(Action(CLOSE_POSITION, p.ticker), f"Closing {p.ticker} on a hunch.", thought)
        if u < 0.75 or not obs.markets:
            q = obs.stocks[k % len(obs.stocks)]
            long = (k >> 4) % 2 == 0
            size = self._size(50.0 * (1 + k % 6))
            return _decision(
                Action(OPEN_LONG if long else OPEN_SHORT, q.ticker, size),
                f"Gut says {q.ticker} goes {'up' if long else 'down'}; ${size:.0f}.",
                thought,
            )
        m = obs.markets[k % len(obs.markets)]
        side = "YES" if (k >> 3) % 2 == 0 else "NO"
        amount = self._size(25.0 * (1 + k % 4))
        return _decision(
            Action(BUY_SHARES, None, 0.0, m.market_id, side, amount),
            f"{side} on '{m.question}' feels right.",
            thought,
        )


STRATEGIES: dict[str, type[ScriptedStrategy]] = {
    cls.name: cls
    for cls in (
        MomentumStrategy,
        ContrarianStrategy,
        CautiousStrategy,
        RecklessStrategy,
        NewsStrategy,
        RandomStrategy,
    )
}
DEFAULT_STRATEGY_ORDER: tuple[str, ...] = ("momentum", "contrarian", "cautious", "reckless", "news", "random")


def make_strategy(name: str, seed: int | None = None, index: int = 0) -> ScriptedStrategy:
    """A scripted strategy; with a seed, its per-agent parameters are drawn from (seed, index)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    if seed is None:
        return cls()
    rng = np.random.default_rng([seed, 4, index])
    return cls(
        size_scale=float(rng.uniform(0.7, 1.3)),
        threshold_scale=float(rng.uniform(0.8, 1.25)),
        distraction=float(rng.uniform(0.02, 0.15)),
    )
