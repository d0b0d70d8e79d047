"""Checkpoint registry: list, promote (A/B share or 100%), roll back (DESIGN section 4).

Each action is one transaction that takes a registry advisory lock and the affected rows' locks,
writes an audit row (`console_promotions`: operator, time, from, to) and an event, so that at every
instant at most one `trained_models` row is `deployed`, also when two consoles act at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, field_validator

from . import events
from .clock import SystemClock
from .errors import Refused
from .events import Promoted, RolledBack
from .models import TrainedModel

_REGISTRY_LOCK = 0x7265_6769_7374_7279 & 0x7FFF_FFFF_FFFF_FFFF  # "registry"
PROMOTABLE = ("ready", "archived")


class RegistryError(Refused, RuntimeError):
    """The action was refused; the message says which model and why. Nothing was changed."""

    title = "Registry action refused"


class AuditEntry(BaseModel):
    id: int
    action: str
    operator: str
    from_model_id: str | None
    to_model_id: str | None
    share: float | None
    note: str | None
    created_at: datetime
    evidence: dict[str, Any] | None = None  # the A/B readout an automatic decision was taken on

    @field_validator("evidence", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value


class Rollout(BaseModel):
    candidate_model_id: str | None
    candidate_share: float


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    from_model_id: str | None
    to_model_id: str | None
    share: float
    message: str


def eligibility(model: TrainedModel, live_id: str | None, rollout: Rollout | None) -> str | None:
    """None when `model` may be promoted, else the reason it may not (shown by the console)."""
    if model.model_id == live_id:
        return "already live"
    if model.status not in PROMOTABLE:
        return f"status is {model.status!r}; only ready or archived checkpoints can be promoted"
    return None


class Registry:
    def __init__(self, pool: asyncpg.Pool, clock: SystemClock | None = None) -> None:
        self.pool = pool
        self.clock = clock or SystemClock()

    async def models(self, limit: int = 200) -> list[TrainedModel]:
        rows = await self.pool.fetch('SELECT * FROM trained_models ORDER BY "createdAt" DESC LIMIT $1', limit)
        return [TrainedModel.model_validate(dict(r)) for r in rows]

    async def live(self) -> TrainedModel | None:
        row = await self.pool.fetchrow("""SELECT * FROM trained_models WHERE status = 'deployed' LIMIT 1""")
        return TrainedModel.model_validate(dict(row)) if row else None

    async def rollout(self) -> Rollout | None:
        row = await self.pool.fetchrow(
            "SELECT candidate_model_id, candidate_share FROM console_rollout WHERE candidate_model_id IS NOT NULL"
        )
        return Rollout(**dict(row)) if row else None

    async def audit(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self.pool.fetch("SELECT * FROM console_promotions ORDER BY id DESC LIMIT $1", limit)
        return [AuditEntry(**dict(r)) for r in rows]

    async def _lock(self, conn: asyncpg.Connection) -> tuple[str | None, Rollout | None]:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _REGISTRY_LOCK)
        live = await conn.fetchval("""SELECT "modelId" FROM trained_models WHERE status = 'deployed' FOR UPDATE""")
        row = await conn.fetchrow(
            "SELECT candidate_model_id, candidate_share FROM console_rollout WHERE candidate_model_id IS NOT NULL"
        )
        return live, (Rollout(**dict(row)) if row else None)

    async def _model(self, conn: asyncpg.Connection, model_id: str) -> TrainedModel:
        row = await conn.fetchrow('SELECT * FROM trained_models WHERE "modelId" = $1 FOR UPDATE', model_id)
        if row is None:
            raise RegistryError(f"no checkpoint with model id {model_id!r}")
        return TrainedModel.model_validate(dict(row))

    async def _audit(self, conn: asyncpg.Connection, action: str, operator: str, from_id: str | None,
                     to_id: str | None, share: float | None, note: str | None,
                     evidence: dict[str, Any] | None = None) -> None:
        await conn.execute(
            "INSERT INTO console_promotions (action, operator, from_model_id, to_model_id, share, note, evidence) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
            action, operator, from_id, to_id, share, note,
            None if evidence is None else orjson.dumps(evidence).decode(),
        )

    async def _make_live(self, conn: asyncpg.Connection, live_id: str | None, model_id: str) -> None:
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
        await conn.execute("DELETE FROM console_rollout")

    async def promote(self, model_id: str, *, share: float = 1.0, operator: str, note: str | None = None,
                      run_id: str | None = None, evidence: dict[str, Any] | None = None) -> ActionResult:
        """Share 1.0 makes the checkpoint live (the previous live one is archived); a share in (0, 1)
        starts or changes an A/B rollout with it as the candidate."""
        if not 0 < share <= 1:
            raise RegistryError(f"share must be in (0, 1], got {share}")
        async with self.pool.acquire() as conn, conn.transaction():
            live_id, rollout = await self._lock(conn)
            model = await self._model(conn, model_id)
            reason = eligibility(model, live_id, rollout)
            if reason:
                raise RegistryError(f"cannot promote {model_id}: {reason}")
            if share >= 1.0:
                await self._make_live(conn, live_id, model_id)
                action, message = "promote", f"{model_id} is live (was {live_id or 'none'})"
            else:
                await conn.execute(
                    "INSERT INTO console_rollout (singleton, candidate_model_id, candidate_share, updated_by, "
                    "updated_at) VALUES (true, $1, $2, $3, now()) ON CONFLICT (singleton) DO UPDATE SET "
                    "candidate_model_id = $1, candidate_share = $2, updated_by = $3, updated_at = now()",
                    model_id, share, operator,
                )
                action, message = "rollout", f"{model_id} serves {share:.0%} of agents next to {live_id or 'none'}"
            await self._audit(conn, action, operator, live_id, model_id, share, note, evidence)
            await events.emit(conn, Promoted(
                model_id=model_id, from_model_id=live_id, share=share, operator=operator, message=message,
            ), run_id=run_id)
        return ActionResult(action, live_id, model_id, share, message)

    async def rollback(self, *, operator: str, to_model_id: str | None = None, note: str | None = None,
                       run_id: str | None = None, candidate: str | None = None,
                       evidence: dict[str, Any] | None = None) -> ActionResult:
        """Cancel an A/B rollout if one runs; otherwise make the previously live model live again
        (or `to_model_id`). `candidate`: cancel only if this model is still the rollout's candidate
        (an automatic rollback must not cancel a newer rollout); `note` and `evidence` are recorded."""
        async with self.pool.acquire() as conn, conn.transaction():
            live_id, rollout = await self._lock(conn)
            if candidate is not None and (rollout is None or rollout.candidate_model_id != candidate):
                raise RegistryError(f"{candidate} is no longer the rollout's candidate: nothing rolled back")
            if rollout is not None and to_model_id is None:
                await conn.execute("DELETE FROM console_rollout")
                message = f"rollout of {rollout.candidate_model_id} cancelled; {live_id or 'none'} serves all"
                if note:
                    message += f" ({note})"
                await self._audit(conn, "rollback", operator, rollout.candidate_model_id, live_id, 1.0, note, evidence)
                await events.emit(conn, RolledBack(
                    model_id=live_id, from_model_id=rollout.candidate_model_id, operator=operator,
                    message=message), run_id=run_id)
                return ActionResult("rollback", rollout.candidate_model_id, live_id, 1.0, message)
            target = to_model_id or await conn.fetchval(
                "SELECT from_model_id FROM console_promotions WHERE action = 'promote' AND to_model_id = $1 "
                "AND from_model_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                live_id,
            )
            if target is None:
                raise RegistryError("nothing to roll back to: no earlier live model is recorded")
            model = await self._model(conn, target)
            if model.status == "failed":
                raise RegistryError(f"cannot roll back to {target}: its status is 'failed'")
            if target == live_id:
                raise RegistryError(f"{target} is already live")
            await self._make_live(conn, live_id, target)
            message = f"rolled back from {live_id or 'none'} to {target}"
            await self._audit(conn, "rollback", operator, live_id, target, 1.0, note)
            await events.emit(conn, RolledBack(
                model_id=target, from_model_id=live_id, operator=operator, message=message,
            ), run_id=run_id)
            return ActionResult("rollback", live_id, target, 1.0, message)
