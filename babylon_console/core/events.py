"""Typed engine events: written to `console_events`, announced with NOTIFY, read back in order.

Every stage of the engine emits events; a console in another process (or on another machine)
follows them with `core.event_bus.EventBus.follow(after_id=...)`, which first replays what it missed
and then waits for notifications. The embedded engine uses the same path, so there is one way to watch.

Each kind has its model (`StepTrained`, `WindowJudged`, ...): strict when the code builds one (a
misspelt field raises at once), lenient when a stored row is read (`EventData.read`): rows written
by an older or newer engine, with missing, extra or mistyped keys, never raise; at worst a field
falls back to its default. The stored JSON keys are the models' field names.

Ordering: emits take a transaction-level advisory lock, so ids commit in increasing order and a
follower that reads "id > last" never skips an event committed late.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .jsonvalue import decoded, lenient_validate

if TYPE_CHECKING:  # asyncpg is imported where the database is used: the console paints before it loads
    import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "babylon_console_events"
_EMIT_LOCK = 0x6576_656E_7473  # "events"


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_STOPPED = "run_stopped"
    RUN_PAUSED = "run_paused"
    RUN_RESUMED = "run_resumed"
    ITERATION_STARTED = "iteration_started"
    WINDOW_SELECTED = "window_selected"
    WINDOW_JUDGED = "window_judged"
    WINDOW_SKIPPED = "window_skipped"
    STEP_TRAINED = "step_trained"
    CHECKPOINT_REGISTERED = "checkpoint_registered"
    CHECKPOINT_EVALUATED = "checkpoint_evaluated"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    HOLDOUT_SET = "holdout_set"
    ALARM = "alarm"
    ALARM_ACKNOWLEDGED = "alarm_acknowledged"
    WARNING = "warning"
    ERROR = "error"
    UNKNOWN = "unknown"  # read only: a kind this version does not know (written by a newer engine)


# -- one model per kind ------------------------------------------------------------------------


class EventData(BaseModel):
    """The typed payload of one kind. Every field has a default, so any stored row can be read."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    kind: ClassVar[EventKind]

    message: str | None = None

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> Self:
        """Parse a stored payload leniently: unknown keys are dropped, and a value that does not fit
        (after pydantic's usual coercions: "3" -> 3) falls back to the field's default; in a dict or
        a list only the entry that does not fit is dropped."""
        data = {k: v for k, v in payload.items() if k in cls.model_fields}
        # with a default for every field nothing is left unread; cls() is the fallback that cannot happen
        return lenient_validate(cls, data) or cls()

    @property
    def summary(self) -> str:
        """One line for logs and the console's event tail."""
        return self.message or self.kind.value.replace("_", " ")


def _fmt(value: float | None, spec: str) -> str:
    return format(math.nan if value is None else value, spec)


class RunStarted(EventData):
    kind = EventKind.RUN_STARTED
    config: dict[str, Any] = Field(default_factory=dict)  # EngineConfig.model_dump()


class RunStopped(EventData):
    kind = EventKind.RUN_STOPPED
    reason: str | None = None  # "finished", "stopped by operator", "failed: ..."
    iterations: int | None = None
    steps: list[int] = Field(default_factory=list)


class RunPaused(EventData):
    kind = EventKind.RUN_PAUSED
    operator: str | None = None


class RunResumed(EventData):
    kind = EventKind.RUN_RESUMED
    operator: str | None = None


class IterationStarted(EventData):
    kind = EventKind.ITERATION_STARTED
    iteration: int | None = None
    windows: list[str] = Field(default_factory=list)


class WindowSelected(EventData):
    kind = EventKind.WINDOW_SELECTED
    window_id: str | None = None
    trajectories: int | None = None  # kept in the group
    available: int | None = None  # in the window
    dropout: float | None = None
    steps_without_calls: int | None = None
    calls_from_logs: int | None = None
    trainable_calls: int | None = None
    calls_dropped: int | None = None
    completion_tokens: int | None = None


