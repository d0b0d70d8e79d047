"""Metrics to Weights & Biases. With WANDB_API_KEY, ART's `model.log` already sends them (run id =
the model's run name), so nothing more is done here. Without a key, a W&B run is kept in *offline*
mode under the data directory, to be synced later with `wandb sync <dir>`. `WANDB_MODE=disabled`
turns W&B off entirely (the tests do)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class OfflineWandbRun:
    def __init__(self, directory: Path, project: str, entity: str | None, name: str, config: dict[str, Any]) -> None:
        self.directory = directory
        self.project, self.entity, self.name, self.config = project, entity, name, config
        self._run: Any = None
        self.run_id: str | None = None

    def start(self) -> None:
        if os.environ.get("WANDB_MODE") == "disabled":
            return
        try:
            import wandb

            self.directory.mkdir(parents=True, exist_ok=True)
            self._run = wandb.init(project=self.project, entity=self.entity, name=self.name, mode="offline",
                                   dir=str(self.directory), config=self.config, reinit="create_new")
            self.run_id = self._run.id
        except Exception as exc:  # W&B is a side channel: never let it stop training
            log.warning("W&B offline run not started: %s", exc)
            self._run = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None:
            try:
                self._run.log(metrics, step=step)
            except Exception as exc:
                log.warning("W&B log failed: %s", exc)

    def finish(self) -> None:
        if self._run is not None:
            try:
                self._run.finish()
            finally:
                self._run = None
