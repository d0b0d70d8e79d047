"""Checkpoint registry: list, promote (A/B share or 100%), roll back (DESIGN section 4).

Each action is one transaction that takes a registry advisory lock and the affected rows' locks,
writes an audit row (`console_promotions`: operator, time, from, to) and an event, so that at every
instant at most one `trained_models` row is `deployed`, also when two consoles act at once.

An A/B rollout (a share below 100%) has an id and a record (`console_rollouts`: candidate, live
model, share, who, when by the wall clock and by the database's clock). Its evidence counts only
the windows that opened at or after it started (`core.checkpoints.evidence`). Every promotion at a share below
100% starts a new rollout, also a re-promotion of the same candidate and a change of share (the
served-share truth compares with one asked share, and a changed rollout is judged afresh); making
a model live, or a rollback, ends the rollout. Audit rows and events name the rollout they started
or ended. A rollout needs a live model to compare with: with nothing live it is refused.

The status contract (DESIGN section 4): the Prisma-era game serves the row its own query
(`GAME_QUERY`) returns, so a new checkpoint is `registered` (outside 'ready'/'deployed') and only
the live model is `deployed`: at every instant that query returns the live model, or no row while
nothing is live. Rows the game wrote (recognised by a storagePath outside our schemes) are shown as
they are and never promoted, rolled back to or changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, field_validator

from .. import events
from ..clock import Clock, SystemClock, to_naive_utc
from ..errors import ErrorKind, Refused
from ..events import Promoted, RolledBack
from ..game import market_clock
from ..game.rows import TrainedModel
from ..jsonvalue import decoded
from ..names import is_our_name
from .evidence_text import summarize_evidence

_REGISTRY_LOCK = 0x7265_6769_7374_7279 & 0x7FFF_FFFF_FFFF_FFFF  # "registry"
REGISTERED = "registered"  # a checkpoint this project registered and the game does not serve
PROMOTABLE = (REGISTERED, "archived")
# The Prisma-era game's `getLatestRLModel()`, verbatim: the row it serves ('deployed' has no priority)
GAME_QUERY = """SELECT * FROM trained_models WHERE status IN ('ready','deployed') ORDER BY "createdAt" DESC LIMIT 1"""
NOTHING_LIVE = "nothing is live: promote a checkpoint to 100% first"


class RegistryError(Refused, RuntimeError):
    """The action was refused; the message says which model and why. Nothing was changed."""

    title = "Registry action refused"


class UnknownModel(RegistryError):
    """No checkpoint has this model id: invalid input (exit 2), in every command that takes one."""

    kind = ErrorKind.INVALID_INPUT
    title = "Unknown model"


class AuditEntry(BaseModel):
    id: int
    action: str
    operator: str
    from_model_id: str | None
    to_model_id: str | None
    share: float | None
    note: str | None
    created_at: datetime
    evidence: dict[str, Any] | None = None  # what the decision was taken on (evaluation, A/B readout)
    rollout_id: int | None = None  # the rollout this action started or ended
    # who acted by the server's word, written by a trigger (migration 0018): the database role
    # (current_user) and the login (session_user); None on rows older than it
    db_role: str | None = None
    db_login: str | None = None

    @property
    def db_who(self) -> str | None:
        """`db alice` (`db babylon_operator, login alice` when the login acted as another role); None: not recorded."""
        if self.db_role is None:
            return None
        login = f", login {self.db_login}" if self.db_login and self.db_login != self.db_role else ""
        return f"db {self.db_role}{login}"

    @property
    def evidence_summary(self) -> str:
        """The evidence in one line (`summarize_evidence`)."""
        return summarize_evidence(self.evidence)

    @field_validator("evidence", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return decoded(value)


class Rollout(BaseModel):
    candidate_model_id: str | None
    candidate_share: float
    id: int | None = None  # its record in console_rollouts
    live_model_id: str | None = None  # live when it started
    started_by: str | None = None
    started_at: datetime | None = None  # wall clock
    started_market_at: datetime | None = None  # the database's clock: its evidence starts here


_ROLLOUT_SQL = """
SELECT r.candidate_model_id, r.candidate_share, r.rollout_id AS id, o.live_model_id, o.started_by, o.started_at,
       o.started_market_at