class WindowJudged(EventData):
    kind = EventKind.WINDOW_JUDGED
    window_id: str | None = None
    judge: str | None = None
    n: int | None = None
    mean: float = 0.0
    std: float = 0.0
    cost_usd: float | None = None  # None: not known
    duration_s: float | None = None
    attempts: int | None = None

    @property
    def summary(self) -> str:
        return (f"window {self.window_id} judged by {self.judge}: "
                f"mean {self.mean:.3f} ± {self.std:.3f} over {self.n}")


class WindowSkipped(EventData):
    kind = EventKind.WINDOW_SKIPPED
    window_id: str | None = None


class StepTrained(EventData):
    kind = EventKind.STEP_TRAINED
    step: int | None = None
    iteration: int | None = None  # None: a step recovered after a crash
    batch_id: str | None = None
    windows: list[str] = Field(default_factory=list)
    metrics: dict[str, float | None] = Field(default_factory=dict)  # None: a NaN (JSON has none)

    @property
    def summary(self) -> str:
        return (f"step {self.step} trained: loss {_fmt(self.metrics.get('loss/train'), '.4f')}, "
                f"reward {_fmt(self.metrics.get('train/reward'), '.3f')}")


class CheckpointRegistered(EventData):
    kind = EventKind.CHECKPOINT_REGISTERED
    model_id: str | None = None
    step: int | None = None
    avg_reward: float | None = None
    storage_path: str | None = None

    @property
    def summary(self) -> str:
        return f"checkpoint {self.model_id} registered (step {self.step})"


class CheckpointEvaluated(EventData):
    """A held-out evaluation finished (`core.checkpoints.evaluation`): the model against another on the same windows."""

    kind = EventKind.CHECKPOINT_EVALUATED
    model_id: str | None = None
    against_model_id: str | None = None  # None: the base policy
    windows: int | None = None
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str | None = None  # what the difference is in (P&L per agent-window, a judge's answer score)

    @property
    def summary(self) -> str:
        ci = "" if self.ci_low is None or self.ci_high is None else f" [{self.ci_low:+.2f}, {self.ci_high:+.2f}]"
        unit = f" {self.unit}" if self.unit else ""
        return (f"checkpoint {self.model_id} evaluated vs {self.against_model_id or 'base'} on {self.windows} "
                f"held-out windows: {_fmt(self.mean_diff, '+.2f')}{ci}{unit}")


class Promoted(EventData):
    kind = EventKind.PROMOTED
    model_id: str | None = None
    from_model_id: str | None = None  # the live model before; None: there was none
    share: float | None = None  # 1.0: live; below: an A/B rollout's candidate share
    operator: str | None = None
    rollout_id: int | None = None  # the A/B rollout started, or ended by making a model live

    @property
    def summary(self) -> str:
        return f"promoted: {self.message or ''}"


class RolledBack(EventData):
    kind = EventKind.ROLLED_BACK
    model_id: str | None = None  # live after the rollback
    from_model_id: str | None = None
    operator: str | None = None
    rollout_id: int | None = None  # the A/B rollout it ended, if one ran

    @property
    def summary(self) -> str:
        return f"rolled back: {self.message or ''}"


class HoldoutSet(EventData):
    """The database's hold-out changed (`core.checkpoints.holdout`): every process reads the new share."""

    kind = EventKind.HOLDOUT_SET
    share: float | None = None
    previous_share: float | None = None  # None: there was no record
    rule: str | None = None  # the hold-out rule's version
    operator: str | None = None
    reason: str | None = None


