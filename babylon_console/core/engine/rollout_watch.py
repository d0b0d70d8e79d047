"""The engine's watch on the rollout in progress: what the gate says about the live A/B evidence,
said once per rollout; with automatic rollback, acted on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg

from ..checkpoints.balance import balance_warning
from ..checkpoints.registry import Registry, RegistryError
from ..config import GateSettings
from ..events import EngineWarning
from .run_state import Emit

if TYPE_CHECKING:
    from ..checkpoints.evidence import CachedReadout

log = logging.getLogger(__name__)


class RolloutWatch:
    """Read after each iteration. `emit` writes the run's events; `auto_rollback` rolls a candidate
    back when the gate's verdict is "rollback" (otherwise that is only recommended)."""

    def __init__(self, pool: asyncpg.Pool, gate: GateSettings, *, auto_rollback: bool, run_id: str,
                 emit: Emit) -> None:
        self.pool = pool
        self.gate = gate
        self.auto_rollback = auto_rollback
        self.run_id = run_id
        self._emit = emit
        self._said: set[tuple[str, str]] = set()  # (rollout, what) already announced
        self._readouts: CachedReadout | None = None  # made on first use

    async def watch(self) -> None:
        """Read the A/B evidence of the rollout in progress: say once when the gate recommends
        promoting the candidate; with `auto_rollback`, roll it back when the gate says so (one
        transaction, audit row with the reason and the readout, event)."""
        if self._readouts is None:
            from ..checkpoints.evidence import CachedReadout

            self._readouts = CachedReadout(self.gate)
        readout = await self._readouts.get(self.pool)
        candidate = readout.candidate_model_id
        rollout = f"{candidate}#{readout.rollout_id}"  # what is said once is said once per rollout
        balance = balance_warning(readout.balance, readout.rollout_id)
        for warning in readout.warnings:  # served-model truth: each said once, as an event (toast, Errors pane)
            # the balance warning's figures move as the rollout's agents appear: said once per rollout
            said = (rollout, "balance" if warning == balance else warning)
            await self._say_once(said, f"rollout {readout.rollout_id}: {warning}")
        if candidate is None or readout.verdict not in ("promote", "rollback"):
            return
        said = (rollout, readout.verdict)
        if readout.verdict == "promote":
            await self._say_once(said, f"gate (rollout {readout.rollout_id}): promote {candidate} to 100% recommended: "
                                       + "; ".join(readout.reasons))
            return
        if not self.auto_rollback:
            await self._say_once(said, f"gate (rollout {readout.rollout_id}): roll back {candidate} recommended "
                                       "(automatic rollback is off): " + "; ".join(readout.reasons))
            return
        reason = "automatic rollback: " + "; ".join(readout.reasons)
        try:
            await Registry(self.pool).rollback(operator="auto-rollback", note=reason, run_id=self.run_id,
                                               rollout_id=readout.rollout_id, evidence=readout.model_dump(mode="json"))
        except RegistryError as exc:  # another engine or an operator acted first (only the judged rollout ends)
            log.info("automatic rollback of %s not applied: %s", candidate, exc)

    async def _say_once(self, what: tuple[str, str], message: str) -> None:
        if what not in self._said:
            self._said.add(what)
            await self._emit(EngineWarning(stage="rollout", message=message))
