"""The discrete action space: actions, response parsing, candidate enumeration and features.

`candidate_actions` and `action_features` are the whole interface a trainer needs: a linear policy
scores each candidate by `weights @ action_features(obs, a)`. Features are signed so that a
positive weight means "act with the signal" whichever side the action takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from .observation import MAX_ORDER_SIZE, Observation

HOLD_T = "HOLD"
OPEN_LONG = "OPEN_LONG"
OPEN_SHORT = "OPEN_SHORT"
CLOSE_POSITION = "CLOSE_POSITION"
BUY_SHARES = "BUY_SHARES"
ACTION_TYPES: tuple[str, ...] = (HOLD_T, OPEN_LONG, OPEN_SHORT, CLOSE_POSITION, BUY_SHARES)

STOCK_FEE = 0.001  # fraction of notional on open and on close
PREDICTION_FEE = 0.01  # fraction of the amount spent on shares
CANDIDATE_SIZES: tuple[float, ...] = (100.0, 250.0)
CANDIDATE_AMOUNTS: tuple[float, ...] = (100.0, 250.0)
SIZE_SCALE = 250.0
EXPOSURE_SCALE = 1000.0  # the starting balance; exposure features are in units of it


class Action(NamedTuple):
    action_type: str
    ticker: str | None = None
    size: float = 0.0
    market_id: str | None = None
    side: str | None = None  # "YES" | "NO" for BUY_SHARES
    amount: float = 0.0

    def parameters(self) -> dict[str, Any]:
        t = self.action_type
        if t == HOLD_T:
            return {}
        if t == BUY_SHARES:
            return {"marketId": self.market_id, "side": self.side, "amount": self.amount}
        if t == CLOSE_POSITION:
            return {"ticker": self.ticker}
        return {"ticker": self.ticker, "size": self.size}


HOLD = Action(HOLD_T)


def format_response(action: Action, reasoning: str, preface: str | None = None) -> str:
    """The response text an LLM agent would write for this action."""
    body = orjson.dumps(
        {
            "action": {"actionType": action.action_type, "parameters": action.parameters()},
            "reasoning": reasoning,
        }
    ).decode()
    return body if preface is None else f"{preface}\n{body}"


# -- parsing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ParseResult:
    """`action` is set on success; otherwise `error` says why. `action_type`/`parameters` keep
    what the response attempted, for recording a failed action."""

    action: Action | None
    reasoning: str
    error: str | None
    action_type: str | None = None
    parameters: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.action is not None


_DECODER = json.JSONDecoder()


def _extract_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Find the action JSON object in a response that may have prose or code fences around it."""
    stripped = text.strip()
    try:
        obj = orjson.loads(stripped)
        if isinstance(obj, dict):
            return obj, None
        return None, f"expected a JSON object, got {type(obj).__name__}"
    except orjson.JSONDecodeError as e:
        first_error = str(e)
    found: dict[str, Any] | None = None
    i = stripped.find("{")
    while i >= 0:
        try:
            obj, _ = _DECODER.raw_decode(stripped, i)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if "action" in obj or "actionType" in obj:
                return obj, None
            found = found or obj
        i = stripped.find("{", i + 1)
    if found is not None:
        return found, None
    if "{" not in stripped:
        return None, "no JSON object found in response"
    return None, f"invalid JSON: {first_error}"


def _number(params: dict[str, Any], key: str) -> tuple[float | None, str | None]:
    v = params.get(key)
    if isinstance(v, bool) or v is None:
        return None, f"bad parameters: '{key}' is required and must be a number"
    if isinstance(v, str):
        try:
            v = float(v.strip().lstrip("$"))
        except ValueError:
            return None, f"bad parameters: '{key}' must be a number, got {v!r}"
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None, f"bad parameters: '{key}' must be a finite number"
    if v <= 0 or v > MAX_ORDER_SIZE:
        return None, f"bad parameters: '{key}' must be in (0, {MAX_ORDER_SIZE:.0f}], got {v}"
    return float(v), None


