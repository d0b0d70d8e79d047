"""Promotion on evidence: the one rule the CLI and the console share for promoting a checkpoint.

It reads both kinds of evidence, the newest held-out evaluation (`evaluation`) and the A/B readout of
the rollout in progress (`evidence`), says what speaks against a promotion, records what it was
promoted on, and asks the registry to act. It sits above evaluation, evidence and the registry, which
never import it.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ..config import GateSettings
from .evaluation import latest_per_model
from .evidence import ABReadout, RolledBack, ab_readout
from .registry import Registry, RegistryError


async def contrary_evidence(pool: asyncpg.Pool, model_id: str, gate: GateSettings | None = None
                            ) -> tuple[str, dict[str, Any]] | None:
    """What speaks against promoting `model_id` now, with the evidence as JSON (None: nothing does).

    Against the evidence: its newest held-out evaluation's anytime-valid bound (the one the gate reads,
    `core.stats.anytime_bounds`; never the plain 95% CI) is entirely below zero, it is the
    rollout's candidate and the live readout's verdict is "rollback", or its latest ended rollout
    was rolled back on the gate's evidence (unless a rollout of it running now says "promote"). Promoting then needs a
    typed confirmation and a reason, both recorded (the CLI: `--reason`)."""
    return contrary(model_id, *await evidence_for(pool, model_id, gate))


async def evidence_for(pool: asyncpg.Pool, model_id: str, gate: GateSettings | None = None) -> tuple[Any, ABReadout]:
    """(its newest held-out evaluation or None, the A/B readout of the rollout in progress)."""
    return (await latest_per_model(pool)).get(model_id), await ab_readout(pool, gate)


def no_evidence(model_id: str, evaluation: Any, readout: ABReadout | None) -> str | None:
    """The sentence that says a promotion of `model_id` rests on no evidence at all (None: some)."""
    paired = (readout is not None and readout.candidate_model_id == model_id and readout.difference is not None)
    if evaluation is not None or paired or _rolled_back(model_id, readout) is not None:
        return None
    return f"no evidence for {model_id}: never evaluated on held-out windows, and no paired A/B windows"


def evidence_record(model_id: str, evaluation: Any, readout: ABReadout | None) -> dict[str, Any]:
    """What was known about `model_id` when it was promoted, as JSON for the audit row."""
    record: dict[str, Any] = {}
    if evaluation is not None:
        record["evaluation"] = evaluation.model_dump(mode="json")
    if readout is not None and readout.candidate_model_id == model_id:
        record["ab"] = readout.model_dump(mode="json")
    if no_evidence(model_id, evaluation, readout):
        record["none"] = "never evaluated on held-out windows, no paired A/B windows"
    return record


def contrary(model_id: str, evaluation: Any, readout: ABReadout | None) -> tuple[str, dict[str, Any]] | None:
    """The rule of `contrary_evidence` on evidence already read (the console has it on screen)."""
    if evaluation is not None and evaluation.below_zero:
        return (f"held-out evaluation vs {evaluation.against_model_id or 'base'}: {evaluation.mean_diff:+.2f} "
                f"{evaluation.unit}, {evaluation.bounds_text()} over {evaluation.n} windows, below zero",
                {"evaluation": evaluation.model_dump(mode="json")})
    if readout is not None and readout.candidate_model_id == model_id and readout.verdict == "rollback":
        return "live A/B readout says roll back: " + "; ".join(readout.reasons), {"ab": readout.model_dump(mode="json")}
    previous = _rolled_back(model_id, readout)
    if previous is not None:
        return (f"rollout {previous.rollout_id} was rolled back: " + "; ".join(previous.reasons),
                {"rolled_back": previous.model_dump(mode="json")})
    return None


def _rolled_back(model_id: str, readout: ABReadout | None) -> RolledBack | None:
    """`model_id`'s latest ended rollout if it was rolled back on evidence, unless a rollout of it
    running now has since earned a "promote" verdict."""
    if readout is None or (readout.candidate_model_id == model_id and readout.verdict == "promote"):
        return None
    return next((r for r in readout.rolled_back if r.candidate_model_id == model_id), None)


async def promote_on_evidence(pool: asyncpg.Pool, model_id: str, *, share: float, operator: str,
                              reason: str | None = None, note: str | None = None,
                              gate: GateSettings | None = None) -> Any:
    """`Registry.promote`, refused against the evidence unless a `reason` is given; then the reason
    and the evidence are recorded in the audit row. The one rule the CLI and the console share."""
    evaluation, readout = await evidence_for(pool, model_id, gate)
    against = contrary(model_id, evaluation, readout)
    evidence = evidence_record(model_id, evaluation, readout)  # what it was promoted on, also when nothing
    if against is not None:
        if not reason:
            raise RegistryError(f"promoting {model_id} is against the evidence ({against[0]}): a reason is needed")
        note = f"against the evidence ({against[0]}): {reason}" + (f"; {note}" if note else "")
        evidence = against[1]
    return await Registry(pool).promote(model_id, share=share, operator=operator, note=note, evidence=evidence)
