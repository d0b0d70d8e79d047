"""Seeded market: stock price paths with regimes and news shocks, prediction markets that resolve.

A window is one UTC hour split into `ticks_per_window` ticks; agents act once per tick. Tick s of a
window has price `prices[s]`; tick `ticks` is the window's close and the next window's open, so
prices carry over. Everything random in a window comes from a generator keyed by (seed, hour), so a
run over the same windows is byte-identical whatever else happens in the process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

DEFAULT_TICKERS: tuple[str, ...] = ("BBLN", "NOVA", "QNTM", "HELX", "ORBT")

COMPANY_NAMES: dict[str, str] = {
    "BBLN": "Babylon Labs",
    "NOVA": "Nova Dynamics",
    "QNTM": "Quantum Ridge",
    "HELX": "Helix Bio",
    "ORBT": "Orbital Freight",
}

REGIMES: tuple[str, ...] = ("trend", "mean_reversion")
DEFAULT_REGIME_WEIGHTS: dict[str, float] = {"trend": 0.5, "mean_reversion": 0.5}

TICK_VOL = 0.005  # per-tick log-return noise; momentum features are z-scored against it
TREND_DRIFT = (0.002, 0.004)  # per-tick drift magnitude in a trend regime
REVERSION_SPEED = 0.35  # pull of log price toward the regime anchor per tick
REGIME_SWITCH_PROB = 0.015  # per tick: a regime lasts about three windows on average
SHOCK_PROB = 0.02  # per ticker per tick
SHOCK_SIZE = (0.015, 0.035)
SHOCK_FOLLOW_TICKS = 4  # post-news drift: continuation (70%) or overreaction reversal (30%)
SHOCK_FOLLOW_DRIFT = 0.004
HISTORY_TICKS = 12  # closes kept so momentum is defined at the first tick of a window
MIN_PRICE, MAX_PRICE = 1.0, 1_000_000.0

PM_ALPHA = 0.10  # public YES price moves this fraction toward the hidden probability per tick
PM_NOISE = 0.015
PM_LIFETIME = (8, 60)  # ticks from open to resolution
PM_PRICE_CLIP = (0.02, 0.98)

_UP_NEWS = (
    "{name} beats earnings expectations",
    "{name} wins a major government contract",
    "{name} announces record quarterly deliveries",
    "Analysts upgrade {name} to strong buy",
    "{name} unveils breakthrough product line",
    "{name} announces share buyback",
)
_DOWN_NEWS = (
    "{name} misses revenue guidance",
    "Regulators open probe into {name}",
    "{name} recalls flagship product",
    "{name} CFO resigns unexpectedly",
    "Short seller report targets {name}",
    "{name} loses key customer to rival",
)
_QUESTIONS = (
    "Will {ticker} close above ${level} by Friday?",
    "Will {name} announce layoffs this quarter?",
    "Will the Babylon Fed cut rates at the next meeting?",
    "Will {name} be added to the B50 index?",
    "Will the {name} merger be approved?",
    "Will {ticker} trade below ${level} this week?",
    "Will BTC close the week above $120k?",
    "Will {name} report positive free cash flow?",
)


def hour_index(window_start: datetime) -> int:
    """Hours since the epoch for a naive-UTC or aware datetime aligned to the hour."""
    return int(to_naive_utc(window_start).replace(tzinfo=UTC).timestamp()) // 3600


def to_naive_utc(dt: datetime) -> datetime:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def window_start_of(dt: datetime) -> datetime:
    """Floor a timestamp to its UTC hour (naive UTC)."""
    return to_naive_utc(dt).replace(minute=0, second=0, microsecond=0)


def window_id(window_start: datetime) -> str:
    """`YYYY-MM-DDTHH:00` for the hour that contains `window_start`."""
    return window_start_of(window_start).strftime("%Y-%m-%dT%H:00")


@dataclass(slots=True)
class StockQuote:
    """What a stock provider shows at one tick."""

    ticker: str
    price: float
    change_pct: float  # % change over the last 3 ticks
    momentum: float  # 3-tick log return in units of its noise (z-score)
    trend: float  # 10-tick z-score
    headline: str | None  # fresh news (this tick or the previous one)
    sentiment: float  # signed strength of that news, 0 without news


@dataclass(slots=True)
class PredictionQuote:
    """What the prediction-market provider shows at one tick."""

    market_id: str
    question: str
    yes_price: float
    drift: float  # YES price change over the last 3 ticks
    ticks_left: int  # ticks until resolution


@dataclass(slots=True)
class NewsEvent:
    tick: int
    ticker: str
    headline: str
    sentiment: float


@dataclass(slots=True)
class ResolvedMarket:
    market_id: str
    question: str
    outcome: str  # "YES" | "NO"
    final_probability: float  # last public YES price before resolution
    true_probability: float
    volume: float
    tick: int  # tick of the window at which it resolved (1..ticks)


@dataclass(slots=True)
class _PredictionMarket:
    market_id: str
    question: str
    true_p: float
    yes: float
    history: list[float]
    resolve_at: int  # global tick
    volume: float = 0.0


@dataclass(slots=True)
class _Ticker:
    symbol: str
    price: float
    base: float  # long-run level the trend direction leans back toward, keeps prices bounded
    regime: str
    drift: float
    anchor: float
    follow_ticks: int = 0
    follow_drift: float = 0.0
    history: list[float] = field(default_factory=list)


@dataclass(slots=True)
class WindowMarket:
    """One hour of market, precomputed once and shared by every agent."""

    window_start: datetime  # naive UTC
    window_id: str
    hour: int
    ticks: int
    tickers: tuple[str, ...]
    prices: list[list[float]]  # [tick 0..ticks][ticker index]
    price_maps: list[dict[str, float]]  # tick 0..ticks
    stocks: list[tuple[StockQuote, ...]]  # tick 0..ticks-1
    markets: list[tuple[PredictionQuote, ...]]  # open markets visible at tick 0..ticks-1
    yes_maps: list[dict[str, float]]  # tick 0..ticks: YES price of each still-open market
    resolutions: dict[int, list[tuple[str, bool]]]  # tick -> [(market_id, outcome_yes)]
    resolved: list[ResolvedMarket]
    news: list[NewsEvent]
    regimes: list[list[str]]  # [tick 0..ticks-1][ticker index]


class Market:
    """Stateful market; `advance(window_start)` simulates the next hour and carries state over."""

    def __init__(
        self,
        seed: int,
        tickers: tuple[str, ...] | list[str] = DEFAULT_TICKERS,
        ticks_per_window: int = 20,
        n_prediction_markets: int = 3,
        regime_weights: dict[str, float] | None = None,
        namespace: str | None = None,
    ) -> None:
        if ticks_per_window < 1:
            raise ValueError("ticks_per_window must be >= 1")
        if not tickers:
            raise ValueError("at least one ticker is required")
        self.seed = int(seed)
        self.tickers = tuple(tickers)
        self.ticks = int(ticks_per_window)
        self.n_prediction_markets = int(n_prediction_markets)
        weights = dict(DEFAULT_REGIME_WEIGHTS if regime_weights is None else regime_weights)
        unknown = set(weights) - set(REGIMES)
        if unknown or sum(weights.values()) <= 0:
            raise ValueError(f"regime_weights must weight {REGIMES}, got {weights}")
        total = sum(weights.values())
        self._regime_p = [weights.get(r, 0.0) / total for r in REGIMES]
        self.namespace = namespace or f"sim{self.seed}"
        self._pm_counter = 0
        self._global_tick = 0
        self._last_hour: int | None = None
        self._carry_news: list[tuple[str, str, float]] = []  # headlines from the last move of a window
        rng = np.random.default_rng([self.seed, 7])
        self._tickers: list[_Ticker] = []
        for sym in self.tickers:
            price = round(float(rng.uniform(20.0, 300.0)), 2)
            t = _Ticker(sym, price, price, "trend", 0.0, price)
            self._new_regime(t, rng)
            self._tickers.append(t)
        # Warm-up so momentum and prediction drift exist at the first window's first tick.
        for _ in range(HISTORY_TICKS):
            for t in self._tickers:
                self._step_price(t, rng, None)
        self._markets: list[_PredictionMarket] = [self._open_market(rng) for _ in range(n_prediction_markets)]
        for m in self._markets:
            for _ in range(3):
                self._step_pm(m, rng)

    # -- state transitions ------------------------------------------------------------------

    def _new_regime(self, t: _Ticker, rng: np.random.Generator) -> None:
        t.regime = REGIMES[int(rng.choice(len(REGIMES), p=self._regime_p))]
        t.anchor = t.price
        # Lean the trend back toward the base level so prices stay bounded over long runs.
        p_up = 1.0 / (1.0 + math.exp(3.0 * math.log(t.price / t.base)))
        sign = 1.0 if rng.random() < p_up else -1.0
        t.drift = sign * float(rng.uniform(*TREND_DRIFT)) if t.regime == "trend" else 0.0

    def _step_price(
        self, t: _Ticker, rng: np.random.Generator, news: list[tuple[str, str, float]] | None
    ) -> None:
        if rng.random() < REGIME_SWITCH_PROB:
            self._new_regime(t, rng)
        r = float(rng.normal(0.0, TICK_VOL))
        if t.regime == "trend":
            r += t.drift
        else:
            r -= REVERSION_SPEED * math.log(t.price / t.anchor)
        if t.follow_ticks > 0:
            r += t.follow_drift
            t.follow_ticks -= 1
        if news is not None and rng.random() < SHOCK_PROB:
            sign = 1.0 if rng.random() < 0.5 else -1.0
            size = float(rng.uniform(*SHOCK_SIZE))
            r += sign * size
            continuation = rng.random() < 0.7
            t.follow_ticks = SHOCK_FOLLOW_TICKS
            t.follow_drift = sign * (SHOCK_FOLLOW_DRIFT if continuation else -0.75 * SHOCK_FOLLOW_DRIFT)
            pool = _UP_NEWS if sign > 0 else _DOWN_NEWS
            name = COMPANY_NAMES.get(t.symbol, t.symbol)
            headline = pool[int(rng.integers(len(pool)))].format(name=name)
            sentiment = round(sign * min(1.0, size / SHOCK_SIZE[1]), 2)
            news.append((t.symbol, headline, sentiment))
        price = min(MAX_PRICE, max(MIN_PRICE, round(t.price * math.exp(r), 2)))
        t.history.append(t.price)
        if len(t.history) > HISTORY_TICKS:
            del t.history[0]
        t.price = price

    def _open_market(self, rng: np.random.Generator) -> _PredictionMarket:
        self._pm_counter += 1
        mid = f"{self.namespace}-pm-{self._pm_counter}"
        sym = self.tickers[int(rng.integers(len(self.tickers)))]
        t = next(x for x in self._tickers if x.symbol == sym)
        level = max(1, round(t.price * float(rng.uniform(0.9, 1.1))))
        template = _QUESTIONS[int(rng.integers(len(_QUESTIONS)))]
        question = template.format(ticker=sym, name=COMPANY_NAMES.get(sym, sym), level=level)
        true_p = float(rng.uniform(0.05, 0.95))
        # Opens partly informed: the public price starts between 0.5 and the truth.
        yes = 0.5 + (true_p - 0.5) * float(rng.uniform(0.0, 0.5)) + float(rng.normal(0.0, 0.04))
        yes = round(min(PM_PRICE_CLIP[1], max(PM_PRICE_CLIP[0], yes)), 3)
        life = int(rng.integers(PM_LIFETIME[0], PM_LIFETIME[1] + 1))
        return _PredictionMarket(mid, question, true_p, yes, [yes], self._global_tick + life)

    def _step_pm(self, m: _PredictionMarket, rng: np.random.Generator) -> None:
        y = m.yes + PM_ALPHA * (m.true_p - m.yes) + float(rng.normal(0.0, PM_NOISE))
        m.yes = round(min(PM_PRICE_CLIP[1], max(PM_PRICE_CLIP[0], y)), 3)
        m.history.append(m.yes)
        if len(m.history) > 4:
            del m.history[0]
        m.volume += float(rng.lognormal(math.log(150.0), 0.6))

    # -- views ------------------------------------------------------------------------------

    def _stock_quote(self, t: _Ticker, headline: str | None, sentiment: float) -> StockQuote:
        h = t.history
        p3 = h[-3] if len(h) >= 3 else t.price
        p10 = h[-10] if len(h) >= 10 else (h[0] if h else t.price)
        r3 = math.log(t.price / p3)
        r10 = math.log(t.price / p10)
        return StockQuote(
            t.symbol,
            t.price,
            round((t.price / p3 - 1.0) * 100.0, 2),
            round(max(-5.0, min(5.0, r3 / (TICK_VOL * math.sqrt(3.0)))), 2),
            round(max(-5.0, min(5.0, r10 / (TICK_VOL * math.sqrt(10.0)))), 2),
            headline,
            sentiment,
        )

    def _pm_quote(self, m: _PredictionMarket) -> PredictionQuote:
        return PredictionQuote(
            m.market_id, m.question, m.yes, round(m.yes - m.history[0], 3), m.resolve_at - self._global_tick
        )

    # -- window -----------------------------------------------------------------------------

    def advance(self, window_start: datetime) -> WindowMarket:
        """Simulate the hour starting at `window_start`; windows must move forward in time."""
        start = to_naive_utc(window_start)
        if start != window_start_of(start):
            raise ValueError(f"window start must be aligned to the hour, got {window_start.isoformat()}")
        hour = hour_index(start)
        if self._last_hour is not None and hour <= self._last_hour:
            raise ValueError(
                f"window {window_id(start)} is not after the last simulated window; "
                "the market only moves forward"
            )
        self._last_hour = hour
        rng = np.random.default_rng([self.seed, 1, hour])
        n_ticks = self.ticks
        tickers = self.tickers
        prices: list[list[float]] = []
        stocks: list[tuple[StockQuote, ...]] = []
        markets: list[tuple[PredictionQuote, ...]] = []
        yes_maps: list[dict[str, float]] = []
        resolutions: dict[int, list[tuple[str, bool]]] = {}
        resolved: list[ResolvedMarket] = []
        news_events: list[NewsEvent] = []
        regimes: list[list[str]] = []
        # ticker -> (headline, sentiment, tick first seen); last hour's closing headlines show at tick 0.
        fresh: dict[str, tuple[str, float, int]] = {sym: (h, se, 0) for sym, h, se in self._carry_news}
        pending_news: list[tuple[str, str, float]] = []

        for s in range(n_ticks + 1):
            # State at tick s is already in place (tick 0 = last window's close).
            prices.append([t.price for t in self._tickers])
            yes_maps.append({m.market_id: m.yes for m in self._markets})
            if s == n_ticks:
                break
            for sym, headline, sentiment in pending_news:
                fresh[sym] = (headline, sentiment, s)
                news_events.append(NewsEvent(s, sym, headline, sentiment))
            pending_news = []
            quotes = []
            for t in self._tickers:
                item = fresh.get(t.symbol)
                if item is not None and s - item[2] <= 1:
                    quotes.append(self._stock_quote(t, item[0], item[1]))
                else:
                    quotes.append(self._stock_quote(t, None, 0.0))
            stocks.append(tuple(quotes))
            markets.append(tuple(self._pm_quote(m) for m in self._markets))
            regimes.append([t.regime for t in self._tickers])
            # Move to tick s + 1. A shock's jump lands in this move and its headline is public from
            # tick s + 1 on, so a news reader sees it with the jump already priced in.
            for t in self._tickers:
                self._step_price(t, rng, pending_news)
            self._global_tick += 1
            still_open = []
            for m in self._markets:
                if m.resolve_at <= self._global_tick:
                    yes_outcome = bool(rng.random() < m.true_p)
                    resolutions.setdefault(s + 1, []).append((m.market_id, yes_outcome))
                    resolved.append(
                        ResolvedMarket(
                            m.market_id,
                            m.question,
                            "YES" if yes_outcome else "NO",
                            m.yes,
                            m.true_p,
                            round(m.volume, 2),
                            s + 1,
                        )
                    )
                else:
                    self._step_pm(m, rng)
                    still_open.append(m)
            while len(still_open) < self.n_prediction_markets:
                still_open.append(self._open_market(rng))
            self._markets = still_open
        # Headlines from the final move belong to this hour's news too.
        for sym, headline, sentiment in pending_news:
            news_events.append(NewsEvent(n_ticks, sym, headline, sentiment))
        self._carry_news = pending_news

        price_maps = [dict(zip(tickers, row, strict=True)) for row in prices]
        return WindowMarket(
            window_start=start,
            window_id=window_id(start),
            hour=hour,
            ticks=n_ticks,
            tickers=tickers,
            prices=prices,
            price_maps=price_maps,
            stocks=stocks,
            markets=markets,
            yes_maps=yes_maps,
            resolutions=resolutions,
            resolved=resolved,
            news=news_events,
            regimes=regimes,
        )


def window_bounds(window_start: datetime) -> tuple[datetime, datetime]:
    start = window_start_of(window_start)
    return start, start + timedelta(hours=1)
