"""The hold-out as a property of the database: which share of windows is reserved for evaluation.

The rule that says whether a window is held out is `windows.held_out(window_id, share)`; the share it
is applied with is recorded here (`console_holdout`), so every engine, `train`, `windows`, evaluation
and console on one database honours the same one. The table is append-only: each change is a new row
(who, when, why) and an event; the newest row is the record in force; no row means nothing is held
out. `BABYLON_HOLDOUT_SHARE` no longer sets the hold-out: when given, it is checked against the record
at start and a disagreement is refused (`HoldoutMismatch`), never applied.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..errors import InvalidInput, Refused

if TYPE_CHECKING:
    import asyncpg

# The version of `windows.held_out` each record was set under: a later change of the rule (another
# hash, a salt) gets a new name, so a record made under the old one shows as such.
RULE_VERSION = "sha256-v1"
SETTING = "BABYLON_HOLDOUT_SHARE"
COMMAND = "babylon-console holdout --share X --reason WHY"
_LOCK = 0x686F_6C64_6F75_74  # "holdout": one change at a time
NO_HOLDOUT = ("no windows are held out: this database has no hold-out; set one with `babylon-console holdout "
              "--share 0.15 --reason WHY` so training leaves some windows for evaluation")


class HoldoutRecord(BaseModel):
    id: int
    share: float
    rule: str
    set_by: str
    reason: str | None = None
    set_at: datetime

    @property
    def describe(self) -> str:
        """'15% (set by alice@host on 2025-11-24 10:00 UTC)'."""
        return f"{percent(self.share)} (set by {self.set_by} on {self.set_at:%Y-%m-%d %H:%M} UTC)"


class HoldoutMismatch(InvalidInput, ValueError):
    """A hold-out given by the environment or a flag disagrees with the database's record."""

    title = "Hold-out disagrees with the database"


class InvalidHoldout(InvalidInput, ValueError):
    title = "Invalid hold-out"


class HoldoutReasonNeeded(Refused, RuntimeError):
    title = "Reason needed"


def percent(share: float) -> str:
    """A share as a percentage with no spurious places: 15%, 12.5%."""
    return f"{share * 100:.4g}%"


def share_of(record: HoldoutRecord | None) -> float:
    return record.share if record is not None else 0.0


def check_share(share: float, where: str = "--share") -> float:
    if not isinstance(share, int | float) or math.isnan(share) or not 0 <= share < 1:
        raise InvalidHoldout(f"{where} must be a share in [0, 1), e.g. 0.15 for 15% of windows; got {share!r}")
    return float(share)


_COLUMNS = "id, share, rule, set_by, reason, set_at"


async def current_holdout(conn: asyncpg.Pool | asyncpg.Connection) -> HoldoutRecord | None:
    """The record in force (the newest row); None: no hold-out was ever set (nothing is held out)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM console_holdout ORDER BY id DESC LIMIT 1")
    return HoldoutRecord(**dict(row)) if row is not None else None


async def holdout_history(conn: asyncpg.Pool | asyncpg.Connection, limit: int = 50) -> list[HoldoutRecord]:
    """Every change, newest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM console_holdout ORDER BY id DESC LIMIT $1", limit)
    return [HoldoutRecord(**dict(r)) for r in rows]


async def set_holdout(pool: asyncpg.Pool, share: float, *, operator: str, reason: str | None,
                      only_if_none: bool = False) -> HoldoutRecord:
    """Record a new hold-out share (one transaction, under a lock so two operators never interleave),
    with an audit row and a `holdout_set` event. Changing an existing record needs a reason: windows
    move between training and evaluation. The same share again changes nothing (the record is returned);
    so does any share with `only_if_none` when a record exists."""
    share = check_share(share)
    reason = (reason or "").strip() or None
    if not operator.strip():
        raise InvalidHoldout("who sets the hold-out must be named (operator)")
    import asyncpg

    try:
        return await _set(pool, share, operator, reason, only_if_none)
    # a role's refusal (InsufficientPrivilegeError) goes on as it is: the CLI names the group that may
    except asyncpg.ReadOnlySQLTransactionError as exc:
        raise Refused(f"cannot record the hold-out: the database refuses writes here ({exc})",
                      title="Read-only database") from exc


async def _set(pool: asyncpg.Pool, share: float, operator: str, reason: str | None,
               only_if_none: bool) -> HoldoutRecord:
    from .. import events

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        before = await current_holdout(conn)
        if before is not None and (only_if_none or (before.share == share and before.rule == RULE_VERSION)):
            return before  # nothing changes: no audit row, no event
        if before is not None and reason is None:
            raise HoldoutReasonNeeded(
                f"the hold-out is already {before.describe}: changing it moves windows between training and "
                "evaluation, so give --reason WHY")
        row = await conn.fetchrow(
            f"INSERT INTO console_holdout (share, rule, set_by, reason) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
            share, RULE_VERSION, operator, reason)
        record = HoldoutRecord(**dict(row))
        was = "none" if before is None else percent(before.share)
        await events.emit(conn, events.HoldoutSet(
            share=share, previous_share=None if before is None else before.share, rule=RULE_VERSION,
            operator=operator, reason=reason,
            message=f"hold-out set to {percent(share)} (was {was}) by {operator}" + (f": {reason}" if reason else "")))
    return record


async def ensure_holdout(pool: asyncpg.Pool, share: float, *, operator: str, reason: str) -> HoldoutRecord:
    """The record in force; when there is none, set `share` first (the demo's own database does)."""
    record = await current_holdout(pool)
    if record is not None:
        return record
    return await set_holdout(pool, share, operator=operator, reason=reason, only_if_none=True)


def check_setting_agrees(record: HoldoutRecord | None, setting: float | None, name: str = SETTING) -> None:
    """Refuse (HoldoutMismatch) a hold-out given by the environment or a flag that is not the record's.
    `setting` None: not given, nothing to check. No record counts as 0."""
    if setting is None:
        return
    if abs(setting - share_of(record)) < 1e-12:
        return
    recorded = ("records no hold-out (0%)" if record is None
                else f"records a hold-out of {record.describe}")
    raise HoldoutMismatch(
        f"{name} is {setting:g} ({percent(setting)}) but the database {recorded}: the database's record is what "
        f"every process honours; unset {name}, or change the record with `{COMMAND}`")


async def read_checked(conn: asyncpg.Pool | asyncpg.Connection, setting: float | None,
                       name: str = SETTING) -> HoldoutRecord | None:
    """The record in force, after checking that `setting` (if given) agrees with it."""
    record = await current_holdout(conn)
    check_setting_agrees(record, setting, name)
    return record
