"""What an agent sees at a step, and the prompts that carry it.

The user prompt is short readable text plus one `MARKET_STATE: {...}` line holding the whole
observation as compact JSON, so `Observation.from_prompt` can rebuild it from recorded data (the
offline trainer reads observations back out of `llm_call_logs.userPrompt`). The shared market part
of a prompt is rendered once per tick (`TickFragments`) and reused by every agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .market import PredictionQuote, StockQuote

STATE_PREFIX = "MARKET_STATE: "
MAX_ORDER_SIZE = 500.0  # largest stock size or prediction amount, in dollars

_RESPONSE_FORMAT = 'Reply with JSON: {"action":{"actionType":...,"parameters":{...}},"reasoning":"..."}'

PERSONAS: dict[str, str] = {
    "momentum": "You ride trends: buy strength, short weakness, and exit when momentum fades.",
    "contrarian": "You fade sharp moves, betting prices snap back toward their recent average.",
    "cautious": "You protect capital first: small sizes, frequent holds, and you cut losers quickly.",
    "reckless": "You swing big: maximum size, constant action, little hesitation.",
    "news": "You trade headlines: act fast on fresh news and exit once it is priced in.",
    "random": "You follow your gut; your choices are hard to predict.",
    "linear": "You are a trained trading policy; weigh momentum, news and market drift.",
}


@dataclass(slots=True)
class PositionView:
    ticker: str
    side: str  # "long" | "short"
    size: float
    entry_price: float
    unrealized_pnl: float


@dataclass(slots=True)
class HoldingView:
    market_id: str
    side: str  # "YES" | "NO"
    shares: float
    cost: float


@dataclass(slots=True)
class Observation:
    step: int
    total_steps: int
    clock: str  # "HH:MM" UTC of the tick
    balance: float  # cash
    pnl: float  # portfolio value minus starting balance
    positions: tuple[PositionView, ...]
    holdings: tuple[HoldingView, ...]
    stocks: tuple[StockQuote, ...]
    markets: tuple[PredictionQuote, ...]

    def stock(self, ticker: str) -> StockQuote | None:
        for q in self.stocks:
            if q.ticker == ticker:
                return q
        return None

    def market(self, market_id: str) -> PredictionQuote | None:
        for m in self.markets:
            if m.market_id == market_id:
                return m
        return None

    def position(self, ticker: str) -> PositionView | None:
        for p in self.positions:
            if p.ticker == ticker:
                return p
        return None

    def to_state(self) -> dict[str, Any]:
        """The machine-readable form embedded in the prompt (compact arrays, short keys)."""
        return {
            "step": self.step,
            "of": self.total_steps,
            "t": self.clock,
            "cash": self.balance,
            "pnl": self.pnl,
            "pos": [[p.ticker, p.side, p.size, p.entry_price, p.unrealized_pnl] for p in self.positions],
            "hold": [[h.market_id, h.side, h.shares, h.cost] for h in self.holdings],
            "stocks": [_stock_row(q) for q in self.stocks],
            "pm": [_pm_row(m) for m in self.markets],
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Observation:
        return cls(
            step=int(d["step"]),
            total_steps=int(d["of"]),
            clock=str(d["t"]),
            balance=float(d["cash"]),
            pnl=float(d["pnl"]),
            positions=tuple(
                PositionView(str(a), str(b), float(c), float(e), float(f)) for a, b, c, e, f in d["pos"]
            ),
            holdings=tuple(HoldingView(str(a), str(b), float(c), float(e)) for a, b, c, e in d["hold"]),
            stocks=tuple(
                StockQuote(
                    str(a), float(b), float(c), float(e), float(f), None if g is None else str(g), float(h)
                )
                for a, b, c, e, f, g, h in d["stocks"]
            ),
            markets=tuple(
                PredictionQuote(str(a), str(b), float(c), float(e), int(f)) for a, b, c, e, f in d["pm"]
            ),
        )

    @classmethod
    def from_prompt(cls, text: str | None) -> Observation | None:
        """Rebuild the observation from a user prompt; None when the state line is absent or malformed."""
        if not text:
            return None
        i = text.rfind(STATE_PREFIX)
        if i < 0:
            return None
        j = text.find("\n", i)
        raw = text[i + len(STATE_PREFIX) : (None if j < 0 else j)]
        try:
            d = orjson.loads(raw)
            if not isinstance(d, dict):
                return None
            return cls.from_state(d)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def _stock_row(q: StockQuote) -> list[Any]:
    return [q.ticker, q.price, q.change_pct, q.momentum, q.trend, q.headline, q.sentiment]


def _pm_row(m: PredictionQuote) -> list[Any]:
    return [m.market_id, m.question, m.yes_price, m.drift, m.ticks_left]


@dataclass(slots=True)
class TickFragments:
    """The agent-independent parts of one tick's user prompt, rendered once."""

    header: str  # "Step 3/20 (14:06 UTC). "
    body: str  # the news line ("" without fresh headlines)
    state_head: str  # 'MARKET_STATE: {"step":2,"of":20,"t":"14:06","cash":'
    state_tail: str  # ',"stocks":[...],"pm":[...]}' closing the MARKET_STATE object


