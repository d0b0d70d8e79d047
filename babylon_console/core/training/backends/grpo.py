"""GRPO for the simulator's linear softmax policy, in numpy.

The policy (`babylon_console.core.sim.policy.LinearSoftmaxPolicy`) scores each candidate action `a`
of an observation `s` with `w @ phi(s, a) / T` and samples from the softmax over the candidates
(`candidate_features`). This module trains `w` from recorded trajectory groups with the GRPO objective:

* **Advantages are group-relative.** Each group is one scenario (one hourly window). Trajectory `i`
  gets `A_i = (r_i - mean(r)) / (std(r) + eps)` (population std, like ART). A group whose rewards
  are all equal carries no signal; it is skipped and counted (`groups_skipped_equal_reward`).
* **Trainable turns.** Exactly the turns ART would train: openai `Choice`s carrying token ids,
  in `messages_and_choices` and every `additional_histories` entry (plain-dict assistant
  messages train nothing in ART, so nothing here either; they are counted). Such a turn trains
  when its preceding user message holds a parseable `MARKET_STATE` line
  (`Observation.from_prompt`) and its text parses to an action (`parse_response`) that matches a
  candidate of that observation by action type and target (ticker, or market id and side). Order
  sizes are snapped to the nearest candidate size. The others (game prompts without a market
  state, free-text reasoning, malformed JSON, unknown tickers, an open on a ticker already held)
  are reported under their reason, never dropped silently. Each trainable turn carries its
  trajectory's advantage.
* **Loss.** Per turn, the clipped surrogate `-min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)` with
  `rho = pi_theta(a|s) / pi_old(a|s)`, plus `kl_coef * KL(pi_theta(.|s) || pi_ref(.|s))`, both
  averaged over turns. Recorded game data has no logprobs, so `pi_old` is the policy at the start of
  the training call (this is what `allow_training_without_logprobs=True` means here), and `pi_ref`
  is the step-0 policy. The KL is exact: the action set of a state is small and enumerable.
* **Gradients are analytic.** With `z = X w / T`, `grad_w log pi(a) = (phi(a) - E_pi[phi]) / T`,
  and `grad_z KL = pi * (log pi - log pi_ref - KL)`. `tests/backends` checks them against finite
  differences.

Turns are stacked into padded arrays (turns x max candidates x features, with a mask), so one
training call over a few hundred turns takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babylon_console.core.sim.actions import (
    BUY_SHARES,
    CLOSE_POSITION,
    FEATURE_DIM,
    HOLD_T,
    Action,
    candidate_features,
    parse_response,
)
from babylon_console.core.sim.observation import Observation

ADV_EPS = 1e-6
_UNSET = object()
_MAX_LOG_RATIO = 30.0  # exp() guard; a ratio this far from 1 is clipped or penalised anyway


# -- extracting turns --------------------------------------------------------------------------


def _text(content: Any) -> str | None:
    """The text of a chat message's content (a string or a list of OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return None


def histories(trajectory: Any) -> Iterator[list[Any]]:
    """Each history of an `art.Trajectory`: `messages_and_choices`, then `additional_histories`."""
    items = getattr(trajectory, "messages_and_choices", None)
    if items is None and isinstance(trajectory, dict):
        items = trajectory.get("messages_and_choices") or trajectory.get("messages")
    yield list(items or ())
    for extra in getattr(trajectory, "additional_histories", None) or ():
        yield list(getattr(extra, "messages_and_choices", None) or ())


def is_trainable_choice(item: Any) -> bool:
    """What ART trains: an openai `Choice` carrying `prompt_token_ids` and `token_ids`."""
    extra = getattr(item, "model_extra", None) or {}
    return not isinstance(item, dict) and "prompt_token_ids" in extra and bool(extra.get("token_ids"))


