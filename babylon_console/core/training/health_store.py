"""Training health and alarms, stored: `console_step_health` (one row per trained step of a model, its
`StepHealth` as JSON) and `console_alarms` (each alarm a rule raised, and its acknowledgement).

Reading is lenient, like the event log's: a row written by another version reads as far as it goes
(a figure that does not fit is missing with the reason, an entry of a list or dict that does not fit
is dropped, an unknown key is ignored); a row that cannot be read at all is skipped and logged, never
a traceback. Who wrote an alarm and who acknowledged it are the server's word (triggers of migration
0019), beside the operator's name the client gives.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, Field, ValidationError

from .. import events
from ..errors import ErrorKind, Failed, Refused
from ..jsonvalue import decoded, lenient_validate
from ..stats import Figure
from .health import StepHealth

if TYPE_CHECKING:
    import asyncpg

    from .alarms import RaisedAlarm

log = logging.getLogger(__name__)

UNREADABLE = "not readable in the stored row"  # why a figure a stored row had is missing


class AlarmNotFound(Failed, LookupError):
    """No alarm has this id: invalid input (exit 2), like an unknown model id."""

    kind = ErrorKind.INVALID_INPUT
    title = "Unknown alarm"


class AlarmAlreadyAcknowledged(Refused, RuntimeError):
    """The alarm was acknowledged before; nothing was changed. `record` (when raised by `acknowledge`) says
    by whom and when."""

    title = "Already acknowledged"
    record: AlarmRecord | None = None

    @classmethod
    def of(cls, record: AlarmRecord) -> AlarmAlreadyAcknowledged:
        exc = cls(f"alarm {record.id} was already acknowledged by {record.acknowledged_who} "
                  f"at {_when(record.acknowledged_at)}: nothing changed")
        exc.record = record
        return exc


class AlarmRecord(BaseModel):
    """One stored alarm. `rule` is text, so a rule of a newer engine still reads."""

    id: int
    run_id: str | None = None
    model_name: str
    rule: str
    step: int | None = None
    window_id: str | None = None
    figures: dict[str, float | None] = Field(default_factory=dict)  # None: the figure was missing
    threshold: float | None = None
    message: str
    created_at: datetime
    db_role: str | None = None  # current_user that wrote it (the engine's role), by trigger
    db_login: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None  # the operator's name as the client gave it
    acknowledged_db_role: str | None = None  # current_user that acknowledged it, by trigger
    acknowledged_db_login: str | None = None
    note: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def where(self) -> str:
        """`step 4`, `window 2025-11-24T10:00`, or both."""
        parts = [f"step {self.step}" if self.step is not None else "",
                 f"window {self.window_id}" if self.window_id else ""]
        return ", ".join(p for p in parts if p) or "no step"

    @property
    def acknowledged_who(self) -> str:
        """`ana (db babylon_operator)`: the client's name and the server's word."""
        role = f" (db {self.acknowledged_db_role}" if self.acknowledged_db_role else ""
        if role and self.acknowledged_db_login and self.acknowledged_db_login != self.acknowledged_db_role:
            role += f", login {self.acknowledged_db_login}"
        return f"{self.acknowledged_by or 'unknown'}{role + ')' if role else ''}"

    @property
    def status(self) -> str:
        """`open` or `acknowledged by ana (db babylon_operator) at 2026-...: note`."""
        if not self.acknowledged:
            return "open"
        note = f": {self.note}" if self.note else ""
        return f"acknowledged by {self.acknowledged_who} at {_when(self.acknowledged_at)}{note}"

    def event(self, *, paused: bool = False) -> events.Alarm:
        """The `alarm` event announcing this record."""
        return events.Alarm(alarm_id=self.id, rule=self.rule, model_name=self.model_name, step=self.step,
                            window_id=self.window_id, figures=self.figures, threshold=self.threshold,
                            paused=paused, message=self.message)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if at is not None else "an unknown time"


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# -- writes (the engine) -----------------------------------------------------------------------


async def save_health(conn: asyncpg.Connection | asyncpg.Pool, health: StepHealth) -> None:
    """Store one step's health; a step stored again (recovered, re-registered) overwrites its row."""
    await conn.execute(
        "INSERT INTO console_step_health (model_name, step, run_id, health) VALUES ($1, $2, $3, $4::jsonb) "
        "ON CONFLICT (model_name, step) DO UPDATE SET run_id = EXCLUDED.run_id, health = EXCLUDED.health, "
        "created_at = now()",
        health.model_name, health.step, health.run_id, _dumps(health.model_dump(mode="json", exclude={"created_at"})),
    )


def _finite_figures(figures: dict[str, float | None]) -> dict[str, float | None]:
    """JSON has no NaN: a figure that is not a finite number is stored as missing (None)."""
    return {k: v if v is not None and math.isfinite(v) else None for k, v in figures.items()}


async def record_alarm(conn: asyncpg.Connection | asyncpg.Pool, alarm: RaisedAlarm, *, model_name: str,
                       run_id: str | None) -> AlarmRecord:
    """Store one raised alarm (the caller announces it: `record.event(paused=...)`)."""
    threshold = alarm.threshold if alarm.threshold is not None and math.isfinite(alarm.threshold) else None
    row = await conn.fetchrow(
        f"INSERT INTO console_alarms (run_id, model_name, rule, step, window_id, figures, threshold, message) "
        f"VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) RETURNING {_ALARM_COLUMNS}",
        run_id, model_name, str(alarm.rule), alarm.step, alarm.window_id, _dumps(_finite_figures(alarm.figures)),
        threshold, alarm.message,
    )
    record = _read_alarm(row)
    assert record is not None  # written just now, by this version
    return record


# -- reads -------------------------------------------------------------------------------------


