"""The market: seeded price paths, regimes, news, prediction markets and their outcome rows."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from babylon_console.core.game.schema import MARKET_OUTCOME_COLUMNS
from babylon_console.core.sim.game_rows import market_outcome_rows
from babylon_console.core.sim.market import Market, window_id, window_start_of

START = datetime(2026, 11, 23, 14)


def run(market: Market, hours: int, start: datetime = START) -> list:
    return [market.advance(start + timedelta(hours=h)) for h in range(hours)]


def test_window_ids_are_utc_hour_starts() -> None:
    assert window_id(datetime(2026, 11, 23, 14, 59, 59)) == "2026-11-23T14:00"
    aware = datetime(2026, 11, 23, 15, 30, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert window_id(aware) == "2026-11-23T15:00"
    assert window_start_of(aware) == datetime(2026, 11, 23, 15)


def test_same_seed_same_market_different_seed_different() -> None:
    a = run(Market(seed=5), 3)
    b = run(Market(seed=5), 3)
    c = run(Market(seed=6), 3)
    assert [w.prices for w in a] == [w.prices for w in b]
    assert [[(r.market_id, r.outcome) for r in w.resolved] for w in a] == [
        [(r.market_id, r.outcome) for r in w.resolved] for w in b
    ]
    assert [w.prices for w in a] != [w.prices for w in c]


def test_prices_carry_over_between_windows() -> None:
    windows = run(Market(seed=1), 4)
    for prev, nxt in itertools.pairwise(windows):
        assert prev.prices[-1] == nxt.prices[0]
        assert [q.price for q in nxt.stocks[0]] == nxt.prices[0]


def test_windows_must_be_aligned_and_move_forward() -> None:
    m = Market(seed=1)
    with pytest.raises(ValueError, match="aligned to the hour"):
        m.advance(START + timedelta(minutes=5))
    m.advance(START)
    with pytest.raises(ValueError, match="only moves forward"):
        m.advance(START)
    m.advance(START + timedelta(hours=3))  # a gap is fine: the market continues


def test_prices_stay_bounded_over_long_runs() -> None:
    m = Market(seed=2, regime_weights={"trend": 1.0})
    windows = run(m, 300)
    prices = np.array([w.prices[-1] for w in windows])
    base = prices[0]
    assert np.all(prices > base / 20) and np.all(prices < base * 20)


def test_regimes_shape_returns() -> None:
    """Following 3-tick momentum earns in trending markets and loses in mean-reverting ones."""

    def momentum_edge(weights: dict[str, float]) -> float:
        m = Market(seed=9, regime_weights=weights)
        edge = []
        for w in run(m, 120):
            for s in range(w.ticks - 1):
                for i, q in enumerate(w.stocks[s]):
                    edge.append(np.sign(q.momentum) * np.log(w.prices[s + 1][i] / w.prices[s][i]))
        return float(np.mean(edge))

    assert momentum_edge({"trend": 1.0}) > 0.001  # > 10 bp per tick
    assert momentum_edge({"mean_reversion": 1.0}) < -0.0005


def test_news_shocks_move_the_price_in_the_headline_direction() -> None:
    m = Market(seed=4)
    moves = []
    for w in run(m, 120):
        for n in w.news:
            if 1 <= n.tick <= w.ticks:
                i = w.tickers.index(n.ticker)
                moves.append(np.sign(n.sentiment) * np.log(w.prices[n.tick][i] / w.prices[n.tick - 1][i]))
    assert len(moves) > 100
    assert np.mean(np.array(moves) > 0) > 0.9  # the jump lands with the headline
    assert np.mean(moves) > 0.01


def test_prediction_markets_resolve_with_their_true_probability() -> None:
    m = Market(seed=8, n_prediction_markets=6)
    resolved = [r for w in run(m, 400) for r in w.resolved]
    assert len(resolved) > 500
    yes = np.array([r.outcome == "YES" for r in resolved], dtype=float)
    p = np.array([r.true_probability for r in resolved])
    assert abs(yes.mean() - p.mean()) < 0.05
    # Calibration where it matters: confident markets mostly go their way.
    assert yes[p > 0.8].mean() > 0.75 and yes[p < 0.2].mean() < 0.25
    # Replacement markets keep the number of open markets constant.
    w = m.advance(START + timedelta(hours=500))
    assert all(len(ms) == 6 for ms in w.markets)


def test_prediction_price_drift_predicts_the_outcome() -> None:
    """Buying the side the YES price drifts toward has positive expected value (a learnable signal)."""
    m = Market(seed=12, n_prediction_markets=5)
    windows = run(m, 300)
    outcome = {r.market_id: 1.0 if r.outcome == "YES" else 0.0 for w in windows for r in w.resolved}
    edges = []
    for w in windows:
        for s in range(0, w.ticks, 5):
            for q in w.markets[s]:
                if q.market_id in outcome and abs(q.drift) >= 0.02:
                    edges.append(np.sign(q.drift) * (outcome[q.market_id] - q.yes_price))
    assert len(edges) > 300
    assert np.mean(edges) > 0.03


def test_outcome_rows_agree_with_the_price_paths() -> None:
    m = Market(seed=3, n_prediction_markets=5)
    windows = run(m, 12)
    seen_pm: set[str] = set()
    for w in windows:
        rows = market_outcome_rows(w, "ns")
        assert all(len(r) == len(MARKET_OUTCOME_COLUMNS) for r in rows)
        stock_rows = [dict(zip(MARKET_OUTCOME_COLUMNS, r, strict=True)) for r in rows if r[2] is not None]
        pm_rows = [dict(zip(MARKET_OUTCOME_COLUMNS, r, strict=True)) for r in rows if r[2] is None]
        assert [r["stockTicker"] for r in stock_rows] == list(w.tickers)
        for i, r in enumerate(stock_rows):
            start, end = w.prices[0][i], w.prices[-1][i]
            assert r["windowId"] == w.window_id
            assert r["startPrice"] == Decimal(f"{start:.2f}") and r["endPrice"] == Decimal(f"{end:.2f}")
            assert abs(float(r["changePercent"]) - (end - start) / start * 100) <= 0.005 + 1e-9
            assert r["changePercent"].as_tuple().exponent == -2
            chg = float(r["changePercent"])
            assert r["sentiment"] == ("bullish" if chg > 0.5 else "bearish" if chg < -0.5 else "neutral")
            news = orjson.loads(r["newsEvents"])
            assert news == [n.headline for n in w.news if n.ticker == r["stockTicker"]]
            assert all(
                r[k] is None for k in ("predictionMarketId", "question", "outcome", "finalProbability")
            )
            assert r["createdAt"] == w.window_start + timedelta(hours=1)
        assert [r["predictionMarketId"] for r in pm_rows] == [x.market_id for x in w.resolved]
        for r, res in zip(pm_rows, w.resolved, strict=True):
            assert r["outcome"] == res.outcome in ("YES", "NO")
            assert r["finalProbability"] == Decimal(f"{res.final_probability:.4f}")
            assert Decimal(0) <= r["finalProbability"] <= Decimal(1)
            assert r["volume"] > 0 and r["volume"].as_tuple().exponent == -2
            assert r["question"].endswith("?")
            assert all(r[k] is None for k in ("stockTicker", "startPrice", "endPrice", "changePercent"))
            assert r["predictionMarketId"] not in seen_pm  # a market resolves once
            seen_pm.add(r["predictionMarketId"])
            # It was open (visible) before its resolution tick and is gone afterwards.
            assert any(q.market_id == res.market_id for q in w.markets[res.tick - 1])
            assert res.market_id not in w.yes_maps[res.tick]
        assert len({r[0] for r in rows}) == len(rows)
    assert seen_pm  # some markets resolved in twelve hours