class Alarm(EventData):
    """A training-health rule fired (`core.training.alarms`); `message` says it with the figures."""

    kind = EventKind.ALARM
    alarm_id: int | None = None  # its row in console_alarms; None: not stored
    rule: str | None = None  # an AlarmRule's value; a str so a rule of a newer engine still reads
    model_name: str | None = None  # the training key
    step: int | None = None
    window_id: str | None = None
    figures: dict[str, float | None] = Field(default_factory=dict)  # None: the figure is missing
    threshold: float | None = None
    paused: bool = False  # the engine paused itself on it

    @property
    def summary(self) -> str:
        where = f"step {self.step}" if self.step is not None else f"window {self.window_id or '?'}"
        paused = " (engine paused)" if self.paused else ""
        return f"alarm {self.rule or 'unknown'} at {where}: {self.message or 'no message'}{paused}"


class AlarmAcknowledged(EventData):
    """An operator acknowledged an alarm (`core.training.health_store.acknowledge`)."""

    kind = EventKind.ALARM_ACKNOWLEDGED
    alarm_id: int | None = None
    rule: str | None = None
    operator: str | None = None  # the name the client gave
    db_role: str | None = None  # current_user, the server's word

    @property
    def summary(self) -> str:
        rule = f" ({self.rule})" if self.rule else ""
        role = f" (db {self.db_role})" if self.db_role else ""
        note = f": {self.message}" if self.message else ""
        return f"alarm {self.alarm_id}{rule} acknowledged by {self.operator or 'unknown'}{role}{note}"


class EngineWarning(EventData):
    """Something went wrong and the engine carried on; `stage` says where (None: the engine)."""

    kind = EventKind.WARNING
    stage: str | None = None
    window_id: str | None = None
    batch_id: str | None = None
    windows: list[str] = Field(default_factory=list)
    operator: str | None = None
    runs: list[str] = Field(default_factory=list)  # dead runs closed at start
    rejected: int | None = None  # unusable trajectories skipped in `window_id`
    dropped_too_long: int | None = None
    step: int | None = None  # the backend's step when it is not the expected one
    expected_step: int | None = None
    since: str | None = None  # ISO time a database outage began
    down_s: float | None = None


class EngineFailure(EventData):
    """A stage failed (a window's judging, a read, a training step) or the engine itself did."""

    kind = EventKind.ERROR
    stage: str | None = None  # read, judge, train, register; None: the engine
    window_id: str | None = None
    batch_id: str | None = None
    windows: list[str] = Field(default_factory=list)


class UnknownEvent(EventData):
    """A kind this version does not know: its name and raw payload, read only."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    kind = EventKind.UNKNOWN
    name: str = "unknown"
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def summary(self) -> str:
        return self.message or self.name.replace("_", " ")


EVENT_TYPES: dict[EventKind, type[EventData]] = {t.kind: t for t in (
    RunStarted, RunStopped, RunPaused, RunResumed, IterationStarted, WindowSelected, WindowJudged, WindowSkipped,
    StepTrained, CheckpointRegistered, CheckpointEvaluated, Promoted, RolledBack, HoldoutSet, Alarm, AlarmAcknowledged,
    EngineWarning, EngineFailure,
)}
_KNOWN_KINDS = frozenset(EVENT_TYPES)


# -- stored events -----------------------------------------------------------------------------


class Event(BaseModel):
    id: int | None = None
    run_id: str | None = None
    kind: EventKind
    payload: dict[str, Any] = Field(default_factory=dict)  # as stored; `data` is the typed view
    created_at: datetime | None = None
    raw_kind: str | None = None  # the stored kind when this version does not know it (kind is UNKNOWN)

    @model_validator(mode="before")
    @classmethod
    def _unknown_kind(cls, values: Any) -> Any:
        kind = values.get("kind") if isinstance(values, dict) else None
        if isinstance(kind, str) and kind not in _KNOWN_KINDS:
            return {**values, "kind": EventKind.UNKNOWN, "raw_kind": kind}
        return values

    @functools.cached_property
    def data(self) -> EventData:
        """The payload as its kind's model, parsed leniently (never raises)."""
        if self.kind is EventKind.UNKNOWN:
            message = self.payload.get("message")
            return UnknownEvent(name=self.raw_kind or EventKind.UNKNOWN.value, payload=self.payload,
                                message=message if isinstance(message, str) else None)
        return EVENT_TYPES[self.kind].read(self.payload)

    @property
    def summary(self) -> str:
        """One line for logs and the console's event tail."""
        return self.data.summary


