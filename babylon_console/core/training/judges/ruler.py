"""The `ruler` judge: ART's RULER with a trading rubric and the window's ground truth as context.

How the ground truth reaches the judge: `ruler()` is called directly with one message list per
trajectory, each being `[ground_truth_message, *training_messages]`. The ground-truth message is the
same object at the head of every list, so RULER finds it in the common prefix and sends it once,
inside `<context>`, ahead of the trajectories. The training messages themselves (`item.messages`) are
never changed: the lists handed to RULER are new lists.

RULER raises at once on malformed judge output (pydantic `ValidationError`, a `ValueError`) and on
transport errors; it re-asks once itself on a wrong number of scores. Here every attempt is bounded
by `timeout_s` per request, transient failures are retried with exponential backoff up to
`max_attempts`, client errors (401/403/404/400) fail at once, and the last failure becomes a
`JudgeError` naming the window.

`art` and `litellm` are imported inside the methods that need them (they take seconds to import).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Sequence
from typing import Any

from babylon_console.core.game.rows import WindowGroundTruth

from .base import JudgeError, JudgeInput, TrajectoryScore, WindowJudgment, ground_truth_text
from .outcome import AnswerScore

TRADING_RUBRIC = """\
The agents are traders in the Babylon market game. In one hour they trade stock perpetuals (OPEN_LONG, \
OPEN_SHORT, CLOSE_POSITION), buy prediction-market shares (BUY_SHARES with a side YES or NO) or HOLD. \
Each message list shows what an agent saw (its prompts) and what it answered (its actions).
The first message inside <context>, marked JUDGE-ONLY GROUND TRUTH, was never shown to the agents: \
it records what the markets actually did over the hour. Use it to judge their decisions.
- Results first: a trajectory that made money while reading the market correctly should score well \
above one that lost money. Compare each agent's realized and marked P&L with what the market did \
(a long in a stock that fell or a short in one that rose is a wrong call) and with the other agents.
- Information use: reward positions that follow the news and price action the agent was shown, and \
prediction-market bets on the side that resolved true, bought at a sensible price. Penalize ignoring \
clear signals and betting against strong evidence.
- Risk control: penalize oversized orders relative to the balance, piling into one market, large \
drawdowns, and trading for its own sake. Holding when nothing is clear is acceptable, not a failure.
- Valid actions: penalize malformed or invalid actions, unknown tickers or markets, failed orders and \
responses that do not follow the required JSON format.
- Judge decisions by what the agent could know when it acted; use the ground truth to tell good \
calls from bad ones, but do not reward pure luck as much as well-reasoned, correct calls.
- Scores are relative: slightly better deserves a slightly higher score, much better a much higher one. \
Use the whole range from 0 to 1 when the trajectories differ clearly.
"""

ANSWER_RUBRIC = """\
Each message list is the answer of a different model to the same prompt, given to a trader in the \
Babylon market game: it may trade stock perpetuals (OPEN_LONG, OPEN_SHORT, CLOSE_POSITION), buy \
prediction-market shares (BUY_SHARES with a side YES or NO) or HOLD, answering with one JSON action.
The first message inside <context>, marked JUDGE-ONLY GROUND TRUTH, was never shown to the trader: \
it records what the markets actually did over the hour. Use it to judge each answer's decision.
- A position in the direction the stock then moved, or a bet on the side that resolved true, scores \
well above one against it. Holding when nothing was clear is acceptable, not a failure.
- Penalize orders that are oversized for the balance shown, and answers that are not one valid JSON \
action or name unknown tickers or markets: those score lowest.
- Judge by what the trader could know from the prompt; the ground truth tells good calls from bad ones.
- Scores are relative: use the whole range from 0 to 1 when the answers differ clearly, and equal \
scores when they make the same decision.
"""

GROUND_TRUTH_HEADER = (
    "JUDGE-ONLY GROUND TRUTH (never shown to the agents; use it to grade the trajectories below)."
)

# HTTP statuses that mean "this request will never work": fail at once instead of retrying.
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415, 422})
_MAX_BACKOFF_S = 30.0
_MAX_REASON_CHARS = 300


def ground_truth_message(gt: WindowGroundTruth) -> dict[str, str]:
    """The judge-only message that carries the window's ground truth into RULER's `<context>`."""
    return {"role": "system", "content": f"{GROUND_TRUTH_HEADER}\n{ground_truth_text(gt)}"}


def judge_message_lists(item: JudgeInput) -> list[list[dict[str, Any]]]:
    """New lists for RULER: the ground-truth message, then each trajectory's training messages."""
    head = ground_truth_message(item.ground_truth)
    return [[head, *messages] for messages in item.messages]


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


class _NonFiniteScore(ValueError):
    pass


_cost_meter_class: type | None = None


