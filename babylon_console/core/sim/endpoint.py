"""Agents whose decisions come from an OpenAI-compatible chat-completions endpoint.

Whatever the endpoint does (garbage text, wrong JSON, unknown actions, HTTP errors, timeouts), the
step is recorded: an unusable answer becomes a failed action (success false, the reason in
`error`) that the portfolio treats as HOLD. Nothing here raises into the simulation loop.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from .actions import HOLD, parse_response
from .observation import Observation
from .policy import Decision


def _describe_error(e: BaseException) -> str:
    # openai's exceptions carry the status and the server's message, never the API key.
    status = getattr(e, "status_code", None)
    msg = str(e).strip() or type(e).__name__
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return f"endpoint error: {type(e).__name__}" + (f" (HTTP {status})" if status else "") + f": {msg}"


class EndpointPolicy:
    """An AsyncPolicy backed by `openai.AsyncOpenAI` (any OpenAI-compatible server)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 2,
        temperature: float = 0.7,
        max_tokens: int = 256,
        name: str | None = None,
        persona: str | None = None,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        log_model: str | None = None,
        client: Any | None = None,
    ) -> None:
        """`log_model`: the name its calls are logged under, when not the one asked for (the game logs
        its provider's name, e.g. `huggingface`, whatever the provider serves)."""
        self.model = log_model or model  # what the episode writes to llm_call_logs.model
        self.request_model = model  # what is asked of the endpoint
        self.name = name or f"endpoint:{model}"
        self.persona = persona  # None: the agent keeps its own persona
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.extra_body = extra_body
        self.extra_headers = extra_headers
        if client is None:
            from openai import AsyncOpenAI  # imported lazily: the scripted path never needs it

            # A placeholder key lets keyless local servers work; the client never logs it.
            client = AsyncOpenAI(
                base_url=base_url, api_key=api_key or "sk-no-key", timeout=timeout, max_retries=max_retries
            )
        self._client = client

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> EndpointPolicy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def adecide(
        self, obs: Observation, rng: np.random.Generator, system_prompt: str, user_prompt: str
    ) -> Decision:
        t0 = time.perf_counter()
        try:
            resp = await self._client.chat.completions.create(
                model=self.request_model,
                messages=[
                    {"role": "system", "content": system_prompt},
                    {"role": "user", "content": user_prompt},
                ],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                extra_body=self.extra_body,
                extra_headers=self.extra_headers,
            )
        except Exception as e:
            latency = int((time.perf_counter() - t0) * 1000)
            return Decision(HOLD, "", "", error=_describe_error(e), latency_ms=latency, model=self.model)
        latency = int((time.perf_counter() - t0) * 1000)
        text = ""
        with contextlib.suppress(AttributeError, IndexError, TypeError):
            text = resp.choices[0].message.content or ""
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None)
        ct = getattr(usage, "completion_tokens", None)
        parsed = parse_response(text, obs)
        if parsed.action is None:
            return Decision(
                HOLD,
                parsed.reasoning,
                text,
                error=parsed.error or "unusable response",
                attempted_type=parsed.action_type,
                attempted_parameters=parsed.parameters,
                model=self.model,
                latency_ms=latency,
                prompt_tokens=pt,
                completion_tokens=ct,
            )
        return Decision(
            parsed.action,
            parsed.reasoning,
            text,
            model=self.model,
            latency_ms=latency,
            prompt_tokens=pt,
            completion_tokens=ct,
        )
