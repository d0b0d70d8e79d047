"""Observations and prompts, response parsing, candidate actions and their features."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from babylon_console.core.sim import (
    FEATURE_DIM,
    FEATURE_NAMES,
    HOLD,
    Action,
    Observation,
    Simulation,
    action_features,
    build_system_prompt,
    candidate_actions,
    candidate_features,
    format_response,
    parse_response,
    render_user_prompt,
)
from babylon_console.core.sim.market import PredictionQuote, StockQuote
from babylon_console.core.sim.observation import HoldingView, PositionView

START = datetime(2026, 11, 23, 14)


def make_obs(**kw: object) -> Observation:
    base = dict(
        step=4,
        total_steps=20,
        clock="14:12",
        balance=640.5,
        pnl=-3.25,
        positions=(PositionView("NOVA", "long", 250.0, 101.2, 1.75),),
        holdings=(HoldingView("sim1-pm-7", "NO", 151.2345, 100.0),),
        stocks=(
            StockQuote("NOVA", 102.4, 1.19, 2.1, 2.6, 'Nova Dynamics wins a "major" contract', 0.8),
            StockQuote("HELX", 55.1, -0.4, -0.5, -1.2, None, 0.0),
        ),
        markets=(
            PredictionQuote("sim1-pm-7", "Will HELX close above $60 by Friday?", 0.62, 0.041, 9),
            PredictionQuote(
                "sim1-pm-8", "Will the Babylon Fed cut rates at the next meeting?", 0.3, -0.02, 25
            ),
        ),
    )
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


def test_observation_round_trips_through_the_prompt() -> None:
    obs = make_obs()
    prompt = render_user_prompt(obs)
    assert "MARKET_STATE: {" in prompt and prompt.startswith("Step 5/20 (14:12 UTC).")
    assert "Nova Dynamics wins" in prompt.split("MARKET_STATE")[0]  # the news is readable text too
    assert Observation.from_prompt(prompt) == obs
    # Text after the state line (a two-call step appends the analysis) does not get in the way.
    assert Observation.from_prompt(prompt + "\n\nYour analysis:\nlooks strong") == obs
    flat = make_obs(positions=(), holdings=(), pnl=0.0)
    assert Observation.from_prompt(render_user_prompt(flat)) == flat


def test_simulated_prompts_round_trip() -> None:
    sim = Simulation(seed=2, n_agents=6, steps_per_window=8)
    r = sim.simulate_window(START)
    for c in r.llm_calls:
        obs = Observation.from_prompt(c[10])
        assert obs is not None
        assert render_user_prompt(obs) == c[10].split("\n\nYour analysis:")[0]


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "no state here",
        "MARKET_STATE: {not json",
        'MARKET_STATE: {"step": 1}',
        "MARKET_STATE: [1, 2]",
    ],
)
def test_from_prompt_returns_none_when_absent_or_malformed(text: str | None) -> None:
    assert Observation.from_prompt(text) is None


def test_system_prompt_carries_persona_rules_and_format() -> None:
    p = build_system_prompt("Momentum Trader 3", "momentum")
    assert "Momentum Trader 3" in p and "ride trends" in p
    for word in ("OPEN_LONG", "OPEN_SHORT", "CLOSE_POSITION", "BUY_SHARES", "HOLD", '"actionType"'):
        assert word in p
    assert build_system_prompt("X", "You love bonds.").count("You love bonds.") == 1


def test_parse_response_accepts_json_with_prose_around_it() -> None:
    obs = make_obs()
    text = (
        "NOVA keeps climbing.\n```json\n"
        '{"action": {"actionType": "open_long", "parameters": {"ticker": "nova", "size": "120"}}, '
        '"reasoning": "trend"}\n```'
    )
    r = parse_response(text, obs)
    assert r.ok and r.error is None
    assert r.action == Action("OPEN_LONG", ticker="NOVA", size=120.0)
    assert r.reasoning == "trend"
    r = parse_response(
        '{"action": {"actionType": "BUY_SHARES", "parameters": {"marketId": "sim1-pm-8", '
        '"side": "no", "amount": 50}}, "reasoning": "fade"}',
        obs,
    )
    assert r.action == Action("BUY_SHARES", market_id="sim1-pm-8", side="NO", amount=50.0)
    assert parse_response('{"action": {"actionType": "HOLD"}}', obs).action == HOLD
    assert parse_response(
        '{"action": "CLOSE_POSITION", "parameters": {"ticker": "NOVA"}}', obs
    ).action == Action("CLOSE_POSITION", ticker="NOVA")
    # Round trip with what the simulator's agents write.
    a = Action("OPEN_SHORT", ticker="HELX", size=80.0)
    assert parse_response(format_response(a, "r", preface="Thinking..."), obs).action == a


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty response"),
        ("I would buy some NOVA.", "no JSON object"),
        ('{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": 1', "invalid JSON"),
        ('["OPEN_LONG"]', "expected a JSON object"),
        ('{"reasoning": "x"}', "missing actionType"),
        ('{"action": 3}', "missing 'action'"),
        ('{"action": {"actionType": "FLY_TO_MOON"}}', "unknown actionType 'FLY_TO_MOON'"),
        (
            '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "ZZZZ", "size": 10}}}',
            "unknown ticker",
        ),
        ('{"action": {"actionType": "OPEN_LONG", "parameters": {"size": 10}}}', "'ticker' is required"),
        (
            '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": -5}}}',
            "'size' must be",
        ),
        (
            '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": 1e9}}}',
            "'size' must be",
        ),
        (
            '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": "lots"}}}',
            "number",
        ),
        ('{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "NOVA", "size": true}}}', "number"),
        ('{"action": {"actionType": "OPEN_LONG", "parameters": [1]}}', "'parameters' must be an object"),
        (
            '{"action": {"actionType": "BUY_SHARES", "parameters": {"marketId": "pm-404", "side": "YES", '
            '"amount": 5}}}',
            "unknown or closed prediction market",
        ),
        (
            '{"action": {"actionType": "BUY_SHARES", "parameters": {"marketId": "sim1-pm-7", '
            '"side": "MAYBE", "amount": 5}}}',
            "'side' must be YES or NO",
        ),
    ],
)
def test_parse_response_rejects_bad_output_with_a_reason(text: str, reason: str) -> None:
    r = parse_response(text, make_obs())
    assert not r.ok and r.action is None
    assert r.error is not None and reason in r.error


def test_unknown_action_keeps_what_was_attempted() -> None:
    r = parse_response('{"action": {"actionType": "SELL_ALL", "parameters": {"x": 1}}, "reasoning": "panic"}')
    assert r.action_type == "SELL_ALL" and r.parameters == {"x": 1} and r.reasoning == "panic"


def test_candidates_are_valid_bounded_and_respect_the_portfolio() -> None:
    obs = make_obs()
    cands = candidate_actions(obs)
    assert cands[0] == HOLD
    assert len(cands) == len(set(cands)) <= 1 + 4 * len(obs.stocks) + 4 * len(obs.markets)
    # A held ticker can only be closed; an unheld one opened long or short.
    assert Action("CLOSE_POSITION", ticker="NOVA") in cands
    assert not any(a.action_type.startswith("OPEN") and a.ticker == "NOVA" for a in cands)
    assert {a.action_type for a in cands if a.ticker == "HELX"} == {"OPEN_LONG", "OPEN_SHORT"}
    # Every candidate parses back to itself through a response.
    for a in cands:
        assert parse_response(format_response(a, "x"), obs).action == a
    # Nothing the balance cannot pay for.
    poor = candidate_actions(make_obs(balance=120.0))
    assert all(max(a.size, a.amount) <= 120.0 for a in poor)
    assert candidate_actions(make_obs(balance=0.0, positions=())) == [HOLD]


def test_features_have_fixed_dimension_and_bounded_scale() -> None:
    assert len(FEATURE_NAMES) == FEATURE_DIM and 8 <= FEATURE_DIM <= 16
    obs = make_obs()
    cands, x = candidate_features(obs)
    assert x.shape == (len(cands), FEATURE_DIM) and np.all(np.isfinite(x))
    assert np.all(np.abs(x) <= 3.0)
    for a, row in zip(cands, x, strict=True):
        assert np.array_equal(action_features(obs, a), row)
    hold = action_features(obs, HOLD)
    assert hold[FEATURE_NAMES.index("is_hold")] == 1.0 and np.count_nonzero(hold) == 1


def test_features_are_signed_by_direction() -> None:
    obs = make_obs(positions=())
    f = {a: action_features(obs, a) for a in candidate_actions(obs)}
    mom = FEATURE_NAMES.index("signed_momentum")
    news = FEATURE_NAMES.index("signed_news")
    drift = FEATURE_NAMES.index("signed_pm_drift")
    long_nova = f[Action("OPEN_LONG", ticker="NOVA", size=100.0)]
    short_nova = f[Action("OPEN_SHORT", ticker="NOVA", size=100.0)]
    assert long_nova[mom] == pytest.approx(2.1) and short_nova[mom] == pytest.approx(-2.1)
    assert long_nova[news] == pytest.approx(0.8) and short_nova[news] == pytest.approx(-0.8)
    yes = f[Action("BUY_SHARES", market_id="sim1-pm-7", side="YES", amount=100.0)]
    no = f[Action("BUY_SHARES", market_id="sim1-pm-7", side="NO", amount=100.0)]
    assert yes[drift] > 0 > no[drift]
    # Closing a long is a sell: it counts momentum against the position.
    held = make_obs()
    close = action_features(held, Action("CLOSE_POSITION", ticker="NOVA"))
    assert close[mom] == pytest.approx(-2.1)
    assert close[FEATURE_NAMES.index("close_pnl")] > 0