def iter_choice_turns(trajectory: Any, counts: TurnCounts | None = None) -> Iterator[tuple[str | None, str | None]]:
    """(preceding user text, response text) of every turn ART would train, in order. Assistant
    turns ART would not train (plain dicts, Choices without token ids) are counted, not yielded."""
    for history in histories(trajectory):
        last_user: str | None = None
        for item in history:
            if isinstance(item, dict):
                role = str(item.get("role", ""))
                if role == "user":
                    last_user = _text(item.get("content"))
                elif role == "assistant" and counts is not None:
                    counts.not_trainable_by_art += 1
                continue
            if not is_trainable_choice(item):
                if counts is not None:
                    counts.not_trainable_by_art += 1
                continue
            yield last_user, _text(getattr(getattr(item, "message", None), "content", None))


def match_candidate(action: Action, candidates: list[Action]) -> int | None:
    """Index of the candidate with the same type and target as `action` (nearest size), or None."""
    t = action.action_type
    best: int | None = None
    best_d = float("inf")
    for i, c in enumerate(candidates):
        if c.action_type != t:
            continue
        if t == HOLD_T:
            return i
        if t == BUY_SHARES:
            if c.market_id != action.market_id or c.side != action.side:
                continue
            d = abs(c.amount - action.amount)
        else:
            if c.ticker != action.ticker:
                continue
            if t == CLOSE_POSITION:
                return i
            d = abs(c.size - action.size)
        if d < best_d:
            best, best_d = i, d
    return best


@dataclass(slots=True)
class Turn:
    features: np.ndarray  # (n_candidates, FEATURE_DIM)
    chosen: int


@dataclass(slots=True)
class TurnCounts:
    """Every turn ART would train is either trained here or counted under the reason it was not."""

    choices: int = 0  # turns ART would train (Choices with token ids)
    trainable: int = 0  # of those, mapped to a simulator action and trained
    no_market_state: int = 0  # the prompt has no parseable MARKET_STATE line (not a simulator prompt)
    unparseable: int = 0  # the response is not a valid simulator action
    no_candidate: int = 0  # a valid action that is not among the observation's candidates
    not_trainable_by_art: int = 0  # plain-dict assistant messages, Choices without token ids

    @property
    def unmappable(self) -> int:
        return self.no_market_state + self.unparseable + self.no_candidate


def extract_turns(trajectory: Any, counts: TurnCounts | None = None) -> list[Turn]:
    """The trainable (observation, chosen candidate) turns of one trajectory, in order."""
    counts = counts if counts is not None else TurnCounts()
    out: list[Turn] = []
    obs: Observation | None = None
    obs_for: object = _UNSET
    for user, text in iter_choice_turns(trajectory, counts):
        counts.choices += 1
        if user is not obs_for:  # parse each prompt once
            obs = Observation.from_prompt(user)
            obs_for = user
        if obs is None:
            counts.no_market_state += 1
            continue
        parsed = parse_response(text, obs)
        if parsed.action is None:
            counts.unparseable += 1
            continue
        cands, x = candidate_features(obs)
        i = match_candidate(parsed.action, cands)
        if i is None:
            counts.no_candidate += 1
            continue
        counts.trainable += 1
        out.append(Turn(x, i))
    return out


# -- batches -----------------------------------------------------------------------------------


def group_advantages(rewards: Iterable[float], eps: float = ADV_EPS) -> np.ndarray | None:
    """`(r - mean) / (std + eps)`, or None when the rewards are all equal (no signal)."""
    r = np.asarray(list(rewards), dtype=np.float64)
    if r.size < 2 or not np.all(np.isfinite(r)) or float(np.ptp(r)) <= 1e-12:
        return None
    return (r - r.mean()) / (r.std() + eps)


@dataclass(slots=True)
class TurnBatch:
    """Padded arrays of trainable turns: features (N, C, D), mask (N, C), chosen (N,), advantages (N,)."""

    features: np.ndarray
    mask: np.ndarray
    chosen: np.ndarray
    advantages: np.ndarray

    @property
    def n(self) -> int:
        return int(self.chosen.shape[0])

    def take(self, idx: np.ndarray) -> TurnBatch:
        return TurnBatch(self.features[idx], self.mask[idx], self.chosen[idx], self.advantages[idx])

    @classmethod
    def empty(cls) -> TurnBatch:
        return cls(
            np.zeros((0, 1, FEATURE_DIM)), np.zeros((0, 1), bool), np.zeros(0, np.int64), np.zeros(0)
        )

    @classmethod
    def stack(cls, turns: list[Turn], advantages: list[float]) -> TurnBatch:
        if not turns:
            return cls.empty()
        n = len(turns)
        c = max(t.features.shape[0] for t in turns)
        x = np.zeros((n, c, FEATURE_DIM))
        mask = np.zeros((n, c), bool)
        for i, t in enumerate(turns):
            k = t.features.shape[0]
            x[i, :k] = t.features
            mask[i, :k] = True
        return cls(x, mask, np.asarray([t.chosen for t in turns], np.int64), np.asarray(advantages, np.float64))


