"""JSON values as the database hands them over: asyncpg returns json and jsonb columns as text unless a codec
is set, so a value may be JSON text (str or bytes) or already decoded. One place decodes both; each caller
says what invalid JSON text becomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson


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
