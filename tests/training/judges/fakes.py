"""RULER-shaped replies for `tests.fake_openai.FakeOpenAI`, plus what judge tests need beyond it.

`ruler_scores(score_for)` is a reply callable that answers like a RULER judge: it finds the
`<trajectory id="N">` blocks in the request and returns one score object per trajectory.
`Tracked` wraps a reply callable to count requests in flight (and can hold a reply back past the
client's timeout). `JudgeFake` is FakeOpenAI with a short shutdown, so a test whose client gave up
on a held-back reply does not wait for the handler at teardown.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fake_openai import FakeOpenAI

_TRAJECTORY_ID = re.compile(r'<trajectory id="(\d+)">')


def user_text(body: dict[str, Any]) -> str:
    return next((m["content"] for m in body["messages"] if m["role"] == "user"), "")


def default_score(trajectory_number: int, text: str) -> float:
    return round(0.1 * trajectory_number, 3)


def ruler_scores(score_for: Callable[[int, str], float] = default_score) -> Callable[[dict[str, Any]], str]:
    def reply(body: dict[str, Any]) -> str:
        text = user_text(body)
        ids = [int(x) for x in _TRAJECTORY_ID.findall(text)]
        return json.dumps({"scores": [
            {"trajectory_id": str(i), "explanation": f"trajectory {i} judged", "score": score_for(i, text)}
            for i in ids
        ]})

    return reply


class Tracked:
    """A reply callable that holds each reply `hold_s` seconds and counts requests in flight."""

    def __init__(self, inner: Callable[[dict[str, Any]], Any], hold_s: float = 0.0) -> None:
        self.inner = inner
        self.hold_s = hold_s
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, body: dict[str, Any]) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold_s > 0:
                await asyncio.sleep(self.hold_s)
            out = self.inner(body)
            return await out if inspect.isawaitable(out) else out
        finally:
            self.in_flight -= 1


def held(seconds: float, reply: Any) -> Callable[[dict[str, Any]], Any]:
    """A one-off reply that arrives only after `seconds` (to outlast a client timeout)."""

    async def later(body: dict[str, Any]) -> Any:
        await asyncio.sleep(seconds)
        return reply(body) if callable(reply) else reply

    return later


class JudgeFake(FakeOpenAI):
    async def start(self) -> JudgeFake:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self


def usage_cost(body: dict[str, Any], reply_text: str, prompt_per_m: float, completion_per_m: float) -> float:
    """The cost FakeOpenAI's usage figures come to at the given prices (it counts chars // 4)."""
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    pt, ct = max(1, prompt_chars // 4), max(1, len(reply_text) // 4)
    return pt * prompt_per_m / 1e6 + ct * completion_per_m / 1e6
