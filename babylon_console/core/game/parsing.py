"""Turning raw `trajectories` rows into `Trajectory` models, or into `Rejection`s with a reason.

A row is rejected (never raised through) when its JSON is invalid, its types are wrong, a reward is
not a finite number, or it is absurdly large. The limits guard the judge and trainer from rows no
agent could have produced in an hour.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from ..clock import to_naive_utc
from ..errors import InvalidInput
from .bounds import EARLIEST, LATEST, MAX_ABS_BALANCE, MAX_ABS_PNL, MAX_ABS_REWARD, MAX_DURATION_MS, MAX_EPISODE_LENGTH
from .rows import Rejection, Step, Trajectory

_TRAILING_NUMBER = re.compile(r"(\d+)$")

MAX_STEPS_JSON_BYTES = 16 * 1024 * 1024
MAX_STEPS = 2_000
MAX_TEXT_CHARS = 512 * 1024  # one prompt or response

_STEPS = TypeAdapter(list[Step])
_JSON_COLUMNS = {
    "rewardComponentsJson": "reward_components",
    "metricsJson": "metrics",
    "metadataJson": "metadata",
}


class RowProblem(InvalidInput, ValueError):
    """Why a row cannot be used; the message becomes the rejection reason."""

    title = "Unusable row"


def _describe(error: ValidationError, prefix: str) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{prefix}{where}: {first['msg']}{more}"


def _load_json(value: Any, column: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, str | bytes):
        raise RowProblem(f"{column} is {type(value).__name__}, expected JSON text")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RowProblem(f"{column} is not valid JSON: {exc}") from None


def _check_text_sizes(steps: list[Step]) -> None:
    for step in steps:
        for call in step.llm_calls:
            for text in (call.system_prompt, call.user_prompt, call.response, call.reasoning):
                if text is not None and len(text) > MAX_TEXT_CHARS:
                    raise RowProblem(
                        f"step {step.step_number}: an LLM call text of {len(text):,} chars exceeds "
                        f"{MAX_TEXT_CHARS:,}"
                    )


def parse_steps(raw: Any) -> list[Step]:
    """Parse a `stepsJson` value (text or already-decoded list)."""
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_STEPS_JSON_BYTES:
            raise RowProblem(f"stepsJson is {len(raw):,} bytes, over the {MAX_STEPS_JSON_BYTES:,} limit")
        raw = _load_json(raw, "stepsJson")
    elif raw is not None and not isinstance(raw, list):
        raise RowProblem(f"stepsJson is {type(raw).__name__}, expected JSON text")
    if raw is None:
        raise RowProblem("stepsJson is empty")
    if not isinstance(raw, list):
        raise RowProblem(f"stepsJson is a JSON {type(raw).__name__}, expected an array of steps")
    if len(raw) > MAX_STEPS:
        raise RowProblem(f"stepsJson has {len(raw):,} steps, over the {MAX_STEPS:,} limit")
    try:
        steps = _STEPS.validate_python(raw)
    except ValidationError as exc:
        raise RowProblem(_describe(exc, "stepsJson[")) from None
    _check_text_sizes(steps)
    return steps


def parse_trajectory(row: Mapping[str, Any]) -> Trajectory:
    """Parse one row (asyncpg Record or dict keyed by column names). Raises RowProblem."""
    # asyncpg Records iterate over values, not keys: always go through .keys().
    keys = set(row.keys())
    data: dict[str, Any] = {k: row[k] for k in keys if k not in _JSON_COLUMNS and k != "stepsJson"}
    for column, field in _JSON_COLUMNS.items():
        if column in keys:
            value = _load_json(row[column], column)
            if value is not None and not isinstance(value, dict):
                raise RowProblem(f"{column} is a JSON {type(value).__name__}, expected an object")
            data[field] = value or {}
    if "stepsJson" not in keys:
        raise RowProblem("stepsJson column is missing")
    data["steps"] = parse_steps(row["stepsJson"])
    for column in ("totalReward", "finalPnL", "finalBalance"):
        value = data.get(column)
        if isinstance(value, float) and not math.isfinite(value):
            raise RowProblem(f"{column} is {value}, not a finite number")
    try:
        trajectory = Trajectory.model_validate(data)
    except ValidationError as exc:
        raise RowProblem(_describe(exc, "")) from None
    _check_bounds(trajectory)
    return trajectory


def _check_bounds(t: Trajectory) -> None:
    """Numbers no hour of play produces (bounds.py) make the row unusable, with the reason."""
    for column, value, limit in (("finalPnL", t.final_pnl, MAX_ABS_PNL), ("finalBalance", t.final_balance,
                                 MAX_ABS_BALANCE), ("totalReward", t.total_reward, MAX_ABS_REWARD)):
        if value is not None and abs(value) > limit:
            raise RowProblem(f"{column} is {value:g}, outside +-{limit:g}")
    if not 0 <= t.episode_length <= MAX_EPISODE_LENGTH:
        raise RowProblem(f"episodeLength is {t.episode_length:,}, outside 0..{MAX_EPISODE_LENGTH:,}")
    if t.duration_ms is not None and not 0 <= t.duration_ms <= MAX_DURATION_MS:
        raise RowProblem(f"durationMs is {t.duration_ms:,}, outside 0..{MAX_DURATION_MS:,} (7 days)")
    start, end = to_naive_utc(t.start_time), to_naive_utc(t.end_time)
    for column, moment in (("startTime", start), ("endTime", end)):
        if not EARLIEST <= moment <= LATEST:
            raise RowProblem(f"{column} is {moment.isoformat()}, outside {EARLIEST.year}..{LATEST.year}")
    if end < start:
        raise RowProblem(f"endTime {end.isoformat()} is before startTime {start.isoformat()}")
    for step in t.steps:
        if abs(step.reward) > MAX_ABS_REWARD:
            raise RowProblem(f"step {step.step_number}: reward {step.reward:g} is outside +-{MAX_ABS_REWARD:g}")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Parsing a window allocates tens of thousands of acyclic objects; each automatic gen-2
    collection would walk the whole heap (several times slower with ART loaded). Nothing parsed
    here forms reference cycles, so the collector can rest for the duration."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Trajectory], list[Rejection]]:
    """Parse many rows; each unusable row becomes a Rejection naming the trajectory and reason."""
    with paused_gc():
        return _parse_rows(rows)


def _parse_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Trajectory], list[Rejection]]:
    parsed: list[Trajectory] = []
    rejected: list[Rejection] = []
    for row in rows:
        try:
            parsed.append(parse_trajectory(row))
        except RowProblem as exc:
            keys = row.keys()
            rejected.append(
                Rejection(
                    trajectory_id=row["trajectoryId"] if "trajectoryId" in keys else None,
                    window_id=row["windowId"] if "windowId" in keys else None,
                    reason=str(exc),
                )
            )
    return parsed, rejected


def step_number_of(step_id: str) -> int | None:
    """The step number at the end of an `llm_call_logs."stepId"` (`<trajectoryId>-step-3` -> 3)."""
    m = _TRAILING_NUMBER.search(step_id or "")
    return int(m.group(1)) if m else None
