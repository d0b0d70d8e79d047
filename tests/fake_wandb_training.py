"""A W&B Training API double on 127.0.0.1 (a test double for the network, not for our logic).

It implements what ART 0.5's `ServerlessBackend` calls (art/serverless/client.py):

    POST   /v1/preview/models                      create (or return) a model
    GET    /v1/preview/models/{id}/checkpoints     list checkpoints (cursor page)
    DELETE /v1/preview/models/{id}/checkpoints     delete steps
    POST   /v1/preview/training-jobs               payload = the trajectory groups (model_dump json)
    GET    /v1/preview/training-jobs/{id}/events   training_started, gradient_step, training_ended |
                                                   training_failed (data.error_message)
    POST   /v1/chat/completions                    inference: a checkpoint answers under its artifact
                                                   name `wandb-artifact:///<entity>/<project>/<name>:step<N>`

Each training job's payload is parsed back into `art.TrajectoryGroup`s and run through ART's own
`tokenize_trajectory_groups` with the tokenizer given, so a test sees the trainable tokens the
service would train. `job_mode` decides how the next job ends: "ok" (a new checkpoint step),
"empty" (the service trained no token: it reports num_trainable_tokens 0 and keeps its step),
"fail" (training_failed with `fail_message`) or "stuck" (never reports anything).

Inference answers with `answer(model name, messages)` for a checkpoint the double holds, and 404
(as the service does) for a name it does not serve; `chat_requests` keeps every request body.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def _with_choices(group: dict[str, Any]) -> dict[str, Any]:
    """ART's JSON keeps a Choice as a plain dict (its model_validate does not turn it back), so the
    double restores what a service must: items shaped as a completion choice become `Choice`s."""
    from openai.types.chat.chat_completion import Choice

    def restore(items: list[Any]) -> list[Any]:
        return [Choice.model_validate(i) if isinstance(i, dict) and "finish_reason" in i and "message" in i else i
                for i in items]

    for t in group.get("trajectories", []):
        t["messages_and_choices"] = restore(t.get("messages_and_choices", []))
        for h in t.get("additional_histories", []):
            h["messages_and_choices"] = restore(h.get("messages_and_choices", []))
    return group


@dataclass
class Job:
    id: str
    model_id: str
    mode: str
    trainable_tokens: int
    events: list[dict[str, Any]] = field(default_factory=list)


class FakeWandbTraining:
    def __init__(self, tokenizer: Any, *, refuse_base_models: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.refuse_base_models = refuse_base_models
        self.job_mode = "ok"
        self.fail_message = "CUDA out of memory on the trainer"
        self.models: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, list[int]] = {}
        self.jobs: dict[str, Job] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: set[str] = set()
        self.answer: Callable[[str, list[dict[str, Any]]], str] | None = None
        self.chat_requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeWandbTraining:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._record])
        app.add_routes([
            web.post("/v1/preview/models", self._create_model),
            web.get("/v1/preview/models/{model_id}/checkpoints", self._list_checkpoints),
            web.delete("/v1/preview/models/{model_id}/checkpoints", self._delete_checkpoints),
            web.post("/v1/preview/training-jobs", self._create_job),
            web.get("/v1/preview/training-jobs/{job_id}/events", self._events),
            web.post("/v1/chat/completions", self._chat),
        ])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        self.auth_headers.add(request.headers.get("Authorization", ""))
        return await handler(request)

    async def _create_model(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["base_model"] in self.refuse_base_models:
            return web.json_response({"error": {"message": f"base model {body['base_model']} is not supported "
                                                           "for serverless training"}}, status=400)
        for model in self.models.values():
            if (model["project"], model["name"]) == (body["project"], body["name"]) and body.get("return_existing"):
                return web.json_response(model)
        model_id = f"model-{next(self._ids)}"
        model = {"id": model_id, "entity": body.get("entity") or "test-entity", "project": body["project"],
                 "name": body["name"], "base_model": body["base_model"], "run_id": f"run-{model_id}"}
        self.models[model_id] = model
        self.checkpoints[model_id] = [0]
        return web.json_response(model)

    async def _list_checkpoints(self, request: web.Request) -> web.Response:
        steps = sorted(self.checkpoints.get(request.match_info["model_id"], []),
                       reverse=request.query.get("order") == "desc")
        limit = int(request.query.get("limit", len(steps) or 1))
        data = [{"id": f"ck-{s}", "step": s, "metrics": {}} for s in steps[:limit]]
        return web.json_response({"data": data, "has_more": False})

    async def _delete_checkpoints(self, request: web.Request) -> web.Response:
        body = await request.json()
        have = self.checkpoints.get(request.match_info["model_id"], [])
        gone = [s for s in body["steps"] if s in have]
        self.checkpoints[request.match_info["model_id"]] = [s for s in have if s not in gone]
        return web.json_response({"deleted_count": len(gone), "not_found_steps": [s for s in body["steps"]
                                                                                 if s not in gone]})

    async def _create_job(self, request: web.Request) -> web.Response:
        import art
        from art.preprocessing.tokenize import tokenize_trajectory_groups

        body = await request.json()
        groups = [art.TrajectoryGroup.model_validate(_with_choices(g)) for g in body["trajectory_groups"]]
        allow = bool((body.get("experimental_config") or {}).get("allow_training_without_logprobs"))
        results = list(tokenize_trajectory_groups(self.tokenizer, groups, allow, scale_rewards=True))
        tokens = sum(sum(r.assistant_mask) for r in results)
        job = Job(f"job-{next(self._ids)}", body["model_id"], self.job_mode, tokens)
        self.jobs[job.id] = job
        if job.mode == "ok":
            step = max(self.checkpoints[job.model_id]) + 1
            job.events = [
                {"id": f"{job.id}-e1", "type": "training_started", "data": {"num_sequences": len(results)}},
                {"id": f"{job.id}-e2", "type": "gradient_step",
                 "data": {"loss": 0.25, "grad_norm": 1.5, "num_trainable_tokens": tokens}},
                {"id": f"{job.id}-e3", "type": "training_ended", "data": {}},
            ]
            self.checkpoints[job.model_id].append(step)
        elif job.mode == "empty":
            job.events = [
                {"id": f"{job.id}-e1", "type": "training_started", "data": {"num_sequences": 0}},
                {"id": f"{job.id}-e2", "type": "gradient_step", "data": {"loss": 0.0, "num_trainable_tokens": 0}},
                {"id": f"{job.id}-e3", "type": "training_ended", "data": {}},
            ]
        elif job.mode == "fail":
            job.events = [
                {"id": f"{job.id}-e1", "type": "training_started", "data": {"num_sequences": len(results)}},
                {"id": f"{job.id}-e2", "type": "training_failed", "data": {"error_message": self.fail_message}},
            ]
        return web.json_response({"id": job.id})

    async def _events(self, request: web.Request) -> web.Response:
        job = self.jobs[request.match_info["job_id"]]
        after = request.query.get("after")
        events = job.events
        if after:
            ids = [e["id"] for e in events]
            events = events[ids.index(after) + 1:] if after in ids else []
        return web.json_response({"data": events, "has_more": False})

    def add_model(self, entity: str, project: str, name: str, steps: list[int]) -> None:
        """A model with these checkpoint steps, as if trained earlier."""
        model_id = f"model-{next(self._ids)}"
        self.models[model_id] = {"id": model_id, "entity": entity, "project": project, "name": name,
                                 "base_model": "OpenPipe/Qwen3-14B-Instruct", "run_id": f"run-{model_id}"}
        self.checkpoints[model_id] = sorted(steps)

    def serves(self, name: str) -> bool:
        m = re.fullmatch(r"wandb-artifact:///([^/]+)/([^/]+)/(.+):step(\d+)", name)
        return m is not None and any(
            (model["entity"], model["project"], model["name"]) == m.group(1, 2, 3)
            and int(m.group(4)) in self.checkpoints.get(model_id, [])
            for model_id, model in self.models.items())

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.chat_requests.append(body)
        name = body.get("model", "")
        if not self.serves(name) or self.answer is None:
            return web.json_response({"error": {"message": f"model {name!r} not found", "type": "not_found"}},
                                     status=404)
        text = self.answer(name, body["messages"])
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": name, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