def tick_fragments(
    step: int,
    total_steps: int,
    clock: str,
    stocks: tuple[StockQuote, ...],
    markets: tuple[PredictionQuote, ...],
) -> TickFragments:
    header = f"Step {step + 1}/{total_steps} ({clock} UTC). "
    news = [f"{q.headline} ({q.ticker})" for q in stocks if q.headline]
    body = ("News: " + "; ".join(news) + "\n") if news else ""
    head = f'{STATE_PREFIX}{{"step":{step},"of":{total_steps},"t":{orjson.dumps(clock).decode()},"cash":'
    tail = (
        b',"stocks":'
        + orjson.dumps([_stock_row(q) for q in stocks])
        + b',"pm":'
        + orjson.dumps([_pm_row(m) for m in markets])
        + b"}"
    ).decode()
    return TickFragments(header, body, head, tail)


def render_user_prompt(obs: Observation, frag: TickFragments | None = None) -> str:
    """Readable text plus the MARKET_STATE line. `frag` is the cached tick part (same output)."""
    return render_parts(obs, frag)[0]


def render_parts(obs: Observation, frag: TickFragments | None = None) -> tuple[str, str, str]:
    """(prompt, balance text, P&L text): the episode reuses the formatted numbers in the step JSON.

    Balance and P&L are written with 2 decimals (the simulator keeps them in cents)."""
    if frag is None:
        frag = tick_fragments(obs.step, obs.total_steps, obs.clock, obs.stocks, obs.markets)
    pos = obs.positions
    hold = obs.holdings
    bal_s = f"{obs.balance:.2f}"
    pnl_s = f"{obs.pnl:.2f}"
    if pos:
        pos_json = orjson.dumps(
            [[p.ticker, p.side, p.size, p.entry_price, p.unrealized_pnl] for p in pos]
        ).decode()
        extra = f" Open: {', '.join([f'{p.ticker} {p.side}' for p in pos])}."
    else:
        pos_json = "[]"
        extra = ""
    if hold:
        hold_json = orjson.dumps([[h.market_id, h.side, h.shares, h.cost] for h in hold]).decode()
        extra += f" {len(hold)} prediction holdings."
    else:
        hold_json = "[]"
    sign = "" if pnl_s[0] == "-" else "+"
    return (
        f"{frag.header}Cash ${bal_s}, P&L {sign}{pnl_s}.{extra}\n{frag.body}{frag.state_head}"
        f'{bal_s},"pnl":{pnl_s},"pos":{pos_json},"hold":{hold_json}{frag.state_tail}',
        bal_s,
        pnl_s,
    )


def build_system_prompt(display_name: str, persona: str) -> str:
    """Per-agent system prompt: persona, the game's rules, the state layout and the response format."""
    style = PERSONAS.get(persona, persona)
    return (
        f"You are {display_name}, a trader in Babylon, a market game. {style}\n"
        "One action per step: OPEN_LONG/OPEN_SHORT {ticker,size} "
        f"(perps, size in $, max {MAX_ORDER_SIZE:.0f}), "
        "CLOSE_POSITION {ticker}, BUY_SHARES {marketId,side:YES|NO,amount} (winning shares pay $1), HOLD.\n"
        "MARKET_STATE stocks: [ticker,price,chg3%,momentum,trend,headline,sentiment]; "
        "pm: [marketId,question,yesPrice,drift,stepsLeft].\n" + _RESPONSE_FORMAT
    )