FROM console_rollout r LEFT JOIN console_rollouts o ON o.id = r.rollout_id
WHERE r.candidate_model_id IS NOT NULL
"""


async def rollout_start(pool: asyncpg.Pool | asyncpg.Connection, rollout_id: int) -> datetime | None:
    """When rollout `rollout_id` started by the database's clock; None when it has no record."""
    return await pool.fetchval("SELECT started_market_at FROM console_rollouts WHERE id = $1", rollout_id)


@dataclass(frozen=True, slots=True)
class EndedRollout:
    """A candidate's latest ended rollout, with the audit row that rolled it back, if one did."""

    id: int
    candidate_model_id: str
    end_reason: str | None
    operator: str | None  # of the rollback's audit row (None: no audit row rolled it back)
    note: str | None
    evidence: Any  # the rollback's evidence as stored


_LAST_ENDED_SQL = """
SELECT DISTINCT ON (r.candidate_model_id) r.id, r.candidate_model_id, r.end_reason, p.operator, p.note, p.evidence
FROM console_rollouts r
LEFT JOIN LATERAL (SELECT operator, note, evidence FROM console_promotions p
                   WHERE p.rollout_id = r.id AND p.action = 'rollback' ORDER BY p.id DESC LIMIT 1) p ON true
WHERE r.ended_at IS NOT NULL
ORDER BY r.candidate_model_id, r.ended_at DESC, r.id DESC
"""


async def last_ended_rollouts(pool: asyncpg.Pool | asyncpg.Connection) -> list[EndedRollout]:
    """Per candidate, its latest ended rollout (`core.checkpoints.evidence` reads which the gate rolled back)."""
    return [EndedRollout(r["id"], r["candidate_model_id"], r["end_reason"], r["operator"], r["note"], r["evidence"])
            for r in await pool.fetch(_LAST_ENDED_SQL)]


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    from_model_id: str | None
    to_model_id: str | None
    share: float
    message: str
    rollout_id: int | None = None  # the rollout started (A/B) or ended by the action


@dataclass(frozen=True, slots=True)
class Served:
    model_id: str
    storage_path: str
    role: str  # live or candidate
    share: float
    rollout_id: int | None = None  # the A/B rollout in progress (core.checkpoints.registry), if any


async def serving(pool: asyncpg.Pool | asyncpg.Connection) -> list[Served]:
    """What the game serves now (the `console_serving` view)."""
    rows = await pool.fetch("SELECT model_id, storage_path, role, share, rollout_id FROM console_serving")
    return [Served(r["model_id"], r["storage_path"], r["role"], float(r["share"] or 0), r["rollout_id"])
            for r in rows]


def is_ours(model: TrainedModel) -> bool:
    """Whether this project registered the row: its storagePath has one of our schemes. The game's own
    rows (a blob URL, a provider's model name) are never ours, whatever their status."""
    return is_our_name(model.storage_path)


def eligibility(model: TrainedModel, live_id: str | None, rollout: Rollout | None) -> str | None:
    """None when `model` may be promoted, else the reason it may not (shown by the console)."""
    if model.model_id == live_id:
        return "already live"
    if not is_ours(model):
        return f"written by the game (storagePath {model.storage_path!r}): shown as it is, never promoted"
    if model.status not in PROMOTABLE:
        return f"status is {model.status!r}; only registered or archived checkpoints can be promoted"
    return None


# This project's 'deployed' row is the live model; a 'deployed' row the game wrote is the game's
# (shown by `game_serves`, never served, archived or counted as ours).
_LIVE_WHERE = ("""status = 'deployed' AND ("storagePath" LIKE 'offline://%' """
               """OR "storagePath" LIKE 'wandb-artifact://%' OR "storagePath" LIKE 'local-lora://%')""")


async def live_model(pool: asyncpg.Pool | asyncpg.Connection) -> TrainedModel | None:
    """The live model (this project's one 'deployed' row); None while nothing is live."""
    row = await pool.fetchrow(f"SELECT * FROM trained_models WHERE {_LIVE_WHERE} LIMIT 1")
    return TrainedModel.model_validate(dict(row)) if row else None


async def live_model_id(pool: asyncpg.Pool | asyncpg.Connection, *, lock: bool = False) -> str | None:
    """The live model's id; None while nothing is live. `lock`: its row stays locked until the
    caller's transaction ends (promote and roll back)."""
    return await pool.fetchval(f'SELECT "modelId" FROM trained_models WHERE {_LIVE_WHERE}'
                               + (" FOR UPDATE" if lock else ""))


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """The columns of a `trained_models` row that evaluation and the gateway look up (a row the
    game wrote may have no storagePath)."""

    model_id: str
    storage_path: str | None
    status: str
    training_batch: str | None
    version: str | None