def _new_cost_meter() -> Any | None:
    """A MetricsBuilder that RULER's cost hook reports each judge response to (None if unavailable).

    RULER calls `MetricsBuilder.get_active().add_response_cost(...)` right after every judge call, in
    the calling task's context; this subclass sums what litellm priced (`response_cost`) and ignores
    responses it could not price. Activated per judge call, so concurrent windows never mix costs.
    """
    global _cost_meter_class
    if _cost_meter_class is None:
        try:
            from art.metrics import MetricsBuilder
        except ImportError:  # pragma: no cover - older ART without the metrics hook
            return None

        class CostMeter(MetricsBuilder):
            def __init__(self) -> None:
                super().__init__("babylon_judge")
                self.total_usd: float | None = None
                self.responses = 0

            def add_response_cost(self, source: str, response: Any, **kwargs: Any) -> float | None:
                self.responses += 1
                try:
                    cost = super().add_response_cost(source, response, **kwargs)
                except ValueError:  # litellm has no price for this model
                    cost = None
                if cost is not None and math.isfinite(cost):
                    self.total_usd = (self.total_usd or 0.0) + float(cost)
                return cost

        _cost_meter_class = CostMeter
    return _cost_meter_class()


def _classify(exc: BaseException) -> tuple[str, bool]:
    """(short kind, retryable) for an exception raised by one judge attempt."""
    from pydantic import ValidationError

    if isinstance(exc, _NonFiniteScore):
        return "malformed judge output (non-finite score)", True
    if isinstance(exc, ValidationError):
        return "malformed judge output", True
    if isinstance(exc, TimeoutError):
        return "timeout", True
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout", True
    if isinstance(status, int) and status in _PERMANENT_STATUSES:
        return f"{name} (HTTP {status})", False
    if isinstance(exc, ValueError):  # RULER: wrong number of scores / ids, no choices
        return "malformed judge output", True
    if isinstance(exc, (ConnectionError, OSError)) or "Connection" in name:
        return f"transport error ({name})", True
    if isinstance(status, int):
        return f"{name} (HTTP {status})", True
    return name, True


