"""A run's training session: the backend, the ART model, the base model's tokenizer, the W&B run,
and the served names of the steps it writes. Set up when a run starts, closed when it ends."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from ..config import Settings
from ..training.backends.factory import checkpoint_root
from ..training.tracking import OfflineWandbRun
from .backend_protocol import TrainingBackend
from .run_config import EngineConfig

log = logging.getLogger(__name__)


class TrainingSession:
    """What a run trains with. A backend handed in is the caller's to close; one made here is closed here."""

    def __init__(self, config: EngineConfig, settings: Settings, backend: TrainingBackend | None = None) -> None:
        self.config = config
        self.settings = settings
        self.backend = backend
        self._owns_backend = backend is None
        self.base_model = config.base_model
        self.model: Any = None  # art.TrainableModel, registered with the backend
        self.tokenizer: Any = None
        self.wandb: OfflineWandbRun | None = None  # the run kept here when ART does not report to W&B

    async def open(self, run_id: str) -> None:
        """Load the tokenizer, register the model with its backend, start the offline W&B run."""
        self.export_wandb_settings()
        await asyncio.to_thread(self.ensure_tokenizer)
        await self.ensure_model()
        if not self.art_reports_to_wandb:
            self.wandb = OfflineWandbRun(self.settings.data_dir / "wandb", self.config.project,
                                         self.settings.wandb_entity, run_id, self.config.model_dump())
            await asyncio.to_thread(self.wandb.start)

    async def close(self) -> None:
        """Finish the W&B run, close the backend. LocalBackend.close stops vLLM and the trainer: a second
        run must not find them running."""
        if self.wandb is not None:
            await asyncio.to_thread(self.wandb.finish)
        if self._owns_backend and self.backend is not None:
            try:
                await self.backend.close()
            except Exception as exc:
                log.warning("closing the %s backend failed: %s", self.config.backend, exc)
            self.backend = None
            self.model = None

    def ensure_backend(self) -> TrainingBackend:
        if self.backend is None:
            from ..training.backends.factory import make_backend

            key = self.settings.wandb_api_key.get_secret_value() if self.settings.wandb_api_key else None
            self.backend, self.base_model = make_backend(
                self.config.backend, data_dir=self.settings.data_dir, base_model=self.config.base_model,
                wandb_api_key=key, serverless_base_url=self.settings.serverless_base_url, seed=self.config.seed,
            )
        elif self.config.backend == "offline":
            from ..training.backends.factory import OFFLINE_BASE_MODEL

            self.base_model = OFFLINE_BASE_MODEL
        return self.backend

    async def ensure_model(self) -> Any:
        if self.model is None:
            import gc

            import art  # ~3 s: only when the engine really starts

            # ART's thousands of long-lived module objects need never be traversed again by the
            # cyclic collector: move them out of its generations (faster collections from here on).
            gc.freeze()

            backend = self.ensure_backend()
            report = None if self.art_reports_to_wandb else []
            self.model = art.TrainableModel(
                name=self.config.model_name, project=self.config.project, base_model=self.base_model,
                run_name=self.config.model_name, report_metrics=report, entity=self.settings.wandb_entity,
                # ART's history (model.log) lives in this backend's tree under the data directory.
                base_path=str(checkpoint_root(self.settings.data_dir, self.config.backend)),
            )
            if not self.art_reports_to_wandb:
                # ART reaches W&B's public API whenever WANDB_API_KEY is in the environment (its run,
                # and ServerlessBackend's artifact provenance), whatever WANDB_MODE says: switch its
                # run off for this model; metrics go to the offline run kept here instead.
                object.__setattr__(self.model, "_get_wandb_run", lambda: None)
            await self.model.register(backend)
        return self.model

    @property
    def art_reports_to_wandb(self) -> bool:
        """ART logs to W&B itself only with a key and W&B not switched offline or off."""
        from ..training.backends.factory import wandb_offline

        return self.settings.wandb_api_key is not None and not wandb_offline()

    def ensure_tokenizer(self) -> Any:
        """The base model's tokenizer (blocking: call in a worker thread). Offline with no
        BABYLON_TOKENIZER: the stand-in built under the data directory."""
        if self.tokenizer is None:
            from ..training.tokenization import load_tokenizer, tokenizer_source

            source = self.settings.tokenizer
            if not source and self.config.backend == "offline":
                from ..training.standin_tokenizer import ensure_standin_tokenizer

                source = str(ensure_standin_tokenizer(self.settings.data_dir))
            self.tokenizer = load_tokenizer(tokenizer_source(source, self.config.base_model))
        return self.tokenizer

    def storage_path(self, step: int) -> str:
        """The served name of a step. Local: the LoRA directory + base model (outlives this
        process); the others: the backend's own inference name."""
        if self.config.backend == "local":
            from art.utils.output_dirs import get_model_dir, get_step_checkpoint_dir

            from ..names import local_storage_path

            model_dir = get_model_dir(self.model, str(checkpoint_root(self.settings.data_dir, "local")))
            return local_storage_path(Path(get_step_checkpoint_dir(model_dir, step)), self.base_model)
        return self.ensure_backend()._model_inference_name(self.model, step)

    def wandb_run_id(self) -> str | None:
        """The W&B run the metrics went to: the service's run (serverless), ART's own run (its id
        is the model's storage name) when a key is set, else the offline run kept here."""
        run_id = getattr(self.model, "run_id", None)
        if run_id:
            return str(run_id)
        if self.art_reports_to_wandb:
            return str(self.model._storage_name())
        return self.wandb.run_id if self.wandb is not None else None

    def export_wandb_settings(self) -> None:
        """ART reads W&B settings from os.environ only: a key that is only in `.env` must reach it.
        W&B's own files go under the data directory, never the current directory."""
        if self.settings.wandb_api_key is not None:
            os.environ.setdefault("WANDB_API_KEY", self.settings.wandb_api_key.get_secret_value())
        if self.settings.wandb_entity:
            os.environ.setdefault("WANDB_ENTITY", self.settings.wandb_entity)
        os.environ.setdefault("WANDB_DIR", str(self.settings.data_dir))
