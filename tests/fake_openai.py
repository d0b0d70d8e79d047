"""A small OpenAI-compatible chat-completions server for tests (a test double for the network).

    async with FakeOpenAI(["first reply", "second reply"], latency=0.01) as fake:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert fake.requests[0]["messages"][0]["role"] == "system"

Replies are consumed in order. Each reply is a string (the assistant message content), a dict
(returned verbatim as the JSON body), a `FakeError` (an HTTP error), or a callable taking the
request body and returning any of those (it may be async). Pass a callable instead of a list to
answer every request from it. It binds 127.0.0.1 on a free port and records every request body.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class FakeError:
    """An HTTP error reply in OpenAI's error shape."""

    status: int = 500
    message: str = "fake server error"
    type: str = "server_error"


Reply = str | dict[str, Any] | FakeError
ReplySource = Iterable[Reply | Callable[[dict[str, Any]], Any]] | Callable[[dict[str, Any]], Any]


class FakeOpenAI:
    def __init__(
        self,
        replies: ReplySource | None = None,
        *,
        latency: float = 0.0,
        default: Reply | None = None,
        model: str | None = None,
        shutdown_timeout: float = 0.5,
    ) -> None:
        """`default` answers when the queue is empty (an HTTP 500 saying so if None); `model`
        overrides the model name echoed in responses (the requested one otherwise);
        `shutdown_timeout` bounds how long `stop()` waits for requests still in flight."""
        self._fn: Callable[[dict[str, Any]], Any] | None = None
        self._queue: deque[Any] = deque()
        if callable(replies):
            self._fn = replies
        elif replies is not None:
            self._queue.extend(replies)
        self.latency = latency
        self.shutdown_timeout = shutdown_timeout
        self.default = default
        self.model = model
        self.requests: list[dict[str, Any]] = []  # every JSON body received, in order
        self.headers: list[dict[str, str]] = []  # the matching request headers
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting --------------------------------------------------------------------------

    def push(self, *replies: Reply | Callable[[dict[str, Any]], Any]) -> None:
        """Queue more replies."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- handlers ---------------------------------------------------------------------------

    async def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._fn is not None:
            item: Any = self._fn
        elif self._queue:
            item = self._queue.popleft()
        elif self.default is not None:
            item = self.default
        else:
            return FakeError(500, "FakeOpenAI: no scripted reply left")
        if callable(item):
            item = item(body)
            if inspect.isawaitable(item):
                item = await item
        return item

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}}, status=400
            )
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        reply = await self._next_reply(body)
        if isinstance(reply, FakeError):
            return web.json_response(
                {"error": {"message": reply.message, "type": reply.type}}, status=reply.status
            )
        if isinstance(reply, dict):
            return web.json_response(reply)
        text = str(reply)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        pt, ct = max(1, prompt_chars // 4), max(1, len(text) // 4)
        return web.json_response(
            {
                "id": f"chatcmpl-fake-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model or body.get("model", "fake-model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        name = self.model or "fake-model"
        return web.json_response(
            {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fake"}]}
        )


async def serve_chat_route(handler: Callable[[web.Request], Any]) -> tuple[web.AppRunner, str]:
    """A one-route chat-completions server on 127.0.0.1 for misbehaviour `FakeOpenAI` does not
    script (a body that is not JSON, bytes trickled forever, no answer at all): (runner to clean
    up, base URL)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
