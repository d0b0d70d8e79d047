"""The gateway's HTTP surface (aiohttp): OpenAI's `POST /v1/chat/completions` (plain and streamed),
`GET /v1/models` and `GET /healthz`.

Each request is routed on the routing table of the moment (`routing.RoutingTable`), forwarded to
its checkpoint's upstream (`upstreams`), answered with `X-Babylon-Checkpoint` and `X-Babylon-Arm`,
and logged (`calllog`) after the answer, off the request path. Every error is an OpenAI-format
error body; an upstream's failure names the upstream (never its key) and is counted on the arm.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .calllog import CallLog, CallRow
from .follower import RoutingFollower
from .routing import BASE, Route, agent_identity
from .upstreams import (
    STANDIN_FINGERPRINT,
    HttpUpstream,
    NoUpstream,
    StandInUpstream,
    Upstream,
    Upstreams,
    response_hash,
)

log = logging.getLogger(__name__)

CHECKPOINT_HEADER = "X-Babylon-Checkpoint"
ARM_HEADER = "X-Babylon-Arm"
UPSTREAM_HEADER = "X-Babylon-Upstream"  # only on a stand-in's answers: says what answered
CLIENT_GONE = 499


def openai_error(status: int, message: str, kind: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
    """An error in OpenAI's shape, so clients' SDKs show the message."""
    return web.Response(body=orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}),
                        status=status, content_type="application/json", headers=headers)


@dataclass(slots=True)
class _Call:
    """What the call log will say about one request, filled in as it goes."""

    at: datetime
    started: float
    agent: str = "unknown"
    route: Route | None = None
    upstream: str | None = None
    status: int = 500
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    text: list[str] = field(default_factory=list)
    hashed: bool = False  # a response text was received (possibly empty)
    error: str | None = None


class _ClientGone(Exception):
    """Writing to the client failed: it went away mid-answer."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("the client went away")
        self.response = response


