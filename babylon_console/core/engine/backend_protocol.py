"""What the engine calls on a training backend: ART's ServerlessBackend and LocalBackend, and this
project's OfflineBackend (`core.training.backends`), all answer it.

The ART model is typed `Any` here: `art` is imported only when an engine really starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class TrainResult(Protocol):
    """What one training call reports: the step it wrote, and its metrics."""

    @property
    def step(self) -> int: ...

    @property
    def metrics(self) -> Mapping[str, Any]: ...


class TrainingBackend(Protocol):
    """A backend the engine trains with (ART's `Backend` interface, the part the engine uses).

    `register` is called by ART's `TrainableModel.register(backend)`; a backend that also has
    `read_meta(model, step) -> dict` (the offline one) gives crash repair a checkpoint's metrics."""

    async def register(self, model: Any) -> None: ...

    async def train(self, model: Any, trajectory_groups: Any, *, learning_rate: float,
                    allow_training_without_logprobs: bool) -> TrainResult: ...

    def _model_inference_name(self, model: Any, step: int | None = None) -> str:
        """The served name of a step (its `storagePath`)."""
        ...

    async def close(self) -> None: ...
