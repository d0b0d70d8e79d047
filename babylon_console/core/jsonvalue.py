"""JSON values as the database hands them over: asyncpg returns json and jsonb columns as text unless a codec
is set, so a value may be JSON text (str or bytes) or already decoded. One place decodes both; each caller
says what invalid JSON text becomes; `lenient_validate` reads a decoded object into a model as far as it goes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError


def decoded(value: Any, *, on_error: Callable[[str | bytes], Any] | None = None) -> Any:
    """`value` decoded when it is JSON text (str or bytes), as it is otherwise (None stays None).

    Invalid JSON text raises `orjson.JSONDecodeError` (a `ValueError`), or, given `on_error`, gives what
    `on_error(text)` makes of the text."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        if on_error is None:
            raise
        return on_error(value)


def json_object(value: Any) -> dict[str, Any]:
    """`value` as a JSON object: {} when it is missing, invalid JSON text or anything but an object."""
    value = decoded(value, on_error=lambda _text: None)
    return value if isinstance(value, dict) else {}


def lenient_validate[M: BaseModel](model: type[M], data: dict[str, Any], *,
                                   whole: Mapping[str, Any] | None = None) -> M | None:
    """`data` (a stored row, written by this or another version) as `model`, as far as it reads: a field
    that does not fit (after pydantic's usual coercions) is dropped, so it falls back to its default; in a
    dict or a list only the entry that does not fit is dropped; a field named in `whole` is replaced by
    its value there instead. None when nothing more can be dropped and it still does not fit (a required
    field is missing). `data` is changed in place."""
    for _ in range(len(data) + 64):  # each pass removes or replaces at least one misfit
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            if not _drop_misfits(data, exc, whole or {}):
                return None
    return None


def _drop_misfits(data: dict[str, Any], exc: ValidationError, whole: Mapping[str, Any]) -> bool:
    """Remove from `data` what `exc` complains about (or replace a field of `whole`). False when nothing
    could be removed."""
    entries: dict[str, set[Any]] = {}  # field -> the entries that do not fit (None: the whole field)
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if loc and loc[0] in data:
            value = data[loc[0]]
            sub = loc[1] if len(loc) > 1 else None
            nested = ((isinstance(value, dict) and sub in value)
                      or (isinstance(value, list) and isinstance(sub, int) and 0 <= sub < len(value)))
            entries.setdefault(str(loc[0]), set()).add(sub if nested and loc[0] not in whole else None)
    for key, bad in entries.items():
        value = data[key]
        if key in whole:
            data[key] = whole[key]
        elif None in bad:
            del data[key]
        elif isinstance(value, dict):
            data[key] = {k: v for k, v in value.items() if k not in bad}
        else:
            data[key] = [v for i, v in enumerate(value) if i not in bad]
    return bool(entries)
