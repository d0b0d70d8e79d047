"""Held-out evaluation of endpoint models (serverless and local checkpoints): the recorded prompts of
held-out windows replayed through each model's OpenAI-compatible endpoint, and the two answers to
each prompt judged side by side with the window's ground truth.

- Windows: the newest held-out windows with trajectories and ground truth (`market_outcomes`).
- Prompts: per window, up to `per_window` recorded LLM calls (the ones training would use,
  `groups.trajectory_calls`, whose purpose is "action" or unrecorded), picked by a hash of
  window, trajectory and call, so the same windows give the same prompts.
- Answers: each model answers each prompt (system + user message, temperature 0, at most
  `MAX_TOKENS`); at most `CONCURRENCY` requests at once, each retried twice by the client. One
  request to each model goes first, in turn, so a dead endpoint is named at once. An endpoint that
  does not answer, refuses the key or does not serve the model stops the evaluation with that
  reason: nothing is recorded.
- Judging: the settings' judge, `judge_concurrency` pairs at once. `outcome` scores each answer's
  action on its own against what the markets did (`judges.outcome.score_answer`); `ruler` ranks
  the two answers to one prompt in one RULER call, which model comes first alternating from one
  prompt to the next. Two identical answers make no difference: a judge that scores answers on
  their own scores it once for both; RULER, which only compares, is not asked and both get 0.5.
- Result: per window, model A's mean answer score minus model B's; across windows the mean of those
  differences with a 95% CI paired by window and the share of windows A won (`evaluation.EvalResult`).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from ..errors import EXIT_UNAVAILABLE, ConsoleError, Failed, InvalidInput
from ..game.rows import WindowGroundTruth
from ..game.store import GameStore
from ..game.windows import held_out
from ..training.groups import trajectory_calls
from ..training.judges.outcome import AnswerScore
from .endpoints import Endpoint
from .holdout import NO_HOLDOUT

MAX_TOKENS = 1024
CONCURRENCY = 4
PROMPT_PURPOSES = (None, "", "action")
_CLIP = 400  # characters of an answer kept in a stored example


class EndpointUnavailable(Failed, RuntimeError):
    """A model's endpoint did not answer (connection refused, timeout, server error). Not an outage
    of the console's database: the evaluation fails, with the exit code of something unavailable."""

    exit_code = EXIT_UNAVAILABLE
    title = "Endpoint unavailable"


class EndpointRefused(InvalidInput, ValueError):
    """A model's endpoint answered and refused: an unknown model, a bad key, a malformed request."""

    title = "Endpoint refused"