@dataclass(slots=True)
class BatchStats:
    groups_submitted: int = 0
    groups_trainable: int = 0
    groups_skipped_equal_reward: int = 0
    trajectories: int = 0
    turns: TurnCounts = field(default_factory=TurnCounts)
    reward_mean: float = 0.0
    reward_std_dev: float = 0.0  # mean over groups of the within-group std (ART's definition)


def _trajectories(group: Any) -> list[Any]:
    return list(getattr(group, "trajectories", group))


def build_batch(groups: Iterable[Any], eps: float = ADV_EPS) -> tuple[TurnBatch, BatchStats]:
    """Turn trajectory groups into a padded batch of trainable turns with their advantages."""
    stats = BatchStats()
    turns: list[Turn] = []
    advs: list[float] = []
    all_rewards: list[float] = []
    stds: list[float] = []
    for group in groups:
        trajs = _trajectories(group)
        stats.groups_submitted += 1
        stats.trajectories += len(trajs)
        rewards = [float(getattr(t, "reward", 0.0)) for t in trajs]
        all_rewards.extend(rewards)
        if rewards:
            stds.append(float(np.std(rewards)))
        a = group_advantages(rewards, eps)
        if a is None:
            stats.groups_skipped_equal_reward += 1
            continue
        before = len(turns)
        for t, adv in zip(trajs, a, strict=True):
            ts = extract_turns(t, stats.turns)
            turns.extend(ts)
            advs.extend([float(adv)] * len(ts))
        if len(turns) > before:
            stats.groups_trainable += 1
    if all_rewards:
        stats.reward_mean = float(np.mean(all_rewards))
        stats.reward_std_dev = float(np.mean(stds))
    return TurnBatch.stack(turns, advs), stats


# -- the objective -----------------------------------------------------------------------------


