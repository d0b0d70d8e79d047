"""Scripted strategies, the linear softmax policy and its checkpoints, and the portfolio."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from babylon_console.core.sim import (
    FEATURE_DIM,
    FEATURE_NAMES,
    HOLD,
    Action,
    CheckpointError,
    Decision,
    EpisodeStats,
    LinearSoftmaxPolicy,
    Observation,
    Policy,
    Portfolio,
    Simulation,
    candidate_actions,
    format_response,
)
from babylon_console.core.sim.portfolio import PREDICTION_FEE, STOCK_FEE

START = datetime(2026, 1, 1)


def run_population(hours: int, **kw: object) -> dict[str, list[EpisodeStats]]:
    sim = Simulation(**kw)  # type: ignore[arg-type]
    out: dict[str, list[EpisodeStats]] = defaultdict(list)
    for h in range(hours):
        for s in sim.simulate_window(START + timedelta(hours=h)).stats:
            out[s.policy if s.policy != s.strategy else s.strategy].append(s)
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


@pytest.fixture(scope="module")
def trending() -> dict[str, list[EpisodeStats]]:
    return run_population(40, seed=31, n_agents=36, regime_weights={"trend": 1.0})


def test_momentum_beats_random_in_trending_markets(trending: dict[str, list[EpisodeStats]]) -> None:
    # Stock trading alone (prediction-market bets add payoff noise of their own).
    stocks = run_population(
        40,
        seed=31,
        n_agents=12,
        regime_weights={"trend": 1.0},
        n_prediction_markets=0,
        strategies=["momentum", "random"],
    )
    mom, mom_se = mean_se([s.final_pnl for s in stocks["momentum"]])
    rnd, rnd_se = mean_se([s.final_pnl for s in stocks["random"]])
    assert mom > 8.0  # dollars per window on a 1000 balance
    assert mom - rnd > 10.0
    assert mom - rnd > 5 * (mom_se**2 + rnd_se**2) ** 0.5
    # With prediction markets too, momentum (which also follows YES-price drift) stays well ahead.
    mom = statistics.mean(s.final_pnl for s in trending["momentum"])
    rnd = statistics.mean(s.final_pnl for s in trending["random"])
    assert mom - rnd > 15.0


def test_cautious_has_the_smallest_drawdowns(trending: dict[str, list[EpisodeStats]]) -> None:
    dd = {k: statistics.mean(s.max_drawdown for s in v) for k, v in trending.items()}
    others = [v for k, v in dd.items() if k != "cautious"]
    assert dd["cautious"] < 0.6 * min(others), dd
    assert dd["reckless"] == max(dd.values())


def test_strategies_behave_differently(trending: dict[str, list[EpisodeStats]]) -> None:
    trades = {k: statistics.mean(s.trades for s in v) for k, v in trending.items()}
    errors = {k: statistics.mean(s.errors for s in v) for k, v in trending.items()}
    assert errors["reckless"] > 2.0 and errors["reckless"] == max(errors.values())  # over-sized orders fail
    assert trades["news"] == min(trades.values())  # trades only on headlines
    assert errors["momentum"] == errors["cautious"] == errors["news"] == 0


def test_contrarian_beats_momentum_when_prices_mean_revert() -> None:
    stats = run_population(
        30,
        seed=32,
        n_agents=12,
        regime_weights={"mean_reversion": 1.0},
        n_prediction_markets=0,
        strategies=["momentum", "contrarian"],
    )
    con, con_se = mean_se([s.final_pnl for s in stats["contrarian"]])
    mom, mom_se = mean_se([s.final_pnl for s in stats["momentum"]])
    assert con > 0 > mom
    assert con - mom > 4 * (con_se**2 + mom_se**2) ** 0.5


def test_agents_of_one_strategy_still_differ() -> None:
    sim = Simulation(seed=5, n_agents=12)
    r = sim.simulate_window(START)
    momentum = [s for s in r.stats if s.strategy == "momentum"]
    assert len(momentum) == 2
    steps = [orjson.loads(t[11]) for t in r.trajectories if t[2] in {s.agent_id for s in momentum}]
    assert [s["action"] for s in steps[0]] != [s["action"] for s in steps[1]]


# -- portfolio ----------------------------------------------------------------------------------


def test_portfolio_accounting() -> None:
    pf = Portfolio(1000.0)
    prices = {"NOVA": 100.0}
    yes = {"pm-1": 0.25}
    ok, result, err = pf.execute(Action("OPEN_LONG", ticker="NOVA", size=200.0), prices, yes)
    assert ok and err is None and result["entryPrice"] == 100.0
    assert pf.cash == pytest.approx(1000 - 200 * (1 + STOCK_FEE))
    assert pf.value({"NOVA": 110.0}, yes) == pytest.approx(1000 - 200 * STOCK_FEE + 20.0)
    assert pf.execute(Action("OPEN_SHORT", ticker="NOVA", size=10.0), prices, yes)[2].startswith(
        "position already"
    )
    ok, result, _ = pf.execute(Action("CLOSE_POSITION", ticker="NOVA"), {"NOVA": 110.0}, yes)
    assert ok and result["realizedPnL"] == pytest.approx(20.0 - 200 * STOCK_FEE, abs=0.01)
    assert pf.execute(Action("CLOSE_POSITION", ticker="NOVA"), prices, yes)[2] == "no open position on NOVA"
    ok, result, _ = pf.execute(Action("BUY_SHARES", market_id="pm-1", side="YES", amount=100.0), prices, yes)
    shares = 100.0 * (1 - PREDICTION_FEE) / 0.25
    assert ok and result["shares"] == pytest.approx(shares, abs=1e-3)
    assert (
        "insufficient balance" in pf.execute(Action("OPEN_LONG", ticker="NOVA", size=5000.0), prices, yes)[2]
    )
    before = pf.cash
    pf.settle([("pm-1", True)])
    assert pf.cash == pytest.approx(before + shares, abs=0.01) and not pf.holdings
    assert (pf.trades, pf.errors, pf.predictions_won) == (3, 3, 1)
    # A short gains when the price falls; losing NO shares pay nothing.
    pf2 = Portfolio(1000.0)
    pf2.execute(Action("OPEN_SHORT", ticker="NOVA", size=100.0), prices, yes)
    assert pf2.value({"NOVA": 90.0}, yes) > 1000.0
    pf2.execute(Action("BUY_SHARES", market_id="pm-1", side="NO", amount=50.0), prices, yes)
    cash = pf2.cash
    pf2.settle([("pm-1", True)])
    assert pf2.cash == cash and pf2.predictions_resolved == 1 and pf2.predictions_won == 0
    pf2.mark(1100.0)
    pf2.mark(990.0)
    assert pf2.max_drawdown == pytest.approx(0.1)


# -- policies -----------------------------------------------------------------------------------


def good_weights() -> np.ndarray:
    w = np.zeros(FEATURE_DIM)
    for name, v in {
        "signed_momentum": 1.0,
        "signed_trend": 1.0,
        "signed_pm_drift": 1.0,
        "is_hold": 2.0,
    }.items():
        w[FEATURE_NAMES.index(name)] = v
    return w


def test_linear_policy_probabilities() -> None:
    sim = Simulation(seed=3, n_agents=1)
    ctx = sim.begin_window(START)
    obs = Observation(0, 20, "00:00", 1000.0, 0.0, (), (), ctx.wm.stocks[0], ctx.wm.markets[0])
    uniform = LinearSoftmaxPolicy.zeros()
    cands, p = uniform.action_probabilities(obs)
    assert cands == candidate_actions(obs) and p.shape == (len(cands),)
    assert p.sum() == pytest.approx(1.0) and np.allclose(p, 1 / len(cands))
    cands, p = LinearSoftmaxPolicy(good_weights(), temperature=0.5).action_probabilities(obs)
    assert p.sum() == pytest.approx(1.0) and p.max() > 2 / len(cands)
    with pytest.raises(ValueError, match="shape"):
        LinearSoftmaxPolicy(np.zeros(FEATURE_DIM + 1))
    with pytest.raises(ValueError, match="temperature"):
        LinearSoftmaxPolicy(np.zeros(FEATURE_DIM), temperature=0)


def test_linear_policy_agents_produce_valid_steps() -> None:
    sim = Simulation(seed=9, n_agents=4, steps_per_window=10)
    policy = LinearSoftmaxPolicy(good_weights(), name="ckpt-step-3", model="offline/ckpt-3")
    assert isinstance(policy, Policy)
    sim.set_policy(1, policy)
    before = Simulation(seed=9, n_agents=4, steps_per_window=10).simulate_window(START)
    r = sim.simulate_window(START)
    # Swapping one agent's policy leaves the others' rows untouched.
    for i in (0, 2, 3):
        assert r.trajectories[i] == before.trajectories[i]
    t = r.trajectories[1]
    meta = orjson.loads(t[14])
    assert meta["policy"] == "ckpt-step-3" and meta["strategy"] == sim.agents[1].strategy
    steps = orjson.loads(t[11])
    assert len(steps) == 10
    for s in steps:
        call = s["llmCalls"][-1]
        assert call["model"] == "offline/ckpt-3"
        assert s["action"]["success"] is True  # candidates are valid by construction
        assert s["action"]["actionType"] in {
            "HOLD",
            "OPEN_LONG",
            "OPEN_SHORT",
            "CLOSE_POSITION",
            "BUY_SHARES",
        }
        assert "p=" in s["action"]["reasoning"]
    calls = [c for c in r.llm_calls if c[1] == t[1]]
    assert all("logprob" in orjson.loads(c[20]) for c in calls)
    assert all(orjson.loads(c[20])["logprob"] <= 0 for c in calls)
    sim.set_policy(1, None)  # back to the scripted strategy
    assert sim.agents[1].policy.name == sim.agents[1].strategy


def test_linear_policy_with_signal_weights_beats_uniform() -> None:
    sim = Simulation(seed=11, n_agents=12, regime_weights={"trend": 1.0}, n_prediction_markets=0)
    for i in range(12):
        sim.set_policy(
            i,
            LinearSoftmaxPolicy(good_weights(), name="good")
            if i % 2
            else LinearSoftmaxPolicy.zeros(name="uniform"),
        )
    pnl: dict[str, list[float]] = defaultdict(list)
    for h in range(30):
        for s in sim.simulate_window(START + timedelta(hours=h)).stats:
            pnl[s.policy].append(s.final_pnl)
    good, good_se = mean_se(pnl["good"])
    uni, uni_se = mean_se(pnl["uniform"])
    assert good - uni > 10.0 and good - uni > 4 * (good_se**2 + uni_se**2) ** 0.5


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    p = LinearSoftmaxPolicy(good_weights(), temperature=0.7, name="step-4", metadata={"step": 4})
    path = p.save(tmp_path / "ckpt" / "policy.json")
    q = LinearSoftmaxPolicy.load(path)
    assert np.array_equal(q.weights, p.weights) and q.temperature == 0.7
    assert (q.name, q.metadata) == ("step-4", {"step": 4})
    assert LinearSoftmaxPolicy.load(path, name="renamed").name == "renamed"
    d = orjson.loads(path.read_bytes())
    assert d["feature_dim"] == FEATURE_DIM and d["feature_names"] == list(FEATURE_NAMES) and d["version"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01garbage", "not valid JSON"),
        (b'{"format": "something-else"}', "is not a babylon-linear-softmax checkpoint"),
        (b'{"format": "babylon-linear-softmax", "version": 99}', "version 99"),
        (
            b'{"format": "babylon-linear-softmax", "version": 1, "feature_dim": 3, "weights": [1, 2, 3]}',
            "feature_dim 3",
        ),
        (
            b'{"format": "babylon-linear-softmax", "version": 1, "feature_dim": %d, "weights": [1]}'
            % FEATURE_DIM,
            "finite weights",
        ),
    ],
)
def test_corrupt_checkpoints_fail_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        LinearSoftmaxPolicy.load(path)


def test_missing_checkpoint_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read policy checkpoint"):
        LinearSoftmaxPolicy.load(tmp_path / "nope.json")


def test_any_object_with_decide_can_drive_an_agent() -> None:
    class AlwaysNova:
        name = "always-nova"

        def decide(self, obs: Observation, rng: np.random.Generator) -> Decision:
            if obs.positions:
                return Decision(HOLD, "holding", format_response(HOLD, "holding"))
            a = Action("OPEN_LONG", ticker="NOVA", size=100.0)
            return Decision(a, "buy", "Buying.\n" + format_response(a, "buy"), thought="Let me think first.")

    sim = Simulation(seed=1, n_agents=2, steps_per_window=5, policies={0: AlwaysNova()})
    r = sim.simulate_window(START)
    steps = orjson.loads(r.trajectories[0][11])
    assert steps[0]["action"]["actionType"] == "OPEN_LONG" and steps[0]["action"]["success"] is True
    assert [c["purpose"] for c in steps[0]["llmCalls"]] == ["reasoning", "action"]
    assert steps[0]["llmCalls"][1]["userPrompt"].endswith("Your analysis:\nLet me think first.")
    assert all(s["action"]["actionType"] == "HOLD" for s in steps[1:])
    assert r.stats[0].policy == "always-nova" and r.stats[0].trades == 1
    with pytest.raises(TypeError):
        sim.set_policy(0, object())