def parse_response(text: str | None, obs: Observation | None = None) -> ParseResult:
    """Parse an agent's response into an Action, checking tickers and markets against `obs`."""
    if text is None or not text.strip():
        return ParseResult(None, "", "empty response")
    obj, err = _extract_object(text)
    if obj is None:
        return ParseResult(None, "", err)
    reasoning = obj.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, str) else ""
    raw = obj.get("action", obj)
    if isinstance(raw, str):
        at_raw, params = raw, obj.get("parameters", {})
    elif isinstance(raw, dict):
        at_raw = raw.get("actionType", raw.get("type"))
        params = raw.get("parameters", {k: v for k, v in raw.items() if k not in ("actionType", "type")})
    else:
        return ParseResult(None, reasoning, "missing 'action' object")
    if not isinstance(at_raw, str) or not at_raw:
        return ParseResult(None, reasoning, "missing actionType")
    at = at_raw.strip().upper()
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return ParseResult(None, reasoning, "bad parameters: 'parameters' must be an object", at, None)

    def fail(msg: str) -> ParseResult:
        return ParseResult(None, reasoning, msg, at, params)

    if at not in ACTION_TYPES:
        return fail(f"unknown actionType {at_raw!r} (expected one of {', '.join(ACTION_TYPES)})")
    if at == HOLD_T:
        return ParseResult(HOLD, reasoning, None, at, params)
    if at == BUY_SHARES:
        mid = params.get("marketId", params.get("market_id"))
        if not isinstance(mid, str) or not mid:
            return fail("bad parameters: 'marketId' is required")
        if obs is not None and obs.market(mid) is None:
            return fail(f"unknown or closed prediction market {mid!r}")
        side = params.get("side")
        if not isinstance(side, str) or side.strip().upper() not in ("YES", "NO"):
            return fail(f"bad parameters: 'side' must be YES or NO, got {side!r}")
        amount, e = _number(params, "amount")
        if e:
            return fail(e)
        return ParseResult(
            Action(BUY_SHARES, market_id=mid, side=side.strip().upper(), amount=amount),
            reasoning,
            None,
            at,
            params,
        )
    ticker = params.get("ticker")
    if not isinstance(ticker, str) or not ticker:
        return fail("bad parameters: 'ticker' is required")
    ticker = ticker.strip().upper()
    if obs is not None and obs.stock(ticker) is None:
        return fail(f"unknown ticker {ticker!r}")
    if at == CLOSE_POSITION:
        return ParseResult(Action(CLOSE_POSITION, ticker=ticker), reasoning, None, at, params)
    size, e = _number(params, "size")
    if e:
        return fail(e)
    return ParseResult(Action(at, ticker=ticker, size=size), reasoning, None, at, params)


# -- candidates and features -----------------------------------------------------------------

FEATURE_NAMES: tuple[str, ...] = (
    "is_hold",
    "is_open",
    "is_close",
    "is_buy",
    "signed_momentum",  # direction x 3-tick momentum z (a close counts as the opposite direction)
    "signed_trend",  # direction x 10-tick momentum z
    "signed_news",  # direction x fresh headline sentiment
    "size",  # order size / 250
    "momentum_x_size",
    "signed_pm_drift",  # side x YES price drift (YES +1, NO -1), drift / 0.02
    "pm_cheapness",  # (0.5 - price paid per share) x 4
    "close_pnl",  # unrealized P&L % of the position being closed / 2
    "exposure",  # gross exposure / 1000, + for orders that add exposure, - for closes
    "late",  # step / total steps for trades
)
FEATURE_DIM = len(FEATURE_NAMES)


def _clip(x: float, lim: float = 3.0) -> float:
    return lim if x > lim else (-lim if x < -lim else x)


def candidate_actions(obs: Observation) -> list[Action]:
    """Valid discrete actions for `obs` (bounded: 1 + 4 per ticker + 4 per open market)."""
    out = [HOLD]
    cash = obs.balance
    held = {p.ticker for p in obs.positions}
    for q in obs.stocks:
        if q.ticker in held:
            out.append(Action(CLOSE_POSITION, ticker=q.ticker))
            continue
        for size in CANDIDATE_SIZES:
            if cash >= size * (1.0 + STOCK_FEE):
                out.append(Action(OPEN_LONG, ticker=q.ticker, size=size))
                out.append(Action(OPEN_SHORT, ticker=q.ticker, size=size))
    for m in obs.markets:
        if m.ticks_left <= 0:
            continue
        for amount in CANDIDATE_AMOUNTS:
            if cash >= amount:
                out.append(Action(BUY_SHARES, market_id=m.market_id, side="YES", amount=amount))
                out.append(Action(BUY_SHARES, market_id=m.market_id, side="NO", amount=amount))
    return out


def _exposure(obs: Observation) -> float:
    return (sum(p.size for p in obs.positions) + sum(h.cost for h in obs.holdings)) / EXPOSURE_SCALE