class RulerJudge:
    """RULER over one window's group, with the ground truth as judge-only shared context."""

    name = "ruler"
    scores_alone = False  # RULER ranks answers against each other

    def __init__(
        self,
        judge_model: str,
        base_url: str | None = None,
        api_key: Any = None,
        rubric: str = TRADING_RUBRIC,
        answer_rubric: str = ANSWER_RUBRIC,
        max_attempts: int = 3,
        timeout_s: float = 60,
        backoff_s: float = 1.0,
        extra_litellm_params: dict[str, Any] | None = None,
    ) -> None:
        if not judge_model:
            raise ValueError("judge_model is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if backoff_s < 0:
            raise ValueError("backoff_s must be >= 0")
        self.judge_model = judge_model
        self.base_url = base_url.rstrip("/") if base_url else None
        get_secret = getattr(api_key, "get_secret_value", None)  # accepts pydantic SecretStr
        self._api_key: str | None = get_secret() if callable(get_secret) else api_key
        self.rubric = rubric
        self.answer_rubric = answer_rubric
        self.max_attempts = int(max_attempts)
        self.timeout_s = float(timeout_s)
        self.backoff_s = float(backoff_s)
        self.extra_litellm_params = dict(extra_litellm_params or {})

    def __repr__(self) -> str:
        return (
            f"RulerJudge(judge_model={self.judge_model!r}, base_url={self.base_url!r}, "
            f"api_key={'set' if self._api_key else 'unset'}, max_attempts={self.max_attempts}, "
            f"timeout_s={self.timeout_s})"
        )

    # -- litellm --------------------------------------------------------------------------------

    def litellm_model(self) -> str:
        """The model name for litellm: an unknown provider prefix gets `openai/` when a base URL is set."""
        if self.base_url is None:
            return self.judge_model
        import litellm

        provider, sep, _ = self.judge_model.partition("/")
        if sep and provider in litellm.provider_list:
            return self.judge_model
        return f"openai/{self.judge_model}"

    def litellm_params(self) -> dict[str, Any]:
        """Per-request parameters: no hidden retries (this class retries), a timeout, the endpoint."""
        params: dict[str, Any] = {"timeout": self.timeout_s, "max_retries": 0, "num_retries": 0}
        if self.base_url is not None:
            params["api_base"] = self.base_url
            # A custom endpoint never receives the OpenAI key from the environment by accident.
            params["api_key"] = self._api_key or "EMPTY"
        elif self._api_key:
            params["api_key"] = self._api_key
        params.update(self.extra_litellm_params)
        return params

    def _reason(self, kind: str, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._api_key:
            text = text.replace(self._api_key, "***")
        if len(text) > _MAX_REASON_CHARS:
            text = text[: _MAX_REASON_CHARS - 1] + "…"
        return f"{kind}: {text}"

    def _delay(self, attempt: int) -> float:
        base = min(_MAX_BACKOFF_S, self.backoff_s * (2 ** (attempt - 1)))
        return base * (1.0 + 0.1 * random.random())  # a little jitter so many windows do not retry in step

    # -- judging --------------------------------------------------------------------------------

    async def judge(self, item: JudgeInput) -> WindowJudgment:
        started = time.perf_counter()
        if not item.trajectories:
            return WindowJudgment(
                window_id=item.window_id, judge=self.name, judge_model=self.judge_model, scores=[],
                cost_usd=None, attempts=0, duration_s=0.0,
            )
        raw, attempt, cost = await self._ruler(item.window_id, judge_message_lists(item), self.rubric)
        if len(raw) != len(item.trajectories):  # RULER guarantees one score per trajectory, in order
            raise JudgeError(item.window_id, f"RULER returned {len(raw)} scores for {len(item.trajectories)} "
                             "trajectories", attempts=attempt)
        scores = [
            TrajectoryScore(
                trajectory_id=t.trajectory_id,
                score=_clamp01(float(s.score)),
                explanation=(s.explanation or "").strip() or "(the judge gave no explanation)",
            )
            for t, s in zip(item.trajectories, raw, strict=True)
        ]
        return WindowJudgment(
            window_id=item.window_id,
            judge=self.name,
            judge_model=self.judge_model,
            scores=scores,
            cost_usd=cost,
            attempts=attempt,
            duration_s=time.perf_counter() - started,
        )

    async def judge_answers(self, window_id: str, gt: WindowGroundTruth, prompt: list[dict[str, Any]],
                            answers: Sequence[str]) -> list[AnswerScore]:
        """RULER over the answers of several models to one recorded prompt, side by side: one message
        list per answer (`[ground truth, *prompt, answer]`), so the judge reads the ground truth and
        the prompt once in `<context>` and compares the answers with each other."""
        head = ground_truth_message(gt)
        lists = [[head, *prompt, {"role": "assistant", "content": a}] for a in answers]
        raw, attempt, _ = await self._ruler(window_id, lists, self.answer_rubric)
        if len(raw) != len(answers):
            raise JudgeError(window_id, f"RULER returned {len(raw)} scores for {len(answers)} answers",
                             attempts=attempt)
        return [AnswerScore(_clamp01(float(s.score)), (s.explanation or "").strip() or "(no explanation)")
                for s in raw]

    async def _ruler(self, label: str, message_lists: list[list[dict[str, Any]]], rubric: str
                     ) -> tuple[list[Any], int, float | None]:
        """ART's `ruler` on these message lists with bounded, classified retries: (its scores, the
        attempts made, the judge cost when litellm priced it). The last failure is a `JudgeError`."""
        import litellm
        from art.rewards import ruler

        litellm.suppress_debug_info = True
        model = self.litellm_model()
        params = self.litellm_params()
        meter = _new_cost_meter()
        outer = _active_metrics_builder()
        # RULER may call the judge twice per attempt (one structural re-ask); bound the whole attempt.
        attempt_limit = 2 * self.timeout_s + 5.0
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    async with asyncio.timeout(attempt_limit):
                        if meter is not None:
                            with meter.activate_context():
                                raw = await ruler(message_lists, model, params, rubric)
                        else:
                            raw = await ruler(message_lists, model, params, rubric)
                    if any(not math.isfinite(s.score) for s in raw):
                        raise _NonFiniteScore("judge returned a non-finite score")
                    return raw, attempt, getattr(meter, "total_usd", None)
                except Exception as exc:  # CancelledError is not an Exception: cancellation propagates
                    kind, retryable = _classify(exc)
                    reason = self._reason(kind, exc)
                    if not retryable:
                        raise JudgeError(label, f"RULER judge failed ({reason})", attempts=attempt) from exc
                    if attempt >= self.max_attempts:
                        raise JudgeError(
                            label, f"RULER judge failed after {attempt} attempt(s); last error: {reason}",
                            attempts=attempt,
                        ) from exc
                    await asyncio.sleep(self._delay(attempt))
        finally:
            cost = getattr(meter, "total_usd", None)
            if outer is not None and cost is not None:
                with contextlib.suppress(ValueError):
                    outer.add_cost(f"{outer.cost_context}/judge/ruler", cost)


def _active_metrics_builder() -> Any | None:
    """The caller's active ART MetricsBuilder, if any (the judge cost is added to it as well)."""
    try:
        from art.metrics import MetricsBuilder

        return MetricsBuilder.get_active()
    except (ImportError, LookupError):
        return None
