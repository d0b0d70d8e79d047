"""Where a checkpoint is served, by its served name (`storagePath`), from the evaluation's settings.

- `wandb-artifact://...`: W&B's OpenAI-compatible inference (BABYLON_SERVERLESS_BASE_URL or W&B's
  default, with WANDB_API_KEY), as `core.checkpoints.endpoints.endpoint_for` says.
- `local-lora://...` and a bare base-model name: the vLLM at BABYLON_LOCAL_INFERENCE_URL.
- `offline://...`: the checkpoint's simulator policy answering in process, as `models eval --method
  prompts` does (`core.checkpoints.prompt_eval.PolicyClient`): a stand-in for an LLM, labelled as one.

An upstream's `label` names it in errors, logs and headers; it never holds a credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from ..checkpoints.endpoints import endpoint_for
from ..errors import ConsoleError, InvalidInput
from ..names import is_offline
from .routing import Target

STANDIN_FINGERPRINT = "babylon-offline-standin"


class NoUpstream(InvalidInput, RuntimeError):
    """The checkpoint's upstream is not configured or cannot be loaded; the message says what to set."""

    title = "No upstream for the checkpoint"


@dataclass(frozen=True, slots=True)
class HttpUpstream:
    base_url: str
    model: str  # the name sent upstream
    api_key: str | None

    @property
    def label(self) -> str:
        return f"{self.model} at {self.base_url}"

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def scrub(self, text: str) -> str:
        """`text` with this upstream's key removed (an upstream's error may echo what it was sent)."""
        return text.replace(self.api_key, "***") if self.api_key else text


class StandInUpstream:
    """An offline checkpoint's policy answering chat requests in process."""

    def __init__(self, storage_path: str, policy: Any) -> None:
        from ..checkpoints.prompt_eval import PolicyClient

        self.model = storage_path
        self.client = PolicyClient("stand-in", storage_path, policy)
        self._ids = itertools.count(1)

    @property
    def label(self) -> str:
        return f"offline stand-in (in-process simulator policy, not an LLM) for {self.model}"

    async def answer(self, messages: list[dict[str, Any]]) -> str:
        user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        if user is None or not isinstance(user.get("content"), str):
            return ""
        return await self.client.ask([{"role": "user", "content": user["content"]}])

    def completion(self, text: str, model_id: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-standin-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": model_id, "system_fingerprint": STANDIN_FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }


Upstream = HttpUpstream | StandInUpstream


class Upstreams:
    """Resolves checkpoints to upstreams, once each (a stand-in's policy is loaded once)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._cache: dict[str, Upstream] = {}

    def base(self) -> Target | None:
        """The base model, when an upstream serves it (BABYLON_LOCAL_INFERENCE_URL)."""
        if not self.settings.local_inference_url:
            return None
        return Target(self.settings.base_model, self.settings.base_model)

    async def resolve(self, target: Target) -> Upstream:
        cached = self._cache.get(target.storage_path)
        if cached is not None:
            return cached
        if not is_offline(target.storage_path):
            upstream = self._http(target)
        else:
            upstream = await asyncio.to_thread(self._standin, target)  # reads a checkpoint file
        self._cache[target.storage_path] = upstream
        return upstream

    def _http(self, target: Target) -> HttpUpstream:
        try:
            endpoint = endpoint_for(target.storage_path, self.settings)
        except ConsoleError as exc:
            raise NoUpstream(f"cannot serve {target.model_id}: {exc.message}") from None
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        return HttpUpstream(endpoint.base_url, endpoint.model, key)

    def _standin(self, target: Target) -> StandInUpstream:
        from ..training.backends.factory import checkpoint_root
        from ..training.backends.offline import OfflineBackend

        try:
            policy = OfflineBackend(checkpoint_root(self.settings.data_dir, "offline")).load_policy(target.storage_path)
        except (ConsoleError, ValueError, OSError) as exc:
            raise NoUpstream(f"cannot serve {target.model_id} with its offline stand-in: {exc}") from None
        return StandInUpstream(target.storage_path, policy)


def response_hash(text: str) -> str:
    """The hash the call log keeps of a response's text (matches a recorded `llm_call_logs.response`)."""
    return hashlib.sha256(text.encode()).hexdigest()
