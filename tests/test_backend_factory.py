from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from babylon_console.core.backends.factory import (
    OFFLINE_BASE_MODEL,
    BackendUnavailable,
    check_serverless,
    make_backend,
)


def test_offline_backend_needs_nothing(tmp_path: Path) -> None:
    backend, base_model = make_backend("offline", data_dir=tmp_path, base_model="ignored")
    assert base_model == OFFLINE_BASE_MODEL
    assert type(backend).__name__ == "OfflineBackend"


def test_serverless_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="needs WANDB_API_KEY"):
        make_backend("serverless", data_dir=tmp_path, base_model="OpenPipe/Qwen3-14B-Instruct")
    with pytest.raises(BackendUnavailable, match="not one W&B serverless trains; choose one of: OpenPipe/Qwen3-14B"):
        check_serverless("gpt2", api_key="k")
    check_serverless("OpenPipe/Qwen3-14B-Instruct", api_key="k")  # accepted
    check_serverless("my/own-model", api_key="k", allow_unlisted=True)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="a GPU extra is installed here")
def test_local_backend_without_the_gpu_extra_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install 'babylon-console\[local\]' on a CUDA machine"):
        make_backend("local", data_dir=tmp_path, base_model="OpenPipe/Qwen3-14B-Instruct")


def test_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        make_backend("tpu", data_dir=tmp_path, base_model="x")
