"""No empty step, on any backend: a training step that trained nothing is not a checkpoint.

ART's LocalBackend answers a batch with zero trainable tokens by copying checkpoint N to N+1 and
reporting `data/step_trainable_assistant_tokens` 0; the serverless service reports its own
counts. The offline backend refuses before writing anything. The engine checks the groups before
training (`groups.trainable_tokens`) and the backend's metrics after (`check_trained`), and fails
the batch with `NothingTrained`'s reason either way.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import Failed

# ART's metric names whose zero means "this step trained nothing" (art/metrics.py, local/backend.py).
ART_TRAINED_NOTHING_KEYS = ("data/step_trainable_assistant_tokens", "data/step_num_groups_trainable")
OFFLINE_TRAINED_KEY = "offline/actions_trained"


class NothingTrained(Failed, RuntimeError):
    """The step trained nothing; the message says why and what to fix."""

    title = "Nothing trained"


def check_trained(metrics: Mapping[str, float]) -> None:
    """Raise NothingTrained when the backend's own metrics say the step trained nothing."""
    for key in (OFFLINE_TRAINED_KEY, *ART_TRAINED_NOTHING_KEYS):
        value = metrics.get(key)
        if value is not None and float(value) <= 0:
            raise NothingTrained(f"the backend reports {key} = {value:g}: this step trained nothing")
