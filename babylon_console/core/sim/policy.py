"""Decision protocols and the checkpoint-driven linear softmax policy.

`LinearSoftmaxPolicy` is the single definition of a checkpoint-driven agent: the offline GRPO
trainer writes its weights with `save`, the simulator loads them with `load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

from ..errors import InvalidInput
from .actions import FEATURE_DIM, FEATURE_NAMES, Action, candidate_features, format_response
from .observation import Observation

CHECKPOINT_FORMAT = "babylon-linear-softmax"
CHECKPOINT_VERSION = 1


@dataclass(slots=True)
class Decision:
    """One step's choice plus what to record for it."""

    action: Action  # what the portfolio executes (HOLD when `error` is set)
    reasoning: str
    response: str  # the raw response text recorded in llmCalls / llm_call_logs
    thought: str | None = None  # response of a preceding "reasoning" call (two-call step)
    # Pre-serialized JSON of action.parameters() and of `reasoning`, when the policy already built
    # them for the response; the episode reuses them instead of encoding twice.
    params_json: str | None = None
    reasoning_json: str | None = None
    response_json: str | None = None  # `response` as a JSON string literal (filled by the episode)
    error: str | None = None  # unusable output (parse or network failure): recorded as a failed action
    attempted_type: str | None = None  # the action type an unusable response tried, if any
    attempted_parameters: dict[str, Any] | None = None
    model: str | None = None  # overrides the agent's model name for this call
    latency_ms: int | None = None  # measured latency (endpoint agents); simulated otherwise
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprob: float | None = None  # log-probability of the chosen action under a stochastic policy


@runtime_checkable
class Policy(Protocol):
    name: str

    def decide(self, obs: Observation, rng: np.random.Generator) -> Decision: ...


@runtime_checkable
class AsyncPolicy(Protocol):
    """A policy that needs I/O (an LLM endpoint); it sees the exact prompts that get recorded."""

    name: str

    async def adecide(
        self, obs: Observation, rng: np.random.Generator, system_prompt: str, user_prompt: str
    ) -> Decision: ...


class CheckpointError(InvalidInput, ValueError):
    """A policy checkpoint file is missing, corrupt or incompatible."""

    title = "Unusable policy checkpoint"


def _describe(action: Action) -> str:
    t = action.action_type
    if t == "BUY_SHARES":
        return f"BUY {action.side} {action.market_id} ${action.amount:.0f}"
    if t in ("OPEN_LONG", "OPEN_SHORT"):
        return f"{t} {action.ticker} ${action.size:.0f}"
    if t == "CLOSE_POSITION":
        return f"CLOSE {action.ticker}"
    return "HOLD"


class LinearSoftmaxPolicy:
    """Softmax over `candidate_actions(obs)` with logits `weights @ action_features(obs, a) / T`."""

    persona = "linear"

    def __init__(
        self,
        weights: np.ndarray | list[float],
        temperature: float = 1.0,
        name: str = "linear",
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (FEATURE_DIM,):
            raise ValueError(f"weights must have shape ({FEATURE_DIM},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError("temperature must be a positive number")
        self.weights = w
        self.temperature = float(temperature)
        self.name = name
        self.model = model or f"sim/{name}"
        self.metadata = dict(metadata or {})

    @classmethod
    def zeros(cls, **kw: Any) -> LinearSoftmaxPolicy:
        """Uniform over candidates: the untrained starting point."""
        return cls(np.zeros(FEATURE_DIM), **kw)

    def action_probabilities(self, obs: Observation) -> tuple[list[Action], np.ndarray]:
        cands, x = candidate_features(obs)
        return cands, self._probs(x)

    def _probs(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.weights / self.temperature
        z -= z.max()
        e = np.exp(z)
        return e / e.sum()

    def decide(self, obs: Observation, rng: np.random.Generator) -> Decision:
        cands, x = candidate_features(obs)
        p = self._probs(x)
        i = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
        i = min(i, len(cands) - 1)
        action = cands[i]
        contrib = x[i] * self.weights
        top = np.argsort(-np.abs(contrib))[:2]
        why = ", ".join(f"{FEATURE_NAMES[j]} {x[i, j]:+.2f}" for j in top if contrib[j] != 0.0)
        reasoning = f"{_describe(action)} (p={p[i]:.2f} of {len(cands)} options)" + (
            f": {why}." if why else "."
        )
        return Decision(action, reasoning, format_response(action, reasoning), logprob=float(np.log(p[i])))

    # -- checkpoint files -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "feature_dim": FEATURE_DIM,
            "feature_names": list(FEATURE_NAMES),
            "weights": [float(v) for v in self.weights],
            "temperature": self.temperature,
            "name": self.name,
            "model": self.model,
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write a JSON checkpoint (atomically: a temp file renamed into place)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> LinearSoftmaxPolicy:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read policy checkpoint {p}: {e.strerror or e}") from e
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise CheckpointError(f"policy checkpoint {p} is not valid JSON ({e})") from e
        if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{p} is not a {CHECKPOINT_FORMAT} checkpoint")
        if d.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"policy checkpoint {p} has version {d.get('version')!r}; this simulator reads version "
                f"{CHECKPOINT_VERSION}"
            )
        if d.get("feature_dim") != FEATURE_DIM:
            raise CheckpointError(
                f"policy checkpoint {p} has feature_dim {d.get('feature_dim')!r}; "
                f"this simulator uses {FEATURE_DIM}"
            )
        names = d.get("feature_names")
        if names is not None and list(names) != list(FEATURE_NAMES):
            raise CheckpointError(f"policy checkpoint {p} was trained on different features: {names}")
        w = d.get("weights")
        if (
            not isinstance(w, list)
            or len(w) != FEATURE_DIM
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in w
            )
        ):
            raise CheckpointError(f"policy checkpoint {p} must hold {FEATURE_DIM} finite weights")
        temperature = d.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise CheckpointError(f"policy checkpoint {p} has an invalid temperature {temperature!r}")
        kw: dict[str, Any] = {
            "temperature": float(temperature),
            "name": str(d.get("name") or "linear"),
            "model": d.get("model"),
            "metadata": d.get("metadata") if isinstance(d.get("metadata"), dict) else {},
        }
        kw.update(overrides)
        return cls(np.asarray(w, dtype=np.float64), **kw)
