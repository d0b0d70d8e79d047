"""The GRPO objective: advantages, turn extraction, analytic gradients, clipping and the KL term."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from babylon_console.core.sim.actions import (
    BUY_SHARES,
    FEATURE_DIM,
    HOLD,
    OPEN_LONG,
    Action,
    candidate_actions,
    format_response,
)
from babylon_console.core.sim.market import PredictionQuote, StockQuote
from babylon_console.core.sim.observation import Observation, PositionView, render_user_prompt
from babylon_console.core.training.backends.grpo import (
    TurnBatch,
    TurnCounts,
    build_batch,
    extract_turns,
    group_advantages,
    grpo_objective,
    log_softmax,
    match_candidate,
    train_grpo,
)


def _obs(step: int = 3, positions: tuple[PositionView, ...] = ()) -> Observation:
    stocks = (
        StockQuote("BBLN", 100.0, 0.5, 1.2, 0.8, None, 0.0),
        StockQuote("NOVA", 50.0, -0.4, -0.9, -1.5, "Nova Dynamics misses revenue guidance", -0.7),
    )
    markets = (PredictionQuote("pm-1", "Will it rain?", 0.3, 0.02, 10),)
    return Observation(step, 20, "12:09", 1000.0, 0.0, positions, (), stocks, markets)


def _choice(text: str) -> Any:
    """An assistant turn as ART trains it: a Choice carrying (here arbitrary) token ids."""
    from openai.types.chat import ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice

    return Choice(finish_reason="stop", index=0, logprobs=None,
                  message=ChatCompletionMessage(role="assistant", content=text),
                  prompt_token_ids=[1, 2, 3], token_ids=[4, 5])


def _traj(messages: list[dict[str, Any]], reward: float = 0.0) -> Any:
    """Assistant dicts become trainable Choices; `{"role": "assistant-dict"}` stays a plain dict."""
    items = [m if not isinstance(m, dict) else _choice(m["content"]) if m["role"] == "assistant" else
             ({**m, "role": "assistant"} if m["role"] == "assistant-dict" else m) for m in messages]
    return types.SimpleNamespace(messages_and_choices=items, reward=reward)


def _random_batch(rng: np.random.Generator, n: int = 40) -> TurnBatch:
    c = 9
    x = rng.normal(size=(n, c, FEATURE_DIM))
    mask = np.ones((n, c), bool)
    for i in range(n):  # ragged candidate sets
        k = int(rng.integers(2, c + 1))
        mask[i, k:] = False
        x[i, k:] = 0.0
    chosen = np.array([int(rng.integers(0, mask[i].sum())) for i in range(n)])
    return TurnBatch(x, mask, chosen, rng.normal(size=n))


# -- advantages and extraction -----------------------------------------------------------------


def test_group_advantages_are_standardized() -> None:
    r = [0.0, 0.25, 0.5, 1.0]
    a = group_advantages(r)
    assert a is not None
    expected = (np.array(r) - np.mean(r)) / (np.std(r) + 1e-6)
    np.testing.assert_allclose(a, expected)
    assert abs(a.mean()) < 1e-12 and abs(a.std() - 1.0) < 1e-5


def test_equal_or_single_rewards_carry_no_signal() -> None:
    assert group_advantages([0.7, 0.7, 0.7]) is None
    assert group_advantages([0.3]) is None
    assert group_advantages([]) is None


def test_equal_reward_groups_are_skipped_and_counted(sim_groups: list[Any]) -> None:
    g = sim_groups[0]
    flat = [types.SimpleNamespace(messages_and_choices=t.messages_and_choices, reward=0.5,
                                  additional_histories=t.additional_histories) for t in g.trajectories]
    batch, stats = build_batch([flat, sim_groups[1]])
    assert stats.groups_submitted == 2
    assert stats.groups_skipped_equal_reward == 1
    assert stats.groups_trainable == 1
    assert stats.trajectories == 16
    assert batch.n == stats.turns.trainable == 8 * 20  # every step of the other group
    assert stats.turns.unparseable == 0
    # Each turn carries its trajectory's group-relative advantage.
    adv = group_advantages([t.reward for t in sim_groups[1].trajectories])
    assert adv is not None
    np.testing.assert_allclose(batch.advantages, np.repeat(adv, 20))


def test_reward_stats_follow_art_definitions(sim_groups: list[Any]) -> None:
    _, stats = build_batch(sim_groups)
    rewards = [[t.reward for t in g.trajectories] for g in sim_groups]
    assert stats.reward_mean == pytest.approx(np.mean(rewards))
    assert stats.reward_std_dev == pytest.approx(np.mean([np.std(r) for r in rewards]))


def test_extract_turns_counts_what_it_cannot_use() -> None:
    obs = _obs()
    held = _obs(positions=(PositionView("BBLN", "long", 100.0, 99.0, 1.0),))
    user = render_user_prompt(obs)
    buy = Action(BUY_SHARES, market_id="pm-1", side="NO", amount=180.0)
    messages = [
        {"role": "system", "content": "You trade."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": "Momentum is strong; I lean long."},  # free-text reasoning call
        {"role": "user", "content": user + "\n\nYour analysis:\nlong"},
        {"role": "assistant", "content": format_response(Action(OPEN_LONG, ticker="BBLN", size=240.0), "go")},
        {"role": "user", "content": user},
        {"role": "assistant", "content": '{"action": {"actionType": "OPEN_LONG", "parameters": {"ticker": "ZZZZ"'},
        {"role": "user", "content": user},
        {"role": "assistant", "content": format_response(Action(OPEN_LONG, ticker="ZZZZ", size=100.0), "x")},
        {"role": "user", "content": "no state line here"},
        {"role": "assistant", "content": format_response(HOLD, "wait")},
        {"role": "user", "content": render_user_prompt(held)},
        {"role": "assistant", "content": format_response(Action(OPEN_LONG, ticker="BBLN", size=100.0), "x")},
        {"role": "user", "content": [{"type": "text", "text": user}]},  # content parts
        {"role": "assistant", "content": "Sure:\n```json\n" + format_response(buy, "fade") + "\n```"},
        {"role": "user", "content": user},
        {"role": "assistant-dict", "content": format_response(HOLD, "wait")},  # ART would not train it
    ]
    counts = TurnCounts()
    turns = extract_turns(_traj(messages), counts)
    assert counts.choices == 7 and counts.trainable == 2
    assert counts.unparseable == 3  # prose, truncated JSON, unknown ticker
    assert counts.no_market_state == 1  # a prompt without a MARKET_STATE line
    assert counts.no_candidate == 1  # opening a ticker that is already held is not a candidate
    assert counts.not_trainable_by_art == 1 and counts.unmappable == 5
    cands = candidate_actions(obs)
    assert cands[turns[0].chosen] == Action(OPEN_LONG, ticker="BBLN", size=250.0)  # snapped to nearest
    assert cands[turns[1].chosen] == Action(BUY_SHARES, market_id="pm-1", side="NO", amount=250.0)


def test_match_candidate_by_type_and_target() -> None:
    cands = candidate_actions(_obs())
    assert cands[match_candidate(HOLD, cands)] == HOLD
    i = match_candidate(Action(OPEN_LONG, ticker="NOVA", size=120.0), cands)
    assert cands[i] == Action(OPEN_LONG, ticker="NOVA", size=100.0)
    assert match_candidate(Action("CLOSE_POSITION", ticker="NOVA"), cands) is None


# -- the objective -----------------------------------------------------------------------------


def _objective_setup(seed: int, clip: float) -> tuple[TurnBatch, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = _random_batch(rng)
    w_old = rng.normal(scale=0.3, size=FEATURE_DIM)
    w_ref = rng.normal(scale=0.3, size=FEATURE_DIM)
    w = w_old + rng.normal(scale=0.15, size=FEATURE_DIM)
    lp_old, _ = log_softmax(batch.features, batch.mask, w_old, 1.3)
    lp_ref, _ = log_softmax(batch.features, batch.mask, w_ref, 1.3)
    return batch, w, lp_old[np.arange(batch.n), batch.chosen], lp_ref


@pytest.mark.parametrize("clip", [0.2, 10.0])
def test_gradient_matches_finite_differences(clip: float) -> None:
    batch, w, lp_old, lp_ref = _objective_setup(7, clip)
    kw = {"clip_epsilon": clip, "kl_coef": 0.3, "temperature": 1.3}
    loss, grad, info = grpo_objective(w, batch, lp_old, lp_ref, **kw)
    if clip < 1.0:
        assert 0.0 < info.clip_fraction < 1.0  # both branches of the min are exercised
    h = 1e-6
    num = np.zeros_like(w)
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        num[j] = (grpo_objective(w + e, batch, lp_old, lp_ref, **kw)[0]
                  - grpo_objective(w - e, batch, lp_old, lp_ref, **kw)[0]) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)
    assert loss == pytest.approx(info.policy_loss + 0.3 * info.kl)


def test_objective_at_old_policy_is_the_policy_gradient() -> None:
    """At theta = theta_old every ratio is 1: loss = -mean(A), gradient = -mean(A * grad log pi)."""
    rng = np.random.default_rng(3)
    batch = _random_batch(rng)
    w = rng.normal(size=FEATURE_DIM)
    lp, p = log_softmax(batch.features, batch.mask, w, 1.0)
    rows = np.arange(batch.n)
    loss, grad, info = grpo_objective(w, batch, lp[rows, batch.chosen], lp, clip_epsilon=0.2, kl_coef=1.0)
    assert info.kl == pytest.approx(0.0, abs=1e-12) and info.clip_fraction == 0.0
    assert loss == pytest.approx(-batch.advantages.mean())
    score = batch.features[rows, batch.chosen] - np.einsum("nc,ncd->nd", p, batch.features)
    np.testing.assert_allclose(grad, -(batch.advantages[:, None] * score).mean(0), atol=1e-12)


def test_clipping_zeroes_the_gradient_beyond_the_trust_region() -> None:
    """Once pi_theta/pi_old > 1 + eps on a positive-advantage turn, that turn stops pushing."""
    rng = np.random.default_rng(11)
    batch = _random_batch(rng, 1)
    batch.advantages[:] = 1.0
    w_old = np.zeros(FEATURE_DIM)
    lp_old = log_softmax(batch.features, batch.mask, w_old, 1.0)[0][0, batch.chosen]
    _, g0, _ = grpo_objective(w_old, batch, lp_old, np.zeros((1, batch.mask.shape[1])), clip_epsilon=0.2, kl_coef=0)
    w = w_old - 2.0 * g0 / np.linalg.norm(g0)  # move along the ascent direction of pi(a)
    lp = log_softmax(batch.features, batch.mask, w, 1.0)[0][0, batch.chosen]
    assert np.exp(lp - lp_old) > 1.2
    _, g, info = grpo_objective(w, batch, lp_old, np.zeros((1, batch.mask.shape[1])), clip_epsilon=0.2, kl_coef=0)
    assert info.clip_fraction == 1.0
    np.testing.assert_array_equal(g, np.zeros(FEATURE_DIM))


def test_clipping_limits_how_far_one_call_moves_the_policy(sim_groups: list[Any]) -> None:
    batch, _ = build_batch(sim_groups)
    w0 = np.zeros(FEATURE_DIM)
    kw = {"w_ref": w0, "learning_rate": 0.2, "epochs": 30, "kl_coef": 0.0, "temperature": 1.0, "minibatch_size": 10_000}
    clipped = train_grpo(w0, batch, clip_epsilon=0.1, **kw)
    unclipped = train_grpo(w0, batch, clip_epsilon=0.999, **kw)  # lower bound 0.001: effectively unclipped
    lp0 = log_softmax(batch.features, batch.mask, w0, 1.0)[0][np.arange(batch.n), batch.chosen]

    def ratios(w: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(batch.features, batch.mask, w, 1.0)[0][np.arange(batch.n), batch.chosen] - lp0)

    pos = batch.advantages > 0
    assert clipped.metrics["kl_new_old"] < 0.5 * unclipped.metrics["kl_new_old"]
    assert np.median(ratios(clipped.weights)[pos]) < np.median(ratios(unclipped.weights)[pos])
    assert np.linalg.norm(clipped.weights) < np.linalg.norm(unclipped.weights)


def test_kl_term_pulls_toward_the_reference(sim_groups: list[Any]) -> None:
    batch, _ = build_batch(sim_groups)
    batch.advantages[:] = 0.0  # no reward signal: only the KL term acts
    rng = np.random.default_rng(2)
    w_ref = np.zeros(FEATURE_DIM)
    w0 = rng.normal(scale=1.0, size=FEATURE_DIM)

    def kl_to_ref(w: np.ndarray) -> float:
        lp, p = log_softmax(batch.features, batch.mask, w, 1.0)
        lr, _ = log_softmax(batch.features, batch.mask, w_ref, 1.0)
        return float((p * (lp - lr)).sum(1).mean())

    kw = {"w_ref": w_ref, "learning_rate": 0.05, "epochs": 10, "clip_epsilon": 0.2, "temperature": 1.0,
          "minibatch_size": 256}
    pulled = train_grpo(w0, batch, kl_coef=0.5, **kw)
    assert kl_to_ref(pulled.weights) < 0.5 * kl_to_ref(w0)
    assert np.linalg.norm(pulled.weights - w_ref) < np.linalg.norm(w0 - w_ref)
    idle = train_grpo(w0, batch, kl_coef=0.0, **kw)
    np.testing.assert_allclose(idle.weights, w0, atol=1e-9)  # zero advantage, no KL: nothing to learn


def test_training_raises_the_probability_of_better_actions(sim_groups: list[Any]) -> None:
    batch, _ = build_batch(sim_groups)
    w0 = np.zeros(FEATURE_DIM)
    out = train_grpo(w0, batch, w_ref=w0, learning_rate=0.05, epochs=4, clip_epsilon=0.2, kl_coef=0.05, temperature=1.0,
                     minibatch_size=256)
    rows = np.arange(batch.n)
    lp0 = log_softmax(batch.features, batch.mask, w0, 1.0)[0][rows, batch.chosen]
    lp1 = log_softmax(batch.features, batch.mask, out.weights, 1.0)[0][rows, batch.chosen]
    # The advantage-weighted log-likelihood of the taken actions goes up (the surrogate improves).
    assert float((batch.advantages * (lp1 - lp0)).mean()) > 0.0
    assert out.optimizer_steps == 4 * -(-batch.n // 256)
    assert set(out.metrics) >= {"loss", "policy_loss", "kl", "entropy", "grad_norm", "clip_fraction", "kl_new_old"}


def test_empty_batch_trains_nothing() -> None:
    w0 = np.ones(FEATURE_DIM)
    out = train_grpo(w0, TurnBatch.empty(), w_ref=w0, learning_rate=0.1, epochs=4, clip_epsilon=0.2, kl_coef=0.05,
                     temperature=1.0, minibatch_size=256)
    assert out.optimizer_steps == 0
    np.testing.assert_array_equal(out.weights, w0)