def log_softmax(x: np.ndarray, mask: np.ndarray, w: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(log pi, pi) over each turn's candidates; padded entries are 0 in both."""
    z = np.einsum("ncd,d->nc", x, w) / temperature
    z = np.where(mask, z, -np.inf)
    m = z.max(axis=1, keepdims=True)
    e = np.where(mask, np.exp(z - m), 0.0)
    logp = z - m - np.log(e.sum(axis=1, keepdims=True))
    logp = np.where(mask, logp, 0.0)
    return logp, np.where(mask, np.exp(logp), 0.0)


@dataclass(slots=True)
class ObjectiveInfo:
    loss: float
    policy_loss: float
    kl: float
    entropy: float
    clip_fraction: float


def grpo_objective(
    w: np.ndarray,
    batch: TurnBatch,
    logp_old: np.ndarray,
    logp_ref: np.ndarray,
    *,
    clip_epsilon: float,
    kl_coef: float,
    temperature: float = 1.0,
) -> tuple[float, np.ndarray, ObjectiveInfo]:
    """Loss, its gradient in `w`, and diagnostics.

    `logp_old` (N,) is log pi_old of each chosen action; `logp_ref` (N, C) is log pi_ref over the
    candidates (0 where padded).
    """
    n = batch.n
    if n == 0:
        return 0.0, np.zeros_like(w), ObjectiveInfo(0.0, 0.0, 0.0, 0.0, 0.0)
    x, mask, chosen, adv = batch.features, batch.mask, batch.chosen, batch.advantages
    rows = np.arange(n)
    logp, p = log_softmax(x, mask, w, temperature)
    lp = logp[rows, chosen]
    ratio = np.exp(np.clip(lp - logp_old, -_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    unclipped = ratio * adv
    clipped = np.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv
    surrogate = np.minimum(unclipped, clipped)
    # min() picks the unclipped term (and its gradient) unless clipping made it strictly smaller.
    active = unclipped <= clipped
    coef = np.where(active, -adv * ratio, 0.0)  # d(-surrogate) / d log pi(a)
    ex = np.einsum("nc,ncd->nd", p, x)
    g_policy = np.einsum("n,nd->d", coef, x[rows, chosen] - ex) / (n * temperature)

    log_ratio_ref = np.where(mask, logp - logp_ref, 0.0)
    kl = (p * log_ratio_ref).sum(axis=1)
    dkl_dz = p * (log_ratio_ref - kl[:, None])
    g_kl = np.einsum("nc,ncd->d", dkl_dz, x) / (n * temperature)

    policy_loss = float(-surrogate.mean())
    kl_mean = float(kl.mean())
    loss = policy_loss + kl_coef * kl_mean
    grad = g_policy + kl_coef * g_kl
    entropy = float(-(p * logp).sum(axis=1).mean())
    clip_fraction = float(np.mean(np.abs(ratio - 1.0) > clip_epsilon))
    return loss, grad, ObjectiveInfo(loss, policy_loss, kl_mean, entropy, clip_fraction)


@dataclass(slots=True)
class TrainOutcome:
    weights: np.ndarray
    metrics: dict[str, float]
    optimizer_steps: int


def train_grpo(
    w_init: np.ndarray,
    batch: TurnBatch,
    *,
    w_ref: np.ndarray,
    learning_rate: float,
    epochs: int,
    clip_epsilon: float,
    kl_coef: float,
    temperature: float,
    minibatch_size: int,
    rng: np.random.Generator | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
) -> TrainOutcome:
    """Adam on the GRPO objective: `epochs` passes over shuffled minibatches of turns.

    pi_old is the policy at `w_init` (fixed for the whole call). Adam's moments start fresh each
    call. Metrics are the means over optimizer steps of the values seen before each update. The
    hyperparameters have no defaults here: `OfflineBackend` declares them once and checks them.
    """
    w = np.array(w_init, dtype=np.float64)
    if batch.n == 0:
        zero = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0, "clip_fraction": 0.0}
        return TrainOutcome(w, zero | {"kl_new_old": 0.0}, 0)
    rng = rng if rng is not None else np.random.default_rng(0)
    logp0, _ = log_softmax(batch.features, batch.mask, w, temperature)
    logp_old_all = logp0[np.arange(batch.n), batch.chosen]
    logp_ref_all, _ = log_softmax(batch.features, batch.mask, np.asarray(w_ref, np.float64), temperature)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    b1, b2 = betas
    t = 0
    sums = dict.fromkeys(("loss", "policy_loss", "kl", "entropy", "grad_norm", "clip_fraction"), 0.0)
    size = max(1, int(minibatch_size))
    for _ in range(max(1, int(epochs))):
        order = rng.permutation(batch.n)
        for start in range(0, batch.n, size):
            idx = order[start : start + size]
            mb = batch.take(idx)
            _, grad, info = grpo_objective(
                w, mb, logp_old_all[idx], logp_ref_all[idx],
                clip_epsilon=clip_epsilon, kl_coef=kl_coef, temperature=temperature,
            )
            t += 1
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            w = w - learning_rate * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
            sums["loss"] += info.loss
            sums["policy_loss"] += info.policy_loss
            sums["kl"] += info.kl
            sums["entropy"] += info.entropy
            sums["grad_norm"] += float(np.linalg.norm(grad))
            sums["clip_fraction"] += info.clip_fraction
    metrics = {k: s / t for k, s in sums.items()}
    # How far this call moved the policy on its own data: mean KL(pi_new || pi_old).
    logp1, p1 = log_softmax(batch.features, batch.mask, w, temperature)
    metrics["kl_new_old"] = float((p1 * (logp1 - logp0)).sum(axis=1).mean())
    return TrainOutcome(w, metrics, t)
