"""Choosing a training backend from configuration, with clear errors for what is missing.

Identity per backend: each backend has its own checkpoint tree under `<data dir>/checkpoints/<backend>`
and its own training key (`<backend>:<model name>`), which names its batches, its advisory lock,
its checkpoint ids and the windows it has trained. An offline practice run therefore never
consumes windows that a real model needs, and never collides with a real checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InvalidInput

# Base models that W&B documents for serverless RL training. ART itself has no such list (the
# service decides), so a model outside it only draws a warning; the service's own refusal is
# shown as it comes. `--allow-unlisted-base-model` (BABYLON_ALLOW_UNLISTED_BASE_MODEL) silences it.
DOCUMENTED_SERVERLESS_BASE_MODELS = (
    "OpenPipe/Qwen3-14B-Instruct",
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "meta-llama/Llama-3.1-8B-Instruct",
)
OFFLINE_BASE_MODEL = "offline/linear-softmax-policy"
OFFLINE_WANDB_MODES = ("offline", "disabled", "dryrun")


class BackendUnavailable(InvalidInput, RuntimeError):
    """The configured backend cannot run here; the message says what to do."""

    title = "Backend unavailable"


def checkpoint_root(data_dir: Path, backend: str) -> Path:
    return Path(data_dir) / "checkpoints" / backend


def wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE", "").strip().lower() in OFFLINE_WANDB_MODES


def serverless_warnings(base_model: str, allow_unlisted: bool = False) -> list[str]:
    if allow_unlisted or base_model in DOCUMENTED_SERVERLESS_BASE_MODELS:
        return []
    return [f"base model {base_model!r} is not one W&B documents for serverless training "
            f"({', '.join(DOCUMENTED_SERVERLESS_BASE_MODELS)}); the service may refuse it. "
            "--allow-unlisted-base-model silences this warning"]


def check_serverless(api_key: str | None, base_url: str | None = None) -> None:
    if not api_key:
        raise BackendUnavailable("the serverless backend needs WANDB_API_KEY (or use --backend offline)")
    if base_url is None and wandb_offline():
        raise BackendUnavailable(
            f"WANDB_MODE={os.environ.get('WANDB_MODE')} forbids reaching W&B, and serverless training runs on "
            "W&B's Training API: unset WANDB_MODE, or point BABYLON_SERVERLESS_BASE_URL at another deployment"
        )


@dataclass(frozen=True, slots=True)
class LocalRequirements:
    torch: bool
    cuda: bool
    uv: bool
    transformers: bool

    def missing(self) -> list[str]:
        out = []
        if not self.torch:
            out.append("torch (ART's GPU extra: pip install 'babylon-console[local]' "
                       "--extra-index-url https://download.pytorch.org/whl/cu128)")
        elif not self.cuda:
            out.append("a CUDA GPU visible to torch (torch.cuda.is_available() is False)")
        if not self.uv:
            out.append("uv on PATH or installed (ART installs its vLLM runtime with uv on first start)")
        if not self.transformers:
            out.append("transformers (pip install 'babylon-console[local]')")
        return out


def local_requirements() -> LocalRequirements:
    torch_found = importlib.util.find_spec("torch") is not None
    cuda = False
    if torch_found:
        import torch

        cuda = bool(torch.cuda.is_available())
    uv = shutil.which("uv") is not None or importlib.util.find_spec("uv") is not None
    return LocalRequirements(torch_found, cuda, uv, importlib.util.find_spec("transformers") is not None)


def check_local() -> None:
    missing = local_requirements().missing()
    if missing:
        raise BackendUnavailable("the local backend cannot start here; missing: " + "; ".join(missing))


def make_backend(name: str, *, data_dir: Path, base_model: str, wandb_api_key: str | None = None,
                 serverless_base_url: str | None = None, seed: int = 0) -> tuple[Any, str]:
    """(backend, base model it trains). Heavy imports happen only for the backend chosen."""
    if name == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(checkpoint_root(data_dir, "offline"), seed=seed), OFFLINE_BASE_MODEL
    if name == "serverless":
        check_serverless(wandb_api_key, serverless_base_url)
        import art

        return art.ServerlessBackend(api_key=wandb_api_key, base_url=serverless_base_url), base_model
    if name == "local":
        check_local()
        from art.local import LocalBackend

        return LocalBackend(path=str(checkpoint_root(data_dir, "local"))), base_model
    raise BackendUnavailable(f"unknown backend {name!r} (expected offline, serverless or local)")