class Gateway:
    def __init__(self, settings: Any, follower: RoutingFollower, calllog: CallLog, upstreams: Upstreams,
                 gateway_id: str) -> None:
        self.alias = settings.gateway_model
        secret = settings.gateway_keys.get_secret_value() if settings.gateway_keys else ""
        self._keys = [k.strip().encode() for k in secret.split(",") if k.strip()]
        self.timeout_s = float(settings.gateway_timeout_s)
        self.max_body = int(settings.gateway_max_body_bytes)
        self.follower = follower
        self.calllog = calllog
        self.upstreams = upstreams
        self.gateway_id = gateway_id
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "errors": 0, "upstream_errors": 0})
        self.session: aiohttp.ClientSession | None = None

    # -- the application ---------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._guard])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        return app

    async def _open_session(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def _close_session(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def authorized(self, header: str) -> bool:
        """Whether `Authorization: Bearer <key>` names a key, compared in constant time with each."""
        scheme, _, given = header.partition(" ")
        token = given.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(token, key)
        return ok

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._keys and request.path != "/healthz" and not self.authorized(request.headers.get("Authorization", "")):
            return openai_error(401, "missing or unknown API key: send `Authorization: Bearer <key>` with one of "
                                "the gateway's keys (BABYLON_GATEWAY_KEYS)", "invalid_request_error", "invalid_api_key")
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own (unknown path, wrong method): OpenAI's shape
            return openai_error(exc.status, f"{request.method} {request.path}: {exc.reason}", "invalid_request_error")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: one request fails, the process keeps serving
            log.exception("gateway request failed")
            return openai_error(500, "internal gateway error (see the gateway's log)", "server_error")

    # -- endpoints -----------------------------------------------------------------------------

    async def models(self, _request: web.Request) -> web.Response:
        table = self.follower.table
        names = dict.fromkeys([self.alias, *(t.model_id for t in table.pinnable.values())])
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "babylon-console"} for n in names]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")

    async def healthz(self, _request: web.Request) -> web.Response:
        table = self.follower.table
        body = {
            "status": "ok" if self.follower.memory_since is None else "degraded",
            "gateway": self.gateway_id, "alias": self.alias, "routing": self.follower.source,
            "live": table.live.model_id if table.live else None,
            "candidate": table.candidate.model_id if table.candidate else None,
            "candidate_share": table.share, "rollout_id": table.rollout_id,
            "call_log": {"buffered": len(self.calllog.buffer), "written": self.calllog.written,
                         "dropped": self.calllog.dropped},
            "arms": dict(self.stats),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        call = _Call(datetime.now(UTC), time.perf_counter())
        try:
            return await self._chat(request, call)
        except _ClientGone as gone:
            call.status, call.error = CLIENT_GONE, "the client went away before the answer was complete"
            return gone.response
        except asyncio.CancelledError:
            call.status, call.error = CLIENT_GONE, "the client went away before the answer was complete"
            raise
        finally:
            self._record(call)

    # -- one chat request ----------------------------------------------------------------------

    async def _chat(self, request: web.Request, call: _Call) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(call, 413, f"the request body is over {self.max_body} bytes "
                                "(BABYLON_GATEWAY_MAX_BODY_BYTES)", "request_too_large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._refuse(call, 400, f"the request body is not valid JSON: {exc}", "invalid_json")
        if not isinstance(body, dict):
            return self._refuse(call, 400, "the request body must be a JSON object", "invalid_json")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._refuse(call, 400, f"the request names no model: ask for {self.alias!r}", "model_required")
        call.agent = agent_identity(request.headers.get("X-Agent-Id"), body)
        route = self.follower.table.route(model, self.alias, call.agent)
        if route is None:
            if model != self.alias:
                return self._refuse(call, 404, f"The model `{model}` does not exist: ask for `{self.alias}` (the live "
                                    "model) or a registered checkpoint's modelId or storagePath", "model_not_found")
            base = self.upstreams.base()
            if base is None:
                return self._refuse(call, 503, "nothing is live and no base model is served: promote a checkpoint "
                                    "(`babylon-console models promote MODEL_ID`), or set BABYLON_LOCAL_INFERENCE_URL "
                                    "to an OpenAI-compatible server of the base model", "nothing_live")
            route = Route(base, BASE)
        call.route = route
        try:
            upstream = await self.upstreams.resolve(route.target)
        except NoUpstream as exc:
            return self._refuse(call, 503, str(exc), "no_upstream")
        call.upstream = upstream.label
        if isinstance(upstream, StandInUpstream):
            return await self._stand_in(request, call, upstream, body)
        payload = dict(body, model=upstream.model)
        if body.get("stream") is True:
            return await self._stream(request, call, upstream, payload)
        return await self._complete(call, upstream, payload)

    def _headers(self, call: _Call, upstream: Upstream | None = None) -> dict[str, str]:
        assert call.route is not None
        headers = {CHECKPOINT_HEADER: call.route.target.model_id, ARM_HEADER: call.route.arm}
        if isinstance(upstream, StandInUpstream):
            headers[UPSTREAM_HEADER] = "offline stand-in (in-process simulator policy, not an LLM)"
        return headers

    def _refuse(self, call: _Call, status: int, message: str, code: str) -> web.Response:
        call.status, call.error = status, message
        kind = "invalid_request_error" if status < 500 else "service_unavailable"
        return openai_error(status, message, kind, code, self._headers(call) if call.route else None)

    def _upstream_failed(self, call: _Call, upstream: HttpUpstream, exc: BaseException | None,
                         status: int | None = None, words: str = "") -> web.Response:
        if isinstance(exc, TimeoutError):
            code, message = 504, f"upstream {upstream.label} did not answer within {self.timeout_s:g} s " \
                                 "(BABYLON_GATEWAY_TIMEOUT_S)"
        elif exc is not None:
            code, message = 502, f"upstream {upstream.label} cannot be reached: {_first_line(exc)}"
        else:
            code, message = 502, f"upstream {upstream.label} answered HTTP {status}" + (f": {words}" if words else "")
        call.status, call.error = code, upstream.scrub(message)
        return openai_error(code, call.error, "upstream_error", "upstream_timeout" if code == 504 else "upstream_error",
                            self._headers(call))

    async def _complete(self, call: _Call, upstream: HttpUpstream, payload: dict[str, Any]) -> web.Response:
        assert self.session is not None and call.route is not None
        try:
            async with self.session.post(upstream.url, data=orjson.dumps(payload), headers=upstream.headers(),
                                         timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                status, content = resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self._upstream_failed(call, upstream, exc)
        if status >= 500:
            return self._upstream_failed(call, upstream, None, status, _server_words(content))
        if status >= 400:  # the upstream's own refusal (a bad parameter): passed on as it said it
            call.status, call.error = status, upstream.scrub(_server_words(content))  # the log never holds its key
            return web.Response(body=upstream.scrub(content.decode(errors="replace")).encode(), status=status,
                                content_type="application/json", headers=self._headers(call))
        try:
            answer = orjson.loads(content)
            choice = answer["choices"][0]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return self._upstream_failed(call, upstream, None, status, "an answer that is not a chat completion")
        answer["model"] = call.route.target.model_id
        message = choice.get("message") if isinstance(choice, dict) else None
        text = message.get("content") if isinstance(message, dict) else None
        self._took(call, text if isinstance(text, str) else "", answer.get("usage"))
        call.status = 200
        return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=self._headers(call))

    async def _stream(self, request: web.Request, call: _Call, upstream: HttpUpstream,
                      payload: dict[str, Any]) -> web.StreamResponse:
        """Pass the upstream's server-sent events on as they come, each chunk's `model` renamed."""
        assert self.session is not None and call.route is not None
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.timeout_s)
        try:
            resp = await self.session.post(upstream.url, data=orjson.dumps(payload), headers=upstream.headers(),
                                           timeout=timeout)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self._upstream_failed(call, upstream, exc)
        try:
            if resp.status != 200:
                try:
                    content = await resp.read()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    return self._upstream_failed(call, upstream, exc)
                if resp.status >= 500:
                    return self._upstream_failed(call, upstream, None, resp.status, _server_words(content))
                call.status, call.error = resp.status, upstream.scrub(_server_words(content))
                return web.Response(body=upstream.scrub(content.decode(errors="replace")).encode(),
                                    status=resp.status, content_type="application/json", headers=self._headers(call))
            out = web.StreamResponse(headers={**self._headers(call), "Content-Type": "text/event-stream",
                                              "Cache-Control": "no-cache"})
            await out.prepare(request)
            call.status = 200
            events = _SseRewriter(call.route.target.model_id)
            try:
                async for chunk in resp.content.iter_any():
                    await _write(out, events.feed(chunk))
                await _write(out, events.flush())
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
                failed = self._upstream_failed(call, upstream, exc)
                await _write(out, b"data: " + failed.body + b"\n\n")  # type: ignore[operator]
            self._took(call, "".join(events.text), events.usage)
            await out.write_eof()
            return out
        finally:
            resp.close()  # a request cut short (client gone, error) closes its upstream connection

    async def _stand_in(self, request: web.Request, call: _Call, upstream: StandInUpstream,
                        body: dict[str, Any]) -> web.StreamResponse:
        assert call.route is not None
        messages = body.get("messages")
        text = await upstream.answer(messages if isinstance(messages, list) else [])
        answer = upstream.completion(text, call.route.target.model_id)
        self._took(call, text, None)
        call.status = 200
        if body.get("stream") is not True:
            return web.Response(body=orjson.dumps(answer), content_type="application/json",
                                headers=self._headers(call, upstream))
        out = web.StreamResponse(headers={**self._headers(call, upstream), "Content-Type": "text/event-stream"})
        await out.prepare(request)
        base = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint")}
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await _write(out, b"data: " + orjson.dumps(chunk) + b"\n\n")
        await _write(out, b"data: [DONE]\n\n")
        await out.write_eof()
        return out

    # -- accounting ------------------------------------------------------------------------------

    @staticmethod
    def _took(call: _Call, text: str, usage: Any) -> None:
        call.text, call.hashed = [text], True
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            call.prompt_tokens = prompt if isinstance(prompt, int) else None
            call.completion_tokens = completion if isinstance(completion, int) else None

    def _record(self, call: _Call) -> None:
        route = call.route
        arm = route.arm if route is not None else "none"
        counts = self.stats[arm]
        counts["requests"] += 1
        if call.status >= 400:
            counts["errors"] += 1
        if call.status in (502, 504):
            counts["upstream_errors"] += 1
        self.calllog.add(CallRow(
            at=call.at, gateway_id=self.gateway_id, agent=call.agent,
            rollout_id=route.rollout_id if route is not None else None, arm=arm,
            model_id=route.target.model_id if route is not None else None, upstream=call.upstream,
            status=call.status, latency_ms=(time.perf_counter() - call.started) * 1000,
            prompt_tokens=call.prompt_tokens, completion_tokens=call.completion_tokens,
            response_sha256=response_hash("".join(call.text)) if call.hashed else None,
            error=call.error[:500] if call.error else None))


class _SseRewriter:
    """Splits a byte stream into lines; each `data:` JSON event gets the checkpoint as its `model`,
    and its content deltas and usage are kept for the log. Other lines pass unchanged."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._rest = b""
        self.text: list[str] = []
        self.usage: Any = None

    def feed(self, chunk: bytes) -> bytes:
        """The complete lines so far, rewritten; a partial line waits for the rest."""
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        return b"".join(self._line(line) + b"\n" for line in lines)

    def flush(self) -> bytes:
        rest, self._rest = self._rest, b""
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        stripped = line.rstrip(b"\r")
        if not stripped.startswith(b"data:"):
            return line
        value = stripped[5:].strip()
        if not value.startswith(b"{"):
            return line  # [DONE]
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return line
        if not isinstance(event, dict):
            return line
        if "model" in event:
            event["model"] = self.model_id
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():  # an odd event must not break the stream
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                self.text.append(content)
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        return b"data: " + orjson.dumps(event)


async def _write(out: web.StreamResponse, data: bytes) -> None:
    if not data:
        return
    try:
        await out.write(data)
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        raise _ClientGone(out) from exc


def _server_words(content: bytes) -> str:
    """An upstream's own error message (OpenAI's shape), else the start of its body."""
    try:
        body = orjson.loads(content)
        inner = body.get("error", body) if isinstance(body, dict) else body
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message.strip():
            return message.strip().splitlines()[0][:200]
    except orjson.JSONDecodeError:
        pass
    return content.decode(errors="replace").strip().splitlines()[0][:200] if content.strip() else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


__all__ = ["ARM_HEADER", "CHECKPOINT_HEADER", "STANDIN_FINGERPRINT", "Gateway", "openai_error"]
