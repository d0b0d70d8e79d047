from __future__ import annotations

from pathlib import Path

import pytest

from babylon_console.core.training.tracking import OfflineWandbRun


def test_without_a_key_metrics_go_to_an_offline_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = OfflineWandbRun(tmp_path / "wandb", "babylon-console", None, "run-test", {"judge": "outcome"})
    run.start()
    assert run.run_id
    run.log({"loss/train": 0.5, "train/reward": 0.25}, step=1)
    run.finish()
    files = list((tmp_path / "wandb").rglob(f"run-{run.run_id}.wandb"))
    assert files and files[0].stat().st_size > 0
    assert "offline-run-" in str(files[0])  # kept for `wandb sync` later


def test_disabled_mode_starts_nothing(tmp_path: Path) -> None:
    run = OfflineWandbRun(tmp_path / "wandb", "p", None, "r", {})
    run.start()  # the test environment sets WANDB_MODE=disabled
    run.log({"x": 1.0}, step=1)
    run.finish()
    assert run.run_id is None and not (tmp_path / "wandb").exists()
