from __future__ import annotations

from pathlib import Path

import pytest

from babylon_console.core.names import checkpoint_id, local_storage_path, training_key
from babylon_console.core.training.backends import factory
from babylon_console.core.training.backends.factory import (
    OFFLINE_BASE_MODEL,
    BackendUnavailable,
    LocalRequirements,
    checkpoint_root,
    make_backend,
    serverless_warnings,
)


def test_offline_backend_needs_nothing_and_has_its_own_tree(tmp_path: Path) -> None:
    backend, base_model = make_backend("offline", data_dir=tmp_path, base_model="ignored")
    assert base_model == OFFLINE_BASE_MODEL
    assert type(backend).__name__ == "OfflineBackend"
    assert backend.path == (tmp_path / "checkpoints" / "offline").resolve()


def test_identity_is_per_backend(tmp_path: Path) -> None:
    ids = {checkpoint_id(b, "babylon-agent", 3) for b in ("offline", "local", "serverless")}
    assert len(ids) == 3 and "babylon-agent-local-step0003" in ids
    assert training_key("offline", "m") != training_key("local", "m")
    assert checkpoint_root(tmp_path, "offline") != checkpoint_root(tmp_path, "local")


def test_serverless_errors_and_warnings_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="needs WANDB_API_KEY"):
        make_backend("serverless", data_dir=tmp_path, base_model="OpenPipe/Qwen3-14B-Instruct")
    assert serverless_warnings("OpenPipe/Qwen3-14B-Instruct") == []
    (warning,) = serverless_warnings("my/own-model")
    assert "not one W&B documents" in warning and "--allow-unlisted-base-model" in warning
    assert serverless_warnings("my/own-model", allow_unlisted=True) == []


def test_local_backend_says_exactly_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "local_requirements", lambda: LocalRequirements(True, False, False, True))
    with pytest.raises(BackendUnavailable, match=r"missing: a CUDA GPU visible to torch.*; uv on PATH") as info:
        make_backend("local", data_dir=tmp_path, base_model="OpenPipe/Qwen3-14B-Instruct")
    assert "vllm" not in str(info.value)  # ART installs its own vLLM runtime: not a requirement here
    monkeypatch.setattr(factory, "local_requirements", lambda: LocalRequirements(False, False, True, False))
    with pytest.raises(BackendUnavailable, match=r"download.pytorch.org/whl/cu128.*transformers"):
        factory.check_local()
    # This machine: no CUDA GPU, whatever else is installed.
    with pytest.raises(BackendUnavailable, match="cannot start here"):
        monkeypatch.undo()
        factory.check_local()


def test_local_storage_path_outlives_the_process(tmp_path: Path) -> None:
    path = local_storage_path(tmp_path / "ck" / "0003", "Qwen/Qwen2.5-0.5B-Instruct")
    assert path == f"local-lora://{(tmp_path / 'ck' / '0003').resolve()}?base=Qwen/Qwen2.5-0.5B-Instruct"


def test_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        make_backend("tpu", data_dir=tmp_path, base_model="x")
