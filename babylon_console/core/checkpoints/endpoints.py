"""Where a checkpoint answers: the OpenAI-compatible endpoint and model name of a served name.

A checkpoint's served name is its `storagePath` (the name the game's calls log in
`llm_call_logs.model`), and that is the model name sent to its endpoint:

- `wandb-artifact:///<entity>/<project>/<run>:step<N>` (serverless): W&B's Training API, which
  serves every checkpoint of a run under its artifact name at the same base URL it trains on
  (ART 0.5: `ServerlessBackend._prepare_backend_for_training` returns the client's base URL and key).
  The base model is the run's step 0.
- `local-lora://<dir>?base=<model>` (LocalBackend): the vLLM named by BABYLON_LOCAL_INFERENCE_URL,
  which serves the adapter under the storagePath (`--lora-modules` in its JSON form, whose `name`
  may hold any text) and the base model under its own name.

Offline checkpoints (`offline://`) have no endpoint: they are evaluated in the simulator.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, SecretStr

from ..errors import InvalidInput, Refused
from ..names import LOCAL_SCHEME, OFFLINE_SCHEME, WANDB_SCHEME, scheme_of
from ..training.backends.factory import wandb_offline

DEFAULT_SERVERLESS_BASE_URL = "https://api.training.wandb.ai/v1"  # ART 0.5's serverless client default


class Endpoint(BaseModel):
    """One model behind one OpenAI-compatible server."""

    base_url: str
    model: str  # the name sent as `model`
    api_key: SecretStr | None = None

    def describe(self) -> str:
        return f"{self.model} at {self.base_url}"


def endpoint_for(storage_path: str, settings: Any) -> Endpoint:
    """The endpoint serving `storage_path` (a checkpoint's name, or a base model's bare name, which
    is served next to the checkpoints of its kind), from the settings; a clear error when the
    settings do not say where it is or forbid reaching it."""
    if storage_path.startswith(WANDB_SCHEME):
        key = settings.wandb_api_key
        if not key:
            raise InvalidInput(f"{storage_path} is served by W&B's Training API, which needs WANDB_API_KEY")
        if settings.serverless_base_url is None and wandb_offline():
            raise InvalidInput(f"WANDB_MODE={os.environ.get('WANDB_MODE')} forbids reaching W&B, where {storage_path} "
                               "is served: unset WANDB_MODE, or point BABYLON_SERVERLESS_BASE_URL at another "
                               "deployment")
        return Endpoint(base_url=settings.serverless_base_url or DEFAULT_SERVERLESS_BASE_URL, model=storage_path,
                        api_key=key)
    if storage_path.startswith(OFFLINE_SCHEME):
        raise Refused(f"{storage_path} is an offline checkpoint: it has no endpoint (it is evaluated in the "
                      "simulator)")
    if storage_path.startswith(LOCAL_SCHEME) or "://" not in storage_path:
        if not settings.local_inference_url:
            raise InvalidInput(f"set BABYLON_LOCAL_INFERENCE_URL to the vLLM server that serves {storage_path} "
                               "(an OpenAI-compatible base URL such as http://127.0.0.1:8000/v1)")
        return Endpoint(base_url=settings.local_inference_url, model=storage_path,
                        api_key=settings.local_inference_api_key)
    raise InvalidInput(f"unknown checkpoint scheme {scheme_of(storage_path)!r} in {storage_path!r}")
