"""Cash, stock perp positions and prediction shares of one agent over one window.

Perps post their size as margin (1x), pay STOCK_FEE on open and close, and are marked to market.
Prediction shares cost the side's price plus PREDICTION_FEE and pay 1.0 each on the winning side.
Plain lists and dicts: this runs once per step per agent in the generation hot path.
"""

from __future__ import annotations

from typing import Any

from .actions import BUY_SHARES, CLOSE_POSITION, HOLD_T, OPEN_LONG, PREDICTION_FEE, STOCK_FEE, Action
from .observation import HoldingView, PositionView


def cents(x: float) -> float:
    """Round to 2 decimals (cheaper than round(x, 2) in the hot path; ties may differ)."""
    return int(x * 100.0 + (0.5 if x >= 0.0 else -0.5)) / 100.0


def micro(x: float) -> float:
    """Round to 6 decimals, as above."""
    return int(x * 1e6 + (0.5 if x >= 0.0 else -0.5)) / 1e6


REWARD_SCALE = 100.0  # step reward = percent of the starting balance gained in the step
REWARD_CLIP = 10.0


class Portfolio:
    __slots__ = (
        "cash",
        "errors",
        "holdings",
        "max_drawdown",
        "peak",
        "positions",
        "predictions_resolved",
        "predictions_won",
        "start",
        "trades",
    )

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.cash = cents(start)  # cash is kept in cents
        self.positions: dict[str, list[float]] = {}  # ticker -> [direction +1/-1, size, entry price]
        self.holdings: dict[tuple[str, str], list[float]] = {}  # (market id, side) -> [shares, cost]
        self.trades = 0
        self.errors = 0
        self.peak = start
        self.max_drawdown = 0.0  # largest fall from a peak value, as a fraction of that peak
        self.predictions_resolved = 0
        self.predictions_won = 0

    def value(self, prices: dict[str, float], yes: dict[str, float]) -> float:
        v = self.cash
        for tk, (d, size, entry) in self.positions.items():
            v += size + d * size * (prices[tk] / entry - 1.0)
        for (mid, side), (shares, _cost) in self.holdings.items():
            y = yes.get(mid)
            if y is not None:
                v += shares * (y if side == "YES" else 1.0 - y)
        return v

    def execute(
        self, action: Action, prices: dict[str, float], yes: dict[str, float]
    ) -> tuple[bool, dict[str, Any] | None, str | None]:
        """Apply an action at the current prices: (success, result, error)."""
        t = action.action_type
        if t == HOLD_T:
            return True, None, None
        if t == BUY_SHARES:
            mid = action.market_id
            y = yes.get(mid)  # type: ignore[arg-type]
            if y is None:
                return self._fail(f"prediction market {mid} is not open")
            amount = action.amount
            if amount > self.cash + 1e-9:
                return self._fail(f"insufficient balance: {amount:.2f} needed, {self.cash:.2f} available")
            price = y if action.side == "YES" else 1.0 - y
            shares = amount * (1.0 - PREDICTION_FEE) / price
            self.cash = cents(self.cash - amount)
            key = (mid, action.side)
            h = self.holdings.get(key)  # type: ignore[arg-type]
            if h is None:
                self.holdings[key] = [shares, amount]  # type: ignore[index]
            else:
                h[0] += shares
                h[1] += amount
            self.trades += 1
            return (
                True,
                {
                    "marketId": mid,
                    "side": action.side,
                    "shares": int(shares * 1e4) / 1e4,
                    "avgPrice": price,
                    "cost": amount,
                },
                None,
            )
        tk = action.ticker
        price = prices.get(tk)  # type: ignore[arg-type]
        if price is None:
            return self._fail(f"unknown ticker {tk}")
        if t == CLOSE_POSITION:
            pos = self.positions.pop(tk, None)  # type: ignore[arg-type]
            if pos is None:
                return self._fail(f"no open position on {tk}")
            d, size, entry = pos
            pnl = d * size * (price / entry - 1.0) - size * STOCK_FEE
            self.cash = cents(self.cash + size + pnl)
            self.trades += 1
            return (
                True,
                {
                    "ticker": tk,
                    "side": "long" if d > 0 else "short",
                    "size": size,
                    "entryPrice": entry,
                    "exitPrice": price,
                    "realizedPnL": cents(pnl),
                },
                None,
            )
        if tk in self.positions:
            return self._fail(f"position already open on {tk}; close it first")
        size = action.size
        cost = size * (1.0 + STOCK_FEE)
        if cost > self.cash + 1e-9:
            return self._fail(f"insufficient balance: {cost:.2f} needed, {self.cash:.2f} available")
        d = 1.0 if t == OPEN_LONG else -1.0
        self.cash = cents(self.cash - cost)
        self.positions[tk] = [d, size, price]  # type: ignore[index]
        self.trades += 1
        return (
            True,
            {
                "ticker": tk,
                "side": "long" if d > 0 else "short",
                "size": size,
                "entryPrice": price,
                "fee": cents(size * STOCK_FEE),
            },
            None,
        )

    def _fail(self, error: str) -> tuple[bool, None, str]:
        self.errors += 1
        return False, None, error

    def settle(self, resolutions: list[tuple[str, bool]]) -> None:
        """Pay out shares of markets that resolved: 1.0 per share on the winning side."""
        for mid, yes_won in resolutions:
            for side in ("YES", "NO"):
                h = self.holdings.pop((mid, side), None)
                if h is None:
                    continue
                won = (side == "YES") == yes_won
                if won:
                    self.cash = cents(self.cash + h[0])
                    self.predictions_won += 1
                self.predictions_resolved += 1

    def mark(self, value: float) -> None:
        """Track the peak and the maximum drawdown after each tick."""
        if value > self.peak:
            self.peak = value
        elif self.peak > 0:
            dd = (self.peak - value) / self.peak
            if dd > self.max_drawdown:
                self.max_drawdown = dd

    def position_views(self, prices: dict[str, float]) -> tuple[PositionView, ...]:
        out = []
        for tk, (d, size, entry) in self.positions.items():
            pnl = d * size * (prices[tk] / entry - 1.0)
            # Cents; "+ 0.0" turns -0.0 into 0.0 so prompts never show "-0.00".
            pnl = int(pnl * 100.0 + (0.5 if pnl >= 0.0 else -0.5)) / 100.0 + 0.0
            out.append(PositionView(tk, "long" if d > 0.0 else "short", size, entry, pnl))
        return tuple(out)

    def holding_views(self) -> tuple[HoldingView, ...]:
        return tuple(
            [
                HoldingView(mid, side, int(s * 1e4 + 0.5) / 1e4, c)
                for (mid, side), (s, c) in self.holdings.items()
            ]
        )


def step_reward(before: float, after: float, start: float) -> float:
    r = (after - before) / start * REWARD_SCALE
    return REWARD_CLIP if r > REWARD_CLIP else (-REWARD_CLIP if r < -REWARD_CLIP else r)