def _features(obs: Observation, a: Action, exposure: float) -> list[float]:
    f = [0.0] * FEATURE_DIM
    t = a.action_type
    if t == HOLD_T:
        f[0] = 1.0
        return f
    late = obs.step / max(1, obs.total_steps)
    f[13] = late
    if t == BUY_SHARES:
        f[3] = 1.0
        m = obs.market(a.market_id or "")
        sign = 1.0 if a.side == "YES" else -1.0
        size = a.amount / SIZE_SCALE
        f[7] = size
        f[12] = exposure
        if m is not None:
            f[9] = _clip(sign * m.drift / 0.02)
            price = m.yes_price if sign > 0 else 1.0 - m.yes_price
            f[10] = _clip((0.5 - price) * 4.0, 2.0)
        return f
    q = obs.stock(a.ticker or "")
    if t == CLOSE_POSITION:
        f[2] = 1.0
        p = obs.position(a.ticker or "")
        d = 0.0
        size = 0.0
        if p is not None:
            d = 1.0 if p.side == "short" else -1.0  # closing a long is a sell
            size = p.size / SIZE_SCALE
            f[11] = _clip(p.unrealized_pnl / max(p.size, 1e-9) * 50.0)
        f[12] = -exposure
    else:
        f[1] = 1.0
        d = 1.0 if t == OPEN_LONG else -1.0
        size = a.size / SIZE_SCALE
        f[12] = exposure
    f[7] = size
    if q is not None:
        f[4] = _clip(d * q.momentum)
        f[5] = _clip(d * q.trend)
        f[6] = d * q.sentiment
        f[8] = f[4] * size
    return f


def action_features(obs: Observation, action: Action) -> np.ndarray:
    """Feature vector (FEATURE_DIM floats) describing `action` in the context of `obs`."""
    return np.asarray(_features(obs, action, _exposure(obs)), dtype=np.float64)


_HOLD_ROW = [1.0] + [0.0] * (FEATURE_DIM - 1)


def candidate_features(obs: Observation) -> tuple[list[Action], np.ndarray]:
    """All candidates (as `candidate_actions`) and their feature matrix (n x FEATURE_DIM).

    Same numbers as `action_features` for each candidate, computed per ticker and per market once
    (the offline trainer calls this for every recorded step)."""
    cands: list[Action] = [HOLD]
    rows: list[list[float]] = [_HOLD_ROW]
    exposure = _exposure(obs)
    late = obs.step / max(1, obs.total_steps)
    cash = obs.balance
    held = {p.ticker: p for p in obs.positions}
    for q in obs.stocks:
        mom = _clip(q.momentum)
        trend = _clip(q.trend)
        sent = q.sentiment
        p = held.get(q.ticker)
        if p is not None:
            d = 1.0 if p.side == "short" else -1.0
            size = p.size / SIZE_SCALE
            pnl = _clip(p.unrealized_pnl / max(p.size, 1e-9) * 50.0)
            cands.append(Action(CLOSE_POSITION, q.ticker))
            rows.append(
                [
                    0.0,
                    0.0,
                    1.0,
                    0.0,
                    d * mom,
                    d * trend,
                    d * sent,
                    size,
                    d * mom * size,
                    0.0,
                    0.0,
                    pnl,
                    -exposure,
                    late,
                ]
            )
            continue
        for amount in CANDIDATE_SIZES:
            if cash >= amount * (1.0 + STOCK_FEE):
                size = amount / SIZE_SCALE
                cands.append(Action(OPEN_LONG, q.ticker, amount))
                rows.append(
                    [0.0, 1.0, 0.0, 0.0, mom, trend, sent, size, mom * size, 0.0, 0.0, 0.0, exposure, late]
                )
                cands.append(Action(OPEN_SHORT, q.ticker, amount))
                rows.append(
                    [
                        0.0,
                        1.0,
                        0.0,
                        0.0,
                        -mom,
                        -trend,
                        -sent,
                        size,
                        -mom * size,
                        0.0,
                        0.0,
                        0.0,
                        exposure,
                        late,
                    ]
                )
    for m in obs.markets:
        if m.ticks_left <= 0:
            continue
        drift = _clip(m.drift / 0.02)
        cheap_yes = _clip((0.5 - m.yes_price) * 4.0, 2.0)
        cheap_no = _clip((0.5 - (1.0 - m.yes_price)) * 4.0, 2.0)
        for amount in CANDIDATE_AMOUNTS:
            if cash >= amount:
                size = amount / SIZE_SCALE
                cands.append(Action(BUY_SHARES, None, 0.0, m.market_id, "YES", amount))
                rows.append(
                    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, size, 0.0, drift, cheap_yes, 0.0, exposure, late]
                )
                cands.append(Action(BUY_SHARES, None, 0.0, m.market_id, "NO", amount))
                rows.append(
                    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, size, 0.0, -drift, cheap_no, 0.0, exposure, late]
                )
    return cands, np.asarray(rows, dtype=np.float64)