_FIGURES = frozenset(name for name, field in StepHealth.model_fields.items() if field.annotation in (Figure, "Figure"))


def read_health(row: Any) -> StepHealth | None:
    """One stored row as StepHealth, as far as it reads; None when its JSON is no object at all.
    The row's columns (model, step, run, time) are authoritative over the JSON."""
    data = decoded(row["health"], on_error=lambda _text: None)
    if not isinstance(data, dict):
        return None
    data = {**data, "model_name": row["model_name"], "step": row["step"], "run_id": row["run_id"],
            "created_at": row["created_at"]}
    # a figure that does not read is missing, and says so; any other misfit falls back to its default
    return lenient_validate(StepHealth, data, whole=dict.fromkeys(_FIGURES, Figure.lacking(UNREADABLE).model_dump()))


async def health_history(pool: asyncpg.Pool | asyncpg.Connection, model_name: str | None = None, *,
                         limit: int = 200) -> list[StepHealth]:
    """The newest `limit` steps' health, oldest first: of one training key in step order (a step
    trained again keeps its place), of every key in the order they were written."""
    order = "step" if model_name is not None else "created_at, model_name, step"
    rows = await pool.fetch(
        "SELECT model_name, step, run_id, health, created_at FROM ("
        "  SELECT * FROM console_step_health WHERE $1::text IS NULL OR model_name = $1"
        f"  ORDER BY {order.replace(',', ' DESC,')} DESC LIMIT $2"
        f") newest ORDER BY {order}",
        model_name, limit,
    )
    read = [read_health(r) for r in rows]
    if (skipped := sum(h is None for h in read)):
        log.warning("skipped %d stored health row(s) that could not be read", skipped)
    return [h for h in read if h is not None]


async def first_steps(pool: asyncpg.Pool | asyncpg.Connection, model_name: str, count: int) -> list[StepHealth]:
    """The health of a training key's first `count` steps, in step order (a rule's early level)."""
    rows = await pool.fetch("SELECT model_name, step, run_id, health, created_at FROM console_step_health "
                            "WHERE model_name = $1 ORDER BY step LIMIT $2", model_name, count)
    return [h for r in rows if (h := read_health(r)) is not None]


async def training_keys(pool: asyncpg.Pool | asyncpg.Connection, model: str | None = None) -> list[str]:
    """The training keys with stored health or alarms, sorted: all of them, or those of `model`, a model
    name (`babylon-agent`: every backend's key of it) or a training key (`offline:babylon-agent`)."""
    rows = await pool.fetch(
        "SELECT model_name FROM console_step_health UNION SELECT model_name FROM console_alarms ORDER BY 1")
    keys = [r["model_name"] for r in rows]
    if model is None:
        return keys
    return [k for k in keys if k == model or k.partition(":")[2] == model]


_ALARM_COLUMNS = ("id, run_id, model_name, rule, step, window_id, figures, threshold, message, created_at, "
                  "db_role, db_login, acknowledged_at, acknowledged_by, acknowledged_db_role, acknowledged_db_login, "
                  "note")


def _read_figures(value: Any) -> dict[str, float | None]:
    figures = decoded(value, on_error=lambda _text: None)
    if not isinstance(figures, dict):
        return {}
    return {str(k): (float(v) if v is not None and math.isfinite(v) else None) for k, v in figures.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}


def _read_alarm(row: Any) -> AlarmRecord | None:
    try:
        return AlarmRecord.model_validate({**dict(row), "figures": _read_figures(row["figures"])})
    except ValidationError:
        return None


async def alarms(pool: asyncpg.Pool | asyncpg.Connection, model_name: str | None = None, *, open_only: bool = False,
                 limit: int = 200) -> list[AlarmRecord]:
    """The newest `limit` alarms, newest first (of one training key, or of every one)."""
    rows = await pool.fetch(
        f"SELECT {_ALARM_COLUMNS} FROM console_alarms "
        "WHERE ($1::text IS NULL OR model_name = $1) AND (NOT $2 OR acknowledged_at IS NULL) "
        "ORDER BY id DESC LIMIT $3",
        model_name, open_only, limit,
    )
    read = [_read_alarm(r) for r in rows]
    if (skipped := sum(a is None for a in read)):
        log.warning("skipped %d stored alarm(s) that could not be read", skipped)
    return [a for a in read if a is not None]


# -- the acknowledgement (an operator) -----------------------------------------------------------


async def acknowledge(pool: asyncpg.Pool, alarm_id: int, *, operator: str, note: str | None = None) -> AlarmRecord:
    """Record that `operator` saw the alarm (when, and the database role by the server's word) and
    announce it, in one transaction. Raises AlarmNotFound, or AlarmAlreadyAcknowledged (nothing changed)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE console_alarms SET acknowledged_at = now(), acknowledged_by = $2, note = $3 "
            f"WHERE id = $1 AND acknowledged_at IS NULL RETURNING {_ALARM_COLUMNS}",
            alarm_id, operator, note,
        )
        if row is None:
            existing = await conn.fetchrow(f"SELECT {_ALARM_COLUMNS} FROM console_alarms WHERE id = $1", alarm_id)
            if existing is None:
                raise AlarmNotFound(f"no alarm with id {alarm_id} (see `babylon-console health`)")
            record = _read_alarm(existing)
            if record is None:
                raise Failed(f"alarm {alarm_id} is stored in a form this version cannot read")
            raise AlarmAlreadyAcknowledged.of(record)
        record = _read_alarm(row)
        if record is None:
            raise Failed(f"alarm {alarm_id} is stored in a form this version cannot read")
        await events.emit(conn, events.AlarmAcknowledged(
            alarm_id=record.id, rule=record.rule, operator=operator, db_role=record.acknowledged_db_role,
            message=note), run_id=record.run_id)
        return record