_CHECKPOINT_COLUMNS = '"modelId", "storagePath", status, "trainingBatch", version'


def _checkpoint_row(row: asyncpg.Record) -> CheckpointRow:
    return CheckpointRow(row["modelId"], row["storagePath"], row["status"], row["trainingBatch"], row["version"])


async def checkpoint_row(pool: asyncpg.Pool | asyncpg.Connection, model_id: str) -> CheckpointRow | None:
    """The checkpoint with this model id; None when there is none."""
    row = await pool.fetchrow(f'SELECT {_CHECKPOINT_COLUMNS} FROM trained_models WHERE "modelId" = $1', model_id)
    return _checkpoint_row(row) if row is not None else None


async def named_checkpoints(pool: asyncpg.Pool | asyncpg.Connection) -> list[CheckpointRow]:
    """Every checkpoint with a served name (storagePath), newest first."""
    rows = await pool.fetch(f'SELECT {_CHECKPOINT_COLUMNS} FROM trained_models WHERE "storagePath" IS NOT NULL '
                            'ORDER BY "createdAt" DESC, "modelId" DESC')
    return [_checkpoint_row(r) for r in rows]


async def game_serves(pool: asyncpg.Pool | asyncpg.Connection) -> TrainedModel | None:
    """What the Prisma-era game serves now: the row its own query returns (None: no row)."""
    row = await pool.fetchrow(GAME_QUERY)
    return TrainedModel.model_validate(dict(row)) if row else None


def serving_mismatch(live: TrainedModel | None, served: TrainedModel | None) -> str | None:
    """None when the game's query returns the live model (or nothing while nothing is live), else a
    warning that says what the game serves instead."""
    if (live.model_id if live else None) == (served.model_id if served else None):
        return None
    if served is None:
        return f"the game's query returns no row although {live.model_id if live else '?'} is live"
    who = "this project" if is_ours(served) else "the game"
    return (f"the game's query returns {served.model_id} (status {served.status!r}, written by {who}), "
            + (f"not the live model {live.model_id}" if live else "while nothing is live")
            + ": the Prisma-era game serves that row")


def share_refusal(live_id: str | None, share: float) -> str | None:
    """None when a promotion at `share` can run next to `live_id`, else why not: an A/B share needs
    a live arm (with none, the candidate would serve every agent, a share nobody asked for)."""
    if not 0 < share <= 1:
        return f"share must be in (0, 1], got {share}"
    if share < 1 and live_id is None:
        return NOTHING_LIVE
    return None


