"""Every name the core makes, built and parsed in one place: training keys, checkpoint ids and the
served names (`storagePath`) of checkpoints.

A checkpoint's served name is its `storagePath`, the name the game's calls log in
`llm_call_logs.model`; its scheme says which backend made it:

- `offline://<project>/<run>:step<N>`: this project's CPU stand-in (evaluated in the simulator);
- `wandb-artifact:///<entity>/<project>/<run>:step<N>`: W&B serverless (the base model is step 0);
- `local-lora://<abs dir>?base=<model>`: ART's LocalBackend (a LoRA directory and its base model).

A leaf module: it imports nothing of the project but the error vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from .errors import InvalidInput

OFFLINE_SCHEME = "offline://"
WANDB_SCHEME = "wandb-artifact://"
LOCAL_SCHEME = "local-lora://"
OUR_SCHEMES = (OFFLINE_SCHEME, WANDB_SCHEME, LOCAL_SCHEME)  # names this project's backends make

_STEP = re.compile(r":step\d+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_OFFLINE_NAME = re.compile(r"^offline://(?P<project>[^/:]+)/(?P<run>[^/:]+?)(?::step(?P<step>\d+))?$")


def training_key(backend: str, model_name: str) -> str:
    """The identity of one trained model: its batches, lock, checkpoint ids and trained windows."""
    return f"{backend}:{model_name}"


def checkpoint_id(backend: str, model_name: str, step: int) -> str:
    """`trained_models."modelId"` of a step: `<model>-<backend>-step0007`."""
    return f"{model_name}-{backend}-step{int(step):04d}"


def scheme_of(storage_path: str) -> str:
    return storage_path.split("://", 1)[0] if "://" in storage_path else "unknown"


def is_offline(storage_path: str) -> bool:
    return storage_path.startswith(OFFLINE_SCHEME)


def is_our_name(storage_path: str) -> bool:
    """Whether one of this project's backends made this served name (never one the game wrote)."""
    return storage_path.startswith(OUR_SCHEMES)


def checked_offline_part(kind: str, value: str) -> str:
    """`value` if it can be a project or run name of an offline checkpoint (it names a directory)."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{kind} {value!r} cannot name an offline checkpoint directory: use letters, digits, '_', '-', '.' "
            "(no '/', no leading '.')"
        )
    return value


def offline_name(project: str, run_name: str, step: int | None = None) -> str:
    """`offline://<project>/<run_name>[:step<N>]`."""
    base = f"{OFFLINE_SCHEME}{project}/{run_name}"
    return base if step is None else f"{base}:step{int(step)}"


def parse_offline_name(name: str) -> tuple[str, str, int | None]:
    """`offline://<project>/<run_name>[:step<N>]` -> (project, run_name, step or None)."""
    m = _OFFLINE_NAME.match(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"{name!r} is not an offline checkpoint name; expected 'offline://<project>/<run_name>:step<N>'"
        )
    step = m.group("step")
    return (checked_offline_part("project", m.group("project")), checked_offline_part("run name", m.group("run")),
            None if step is None else int(step))


def local_storage_path(checkpoint_dir: Path, base_model: str) -> str:
    """A served name that outlives the training process: the LoRA directory plus its base model
    (`local-lora://<abs dir>?base=<model>`, the model name URL-quoted); vLLM serves it under that
    name with the JSON form of `--lora-modules` (`{"name": "<storagePath>", "path": "<dir>"}`): the
    `name=<dir>` form cannot carry a name holding `=`."""
    return f"{LOCAL_SCHEME}{Path(checkpoint_dir).resolve()}?base={quote(base_model, safe='/')}"


def base_name(storage_path: str) -> str:
    """The served name of the untrained base model of a checkpoint's run."""
    if storage_path.startswith(WANDB_SCHEME):
        if not _STEP.search(storage_path):
            raise InvalidInput(f"cannot tell the step of {storage_path!r}: a serverless name ends in ':step<N>'")
        return _STEP.sub(":step0", storage_path)
    if storage_path.startswith(LOCAL_SCHEME):
        base = parse_qs(urlsplit(storage_path).query).get("base", [""])[0]
        if not base:
            raise InvalidInput(f"{storage_path!r} does not name its base model (…?base=<model>)")
        return base
    raise InvalidInput(f"{storage_path!r} is not a serverless or local checkpoint name")
