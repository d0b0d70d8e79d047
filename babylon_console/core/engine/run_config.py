"""One run's configuration: the engine's tunables (declared once, in `core.config.EngineSettings`)
and what only a run sets."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from ..config import EngineSettings, ReadinessCriteria, Settings
from ..names import training_key


class EngineConfig(EngineSettings):
    """The engine's tunables, by field name only (the environment is `Settings`' business, so a
    validation error names the option), and what only a run sets."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=False)

    project: str = "babylon-console"  # the W&B project (`Settings.wandb_project`)
    iterations: int | None = Field(default=1, ge=1, description="None: run until stopped")
    force: bool = False  # also select closed windows this model already trained on, or found unusable
    poll_seconds: float = Field(default=5.0, gt=0)  # wait between looks for ready windows (continuous runs)
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EngineConfig:
        """The settings' tunables, with command-line flags applied (None: flag not given; only
        `iterations` means something by None: run until stopped)."""
        values = settings.model_dump(include=set(EngineSettings.model_fields)) | {"project": settings.wandb_project}
        values.update({k: v for k, v in overrides.items() if v is not None or k == "iterations"})
        return cls.model_validate(values)

    @property
    def training_key(self) -> str:
        return training_key(self.backend, self.model_name)

    @property
    def criteria(self) -> ReadinessCriteria:
        return ReadinessCriteria(min_agents=self.min_agents, min_steps=self.min_steps,
                                 settle_seconds=self.settle_seconds, holdout_share=self.holdout_share or 0.0)