def _decode_payload(value: Any) -> dict[str, Any]:
    """The stored payload as a dict, whatever was stored (a non-object is kept under "value")."""
    value = decoded(value, on_error=lambda text: {"value": text})
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else {"value": value}


def _row_to_event(row: asyncpg.Record) -> Event:
    return Event(id=row["id"], run_id=row["run_id"], kind=row["kind"],
                 payload=_decode_payload(row["payload"]), created_at=row["created_at"])


async def emit(
    conn: asyncpg.Connection | asyncpg.Pool, event: EventData | EventKind, payload: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Event:
    """Write one event and NOTIFY followers. Inside the caller's transaction when given a connection
    that is in one (so an event and the change it reports commit together).

    `event` is a model (`emit(conn, StepTrained(step=3, ...), run_id=...)`); the older form, a kind
    and its payload dict, is validated by the kind's model just the same (a misspelt key raises).
    Only the fields that were set are stored, so the JSON is what the emitter wrote."""
    if isinstance(event, EventKind):
        if event not in EVENT_TYPES:
            raise ValueError(f"cannot emit an event of kind {event.value!r}")
        event = EVENT_TYPES[event].model_validate(dict(payload or {}))
    elif payload is not None:
        raise TypeError("emit: a payload goes with an EventKind, not with a model (pass run_id by name)")
    elif isinstance(event, UnknownEvent):
        raise ValueError("an unknown event is read only")
    body = orjson.dumps(event.model_dump(exclude_unset=True),
                        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()
    kind = event.kind

    async def write(c: asyncpg.Connection) -> Event:
        await c.execute("SELECT pg_advisory_xact_lock($1)", _EMIT_LOCK)
        row = await c.fetchrow(
            "INSERT INTO console_events (run_id, kind, payload) VALUES ($1, $2, $3::jsonb) "
            "RETURNING id, run_id, kind, payload, created_at",
            run_id, kind.value, body,
        )
        await c.execute("SELECT pg_notify($1, $2)", CHANNEL, str(row["id"]))
        return _row_to_event(row)

    import asyncpg

    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c, c.transaction():
            return await write(c)
    if conn.is_in_transaction():
        return await write(conn)
    async with conn.transaction():
        return await write(conn)


async def fetch_after(conn: asyncpg.Connection | asyncpg.Pool, after_id: int, limit: int = 1000,
                      run_id: str | None = None) -> list[Event]:
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events "
        "WHERE id > $1 AND ($3::text IS NULL OR run_id = $3) ORDER BY id LIMIT $2",
        after_id, limit, run_id,
    )
    return [_row_to_event(r) for r in rows]


async def last_event_id(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT coalesce(max(id), 0) FROM console_events")


async def recent(conn: asyncpg.Connection | asyncpg.Pool, limit: int = 200) -> list[Event]:
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events ORDER BY id DESC LIMIT $1", limit
    )
    return [_row_to_event(r) for r in reversed(rows)]


async def of_kinds(conn: asyncpg.Connection | asyncpg.Pool, kinds: list[EventKind], limit: int) -> list[Event]:
    """The latest `limit` events of the given kinds, oldest first (chart history)."""
    rows = await conn.fetch(
        "SELECT id, run_id, kind, payload, created_at FROM console_events "
        "WHERE kind = ANY($2::text[]) ORDER BY id DESC LIMIT $1",
        limit, [k.value for k in kinds],
    )
    return [_row_to_event(r) for r in reversed(rows)]