class Registry:
    def __init__(self, pool: asyncpg.Pool, clock: Clock | None = None) -> None:
        """`clock`: the time of registry changes; None: the wall clock, and the database's clock
        (`market_clock.current_clock`) for the start of a rollout, the clock its windows are dated by."""
        self.pool = pool
        self.clock = clock or SystemClock()
        self._given_clock = clock

    async def models(self, limit: int = 200) -> list[TrainedModel]:
        # newest registration first (a wall-clock time); one model's steps tie-break by their zero-padded id
        rows = await self.pool.fetch('SELECT * FROM trained_models ORDER BY "createdAt" DESC, "modelId" DESC LIMIT $1',
                                     limit)
        return [TrainedModel.model_validate(dict(r)) for r in rows]

    async def live(self) -> TrainedModel | None:
        return await live_model(self.pool)

    async def rollout(self) -> Rollout | None:
        row = await self.pool.fetchrow(_ROLLOUT_SQL)
        return Rollout(**dict(row)) if row else None

    async def model(self, model_id: str) -> TrainedModel:
        """The checkpoint with this model id; UnknownModel (exit 2) when there is none."""
        row = await self.pool.fetchrow('SELECT * FROM trained_models WHERE "modelId" = $1', model_id)
        if row is None:
            raise UnknownModel(unknown_model_message(model_id))
        return TrainedModel.model_validate(dict(row))

    async def check_promotion(self, model_id: str, share: float) -> TrainedModel:
        """What `promote` would refuse, checked before any confirmation is asked (`promote` checks
        again in its transaction)."""
        model = await self.model(model_id)
        live = await self.live()
        live_id = live.model_id if live else None
        reason = eligibility(model, live_id, await self.rollout()) or share_refusal(live_id, share)
        if reason:
            raise RegistryError(refusal_message(model_id, share, reason))
        return model

    async def audit(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self.pool.fetch("SELECT * FROM console_promotions ORDER BY id DESC LIMIT $1", limit)
        return [AuditEntry(**dict(r)) for r in rows]

    async def _lock(self, conn: asyncpg.Connection) -> tuple[str | None, Rollout | None]:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _REGISTRY_LOCK)
        live = await live_model_id(conn, lock=True)
        row = await conn.fetchrow(_ROLLOUT_SQL)
        return live, (Rollout(**dict(row)) if row else None)

    async def _model(self, conn: asyncpg.Connection, model_id: str) -> TrainedModel:
        row = await conn.fetchrow('SELECT * FROM trained_models WHERE "modelId" = $1 FOR UPDATE', model_id)
        if row is None:
            raise UnknownModel(unknown_model_message(model_id))
        return TrainedModel.model_validate(dict(row))

    async def _audit(self, conn: asyncpg.Connection, action: str, operator: str, from_id: str | None,
                     to_id: str | None, share: float | None, note: str | None,
                     evidence: dict[str, Any] | None = None, rollout_id: int | None = None) -> None:
        await conn.execute(
            "INSERT INTO console_promotions (action, operator, from_model_id, to_model_id, share, note, evidence, "
            "rollout_id) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            action, operator, from_id, to_id, share, note,
            None if evidence is None else orjson.dumps(evidence).decode(), rollout_id,
        )

    async def _start_rollout(self, conn: asyncpg.Connection, model_id: str, live_id: str | None, share: float,
                             operator: str) -> int:
        """A new rollout record, made the current rollout; its evidence starts at the database's now."""
        clock = self._given_clock or await market_clock.current_clock(conn)
        rollout_id = await conn.fetchval(
            "INSERT INTO console_rollouts (candidate_model_id, live_model_id, share, started_by, started_market_at) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            model_id, live_id, share, operator, to_naive_utc(clock.now()),
        )
        await conn.execute(
            "INSERT INTO console_rollout (singleton, candidate_model_id, candidate_share, updated_by, updated_at, "
            "rollout_id) VALUES (true, $1, $2, $3, now(), $4) ON CONFLICT (singleton) DO UPDATE SET "
            "candidate_model_id = $1, candidate_share = $2, updated_by = $3, updated_at = now(), rollout_id = $4",
            model_id, share, operator, rollout_id,
        )
        return rollout_id

    async def _end_rollout(self, conn: asyncpg.Connection, rollout: Rollout | None, reason: str) -> None:
        """No rollout runs after this; the one that ran (if any) is recorded as ended, and why."""
        if rollout is not None and rollout.id is not None:
            await conn.execute("UPDATE console_rollouts SET ended_at = now(), end_reason = $2 "
                               "WHERE id = $1 AND ended_at IS NULL", rollout.id, reason)
        await conn.execute("DELETE FROM console_rollout")

    async def _make_live(self, conn: asyncpg.Connection, live_id: str | None, model_id: str,
                         rollout: Rollout | None, why: str) -> None:
        now = self.clock.now()
        if live_id is not None:
            await conn.execute(
                """UPDATE trained_models SET status = 'archived', "archivedAt" = $2, "updatedAt" = $2
                   WHERE "modelId" = $1""", live_id, now,
            )
        await conn.execute(
            """UPDATE trained_models SET status = 'deployed', "deployedAt" = $2, "archivedAt" = NULL,
               "updatedAt" = $2 WHERE "modelId" = $1""", model_id, now,
        )
        await self._end_rollout(conn, rollout, why)

    async def promote(self, model_id: str, *, share: float = 1.0, operator: str, note: str | None = None,
                      run_id: str | None = None, evidence: dict[str, Any] | None = None) -> ActionResult:
        """Share 1.0 makes the checkpoint live (the previous live one is archived, a running rollout
        ends); a share in (0, 1) starts a new A/B rollout with it as the candidate next to the live
        model (refused with nothing live), ending the one that ran."""
        if not 0 < share <= 1:
            raise RegistryError(f"share must be in (0, 1], got {share}")
        async with self.pool.acquire() as conn, conn.transaction():
            live_id, rollout = await self._lock(conn)
            model = await self._model(conn, model_id)
            reason = eligibility(model, live_id, rollout) or share_refusal(live_id, share)
            if reason:
                raise RegistryError(refusal_message(model_id, share, reason))
            if share >= 1.0:
                rollout_id = rollout.id if rollout is not None else None
                why = ("promoted to 100%" if rollout is not None and rollout.candidate_model_id == model_id
                       else f"{model_id} was made live")
                await self._make_live(conn, live_id, model_id, rollout, why)
                action, message = "promote", f"{model_id} is live (was {live_id or 'none'})"
            else:
                if rollout is not None:
                    await self._end_rollout(conn, rollout, f"replaced: {model_id} at {share:.0%}")
                rollout_id = await self._start_rollout(conn, model_id, live_id, share, operator)
                action = "rollout"
                message = (f"{model_id} serves {share:.0%} of agents next to {live_id} (rollout {rollout_id}: "
                           "its readout counts windows from now on)")
            await self._audit(conn, action, operator, live_id, model_id, share, note, evidence, rollout_id)
            await events.emit(conn, Promoted(
                model_id=model_id, from_model_id=live_id, share=share, operator=operator, message=message,
                rollout_id=rollout_id,
            ), run_id=run_id)
        return ActionResult(action, live_id, model_id, share, message, rollout_id)

    async def rollback(self, *, operator: str, to_model_id: str | None = None, note: str | None = None,
                       run_id: str | None = None, rollout_id: int | None = None,
                       evidence: dict[str, Any] | None = None) -> ActionResult:
        """Cancel an A/B rollout if one runs; otherwise make the previously live model live again
        (or `to_model_id`). `rollout_id`: cancel only this rollout (an automatic rollback must not
        cancel a newer rollout, even of the same candidate); `note` and `evidence` are recorded."""
        async with self.pool.acquire() as conn, conn.transaction():
            live_id, rollout = await self._lock(conn)
            if rollout_id is not None and (rollout is None or rollout.id != rollout_id):
                raise RegistryError(f"rollout {rollout_id} is no longer running: nothing rolled back")
            if rollout is not None and to_model_id is None:
                await self._end_rollout(conn, rollout, f"rolled back by {operator}" + (f": {note}" if note else ""))
                message = (f"rollout {rollout.id} of {rollout.candidate_model_id} cancelled; "
                           f"{live_id or 'none'} serves all")
                if note:
                    message += f" ({note})"
                await self._audit(conn, "rollback", operator, rollout.candidate_model_id, live_id, 1.0, note, evidence,
                                  rollout.id)
                await events.emit(conn, RolledBack(
                    model_id=live_id, from_model_id=rollout.candidate_model_id, operator=operator,
                    message=message, rollout_id=rollout.id), run_id=run_id)
                return ActionResult("rollback", rollout.candidate_model_id, live_id, 1.0, message, rollout.id)
            target = to_model_id or await conn.fetchval(
                "SELECT from_model_id FROM console_promotions WHERE action = 'promote' AND to_model_id = $1 "
                "AND from_model_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                live_id,
            )
            if target is None:
                raise RegistryError("nothing to roll back to: no earlier live model is recorded")
            model = await self._model(conn, target)
            if target == live_id:
                raise RegistryError(f"{target} is already live")
            reason = eligibility(model, live_id, rollout)
            if reason:  # a game-written row, a failed one: never served by our hand
                raise RegistryError(f"cannot roll back to {target}: {reason}")
            await self._make_live(conn, live_id, target, rollout, f"rolled back to {target} by {operator}")
            ended = rollout.id if rollout is not None else None
            message = f"rolled back from {live_id or 'none'} to {target}"
            await self._audit(conn, "rollback", operator, live_id, target, 1.0, note, evidence, ended)
            await events.emit(conn, RolledBack(
                model_id=target, from_model_id=live_id, operator=operator, message=message, rollout_id=ended,
            ), run_id=run_id)
            return ActionResult("rollback", live_id, target, 1.0, message, ended)


def unknown_model_message(model_id: str) -> str:
    return f"no checkpoint with model id {model_id!r} (see `babylon-console models list`)"


def refusal_message(model_id: str, share: float, reason: str) -> str:
    """The sentence a refused promotion says (the A/B one names the share asked for)."""
    if reason == NOTHING_LIVE:
        return f"cannot serve {model_id} to {share:.0%} of agents: {reason}"
    return f"cannot promote {model_id}: {reason}"