class AnswerJudge(Protocol):
    name: str
    scores_alone: bool  # an answer's score does not depend on the other answers to the prompt

    async def judge_answers(self, window_id: str, gt: WindowGroundTruth, prompt: list[dict[str, Any]],
                            answers: Sequence[str]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class HeldOutPrompt:
    window_id: str
    trajectory_id: str
    step: int
    call: int  # the call's place among the trajectory's recorded calls (a step may hold several)
    messages: list[dict[str, str]]

    @property
    def key(self) -> str:
        return f"{self.window_id}|{self.trajectory_id}|{self.call}"


@dataclass(slots=True)
class HeldOutWindow:
    window_id: str
    ground_truth: WindowGroundTruth
    prompts: list[HeldOutPrompt]


@dataclass(slots=True)
class PromptOutcome:
    windows: list[str]
    mean_a: list[float]  # per window
    mean_b: list[float]
    prompts: int
    unusable_a: int
    unusable_b: int
    examples: list[dict[str, Any]]


def _rank(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def held_out_prompts(pool: asyncpg.Pool, share: float, windows: int, per_window: int,
                           lookback: int = 2000, *, skip: Mapping[str, str] | None = None,
                           left_out: dict[str, str] | None = None) -> list[HeldOutWindow]:
    """The newest `windows` held-out windows that have ground truth and recorded prompts. Windows in
    `skip` (window -> why: a model compared trained on it) are passed over; those met go into `left_out`."""
    if share <= 0:
        raise InvalidInput(NO_HOLDOUT)
    store = GameStore(pool)
    out: list[HeldOutWindow] = []
    for window_id in await store.windows_with_outcomes(lookback):
        if not held_out(window_id, share):
            continue
        if skip and window_id in skip:
            if left_out is not None:
                left_out[window_id] = skip[window_id]
            continue
        loaded = await store.window_trajectories(window_id)
        logged = await store.logged_calls([t.trajectory_id for t in loaded.trajectories])
        prompts = []
        for t in loaded.trajectories:
            for n, call in enumerate(trajectory_calls(t, logged.get(t.trajectory_id)).calls):
                if call.purpose not in PROMPT_PURPOSES or not call.user_prompt.strip():
                    continue
                messages = [{"role": "system", "content": call.system_prompt}] if call.system_prompt else []
                messages.append({"role": "user", "content": call.user_prompt})
                prompts.append(HeldOutPrompt(window_id, t.trajectory_id, call.step_number, n, messages))
        if not prompts:
            continue
        prompts.sort(key=lambda p: _rank(p.key))
        out.append(HeldOutWindow(window_id, await store.ground_truth(window_id), prompts[:per_window]))
        if len(out) == windows:
            break
    return out


class EndpointClient:
    """One model's endpoint: asks it a prompt and maps every failure to a sentence about that model."""

    def __init__(self, label: str, endpoint: Endpoint, timeout_s: float) -> None:
        from openai import AsyncOpenAI  # imported on first use: it takes a while

        self.label = label
        self.endpoint = endpoint
        self.truncated = 0  # answers cut off at MAX_TOKENS (finish_reason "length")
        # the client's timeout bounds one attempt's connect and each read; this bounds a request whole
        # (3 attempts), so an endpoint that trickles bytes forever is cut off too
        self.deadline_s = 3 * timeout_s + 2
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        # a placeholder key lets keyless local servers work; the client never logs it
        self._client = AsyncOpenAI(base_url=endpoint.base_url, api_key=key or "sk-no-key", timeout=timeout_s,
                                   max_retries=2)

    async def aclose(self) -> None:
        await self._client.close()

    async def ask(self, messages: list[dict[str, str]]) -> str:
        import openai

        where = f"{self.label} ({self.endpoint.describe()})"
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self._client.chat.completions.create(
                    model=self.endpoint.model, messages=messages, temperature=0.0,  # type: ignore[arg-type]
                    max_tokens=MAX_TOKENS)
        except TimeoutError as exc:
            raise EndpointUnavailable(f"the endpoint of {where} did not finish answering within "
                                      f"{self.deadline_s:g} s") from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise EndpointUnavailable(f"the endpoint of {where} does not answer: {_first_line(exc)}") from exc
        except openai.APIStatusError as exc:
            text = f"the endpoint of {where} answered HTTP {exc.status_code}: {_server_words(exc)}"
            if exc.status_code == 404:
                text += " (is the model served there under that name?)"
            if exc.status_code in (400, 401, 402, 403, 404, 413, 422):
                raise EndpointRefused(text) from exc
            raise EndpointUnavailable(text) from exc
        except (openai.APIError, ValueError) as exc:  # an answer the client could not read (ValueError: not JSON)
            raise Failed(f"the endpoint of {where} answered something unreadable: {_first_line(exc)}") from exc
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise Failed(f"the endpoint of {where} answered without a message: {response!r:.200}") from exc
        self.truncated += getattr(choice, "finish_reason", None) == "length"
        return text


class PolicyClient:
    """An offline checkpoint answering recorded prompts in process: the stand-in of an endpoint, so
    the recorded-prompts evaluation runs (and is tested) on the offline path with the same prompts,
    judges and statistics. The policy reads the prompt's MARKET_STATE line (a prompt without one
    gets an empty, unusable answer) and samples its action with a random number seeded by the
    prompt: the same number for both models, as a temperature-0 LLM gives the same answer to the
    same prompt."""

    def __init__(self, label: str, storage_path: str, policy: Any) -> None:
        self.label = label
        self.policy = policy
        self.endpoint = Endpoint(base_url="the simulator's policy (in process)", model=storage_path)
        self.truncated = 0

    async def aclose(self) -> None:
        return None

    async def ask(self, messages: list[dict[str, str]]) -> str:
        import numpy as np

        from ..sim.observation import Observation

        user = messages[-1]["content"]
        obs = Observation.from_prompt(user)
        if obs is None:
            return ""
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big"))
        return self.policy.decide(obs, rng).response


def _server_words(exc: Any) -> str:
    """The server's own error message (OpenAI's error shape), else the client's first line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message.strip():
            return _first_line(ValueError(message))
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    line = text.splitlines()[0]
    return line if len(line) <= 200 else line[:199] + "…"


async def _answers(clients: tuple[Any, Any], prompts: list[HeldOutPrompt],
                   limit: asyncio.Semaphore, known: dict[tuple[int, str], str]) -> list[tuple[str, str]]:
    async def one(client: EndpointClient, prompt: HeldOutPrompt) -> str:
        if (id(client), prompt.key) in known:
            return known.pop((id(client), prompt.key))
        async with limit:
            return await client.ask(prompt.messages)

    flat = await _all([one(client, p) for p in prompts for client in clients])
    return list(zip(flat[0::2], flat[1::2], strict=True))


async def _all[T](work: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run them all at once, results in order; the first failure cancels the rest and is raised as
    itself (a ConsoleError first, when there is one), not as an exception group."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(w) for w in work]
    except* Exception as failed:
        raise next((e for e in failed.exceptions if isinstance(e, ConsoleError)), failed.exceptions[0]) from None
    return [t.result() for t in tasks]


async def _judge_pair(judge: AnswerJudge, window: HeldOutWindow, prompt: HeldOutPrompt, a: str, b: str,
                      b_first: bool, limit: asyncio.Semaphore) -> tuple[Any, Any]:
    if a == b:  # the same decision: no difference between the models on this prompt
        if not judge.scores_alone:
            same = AnswerScore(0.5, "the same answer from both models: not judged (no difference)")
            return same, same
        async with limit:
            (same,) = await judge.judge_answers(window.window_id, window.ground_truth, prompt.messages, [a])
        return same, same
    async with limit:
        if b_first:  # RULER reads the answers in order: neither model always comes first
            sb, sa = await judge.judge_answers(window.window_id, window.ground_truth, prompt.messages, [b, a])
        else:
            sa, sb = await judge.judge_answers(window.window_id, window.ground_truth, prompt.messages, [a, b])
    return sa, sb


def _usable(text: str, prompt: HeldOutPrompt) -> bool:
    from ..sim.actions import parse_response
    from ..sim.observation import Observation

    user = prompt.messages[-1]["content"]
    return parse_response(text, Observation.from_prompt(user)).action is not None


async def compare_on_prompts(windows: list[HeldOutWindow], a: EndpointClient | PolicyClient,
                             b: EndpointClient | PolicyClient,
                             judge: AnswerJudge, progress: Callable[[int, int], None] | None = None,
                             judge_concurrency: int = 4) -> PromptOutcome:
    """Both models answer every prompt of every window; each pair judged; per-window means."""
    limit = asyncio.Semaphore(CONCURRENCY)
    judging = asyncio.Semaphore(judge_concurrency)
    judged = 0
    result = PromptOutcome([], [], [], 0, 0, 0, [])
    # one request to each model first, in turn: an endpoint that does not answer is named at once
    first = windows[0].prompts[0]
    known = {(id(client), first.key): await client.ask(first.messages) for client in (a, b)}
    for i, window in enumerate(windows):
        answers = await _answers((a, b), window.prompts, limit, known)
        work = []
        for prompt, (text_a, text_b) in zip(window.prompts, answers, strict=True):
            work.append(_judge_pair(judge, window, prompt, text_a, text_b, judged % 2 == 1, judging))
            judged += text_a != text_b
        verdicts = await _all(work)
        scores = []
        for prompt, (text_a, text_b), (sa, sb) in zip(window.prompts, answers, verdicts, strict=True):
            scores.append((sa.score, sb.score))
            result.unusable_a += not _usable(text_a, prompt)
            result.unusable_b += not _usable(text_b, prompt)
            if sa.score != sb.score and len(result.examples) < 5:
                result.examples.append({
                    "window_id": window.window_id, "trajectory_id": prompt.trajectory_id, "step": prompt.step,
                    "answer_a": text_a[:_CLIP], "score_a": sa.score, "why_a": sa.explanation[:_CLIP],
                    "answer_b": text_b[:_CLIP], "score_b": sb.score, "why_b": sb.explanation[:_CLIP]})
        result.windows.append(window.window_id)
        result.mean_a.append(statistics.fmean(s for s, _ in scores))
        result.mean_b.append(statistics.fmean(s for _, s in scores))
        result.prompts += len(scores)
        if progress is not None:
            progress(i + 1, len(windows))
    return result
