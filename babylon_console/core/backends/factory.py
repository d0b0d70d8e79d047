"""Choosing a training backend from configuration, with clear errors for what is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

# Base models W&B serverless training is known to accept (ART 0.5's published list); others are
# refused here rather than after a round trip, unless BABYLON_ALLOW_UNLISTED_BASE_MODEL is set.
SERVERLESS_BASE_MODELS = (
    "OpenPipe/Qwen3-14B-Instruct",
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen2.5-14B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
)
OFFLINE_BASE_MODEL = "offline/linear-softmax-policy"


class BackendUnavailable(RuntimeError):
    """The configured backend cannot run here; the message says what to do."""


def check_serverless(base_model: str, api_key: str | None, allow_unlisted: bool = False) -> None:
    if not api_key:
        raise BackendUnavailable("the serverless backend needs WANDB_API_KEY (or use --backend offline)")
    if base_model not in SERVERLESS_BASE_MODELS and not allow_unlisted:
        raise BackendUnavailable(
            f"base model {base_model!r} is not one W&B serverless trains; choose one of: "
            + ", ".join(SERVERLESS_BASE_MODELS)
        )


def check_local() -> None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable(
            "the local backend needs ART's GPU extra: pip install 'babylon-console[local]' on a CUDA machine"
        )
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("the local backend needs a CUDA GPU; none is visible (torch.cuda.is_available())")


def make_backend(name: str, *, data_dir: Path, base_model: str, wandb_api_key: str | None = None,
                 allow_unlisted: bool = False, seed: int = 0) -> tuple[Any, str]:
    """(backend, base model it trains). Heavy imports happen only for the backend chosen."""
    if name == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(data_dir / "art", seed=seed), OFFLINE_BASE_MODEL
    if name == "serverless":
        check_serverless(base_model, wandb_api_key, allow_unlisted)
        import art

        return art.ServerlessBackend(api_key=wandb_api_key), base_model
    if name == "local":
        check_local()
        from art.local import LocalBackend

        return LocalBackend(path=str(data_dir / "art")), base_model
    raise BackendUnavailable(f"unknown backend {name!r} (expected offline, serverless or local)")
