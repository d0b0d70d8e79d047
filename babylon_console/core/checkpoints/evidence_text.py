"""The evidence recorded with a promotion or a rollback (a held-out evaluation, an A/B readout, an earlier
rollback), as one line of text for the audit trail: pure, from the stored JSON, which may be of any version."""

from __future__ import annotations

from typing import Any


def summarize_evidence(evidence: dict[str, Any] | None) -> str:
    """An audit row's evidence in one line of text ("–": none was recorded with it)."""
    if evidence is None:
        return "–"
    parts = []
    evaluation = evidence.get("evaluation")
    if isinstance(evaluation, dict):
        unit = "P&L" if evaluation.get("method", "simulator") == "simulator" else "score"
        low, high = evaluation.get("ci_low"), evaluation.get("ci_high")
        ci = f", 95% CI [{low:+.2f}, {high:+.2f}]" if isinstance(low, int | float) and isinstance(high, int | float) \
            else ""
        if isinstance(cs_low := evaluation.get("cs_low"), int | float) and isinstance(
                cs_high := evaluation.get("cs_high"), int | float):  # what the verdict read, the plain CI beside it
            ci = f", anytime-valid bound [{cs_low:+.2f}, {cs_high:+.2f}] (plain{ci[1:]})"
        mean = evaluation.get("mean_diff")
        parts.append(f"held-out vs {evaluation.get('against_model_id') or 'base'} "
                     + (f"{mean:+.2f} {unit}" if isinstance(mean, int | float) else unit)
                     + f"{ci} over {evaluation.get('n', '?')} windows")
    ab = evidence.get("ab", evidence if "verdict" in evidence else None)  # an automatic rollback records the readout
    if isinstance(ab, dict):
        d = ab.get("difference")
        rollout = f"rollout {ab['rollout_id']}" if ab.get("rollout_id") is not None else "rollout"
        if isinstance(d, dict) and isinstance(d.get("mean"), int | float):
            ci = (f", 95% CI [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]"
                  if isinstance(d.get("ci_low"), int | float) and isinstance(d.get("ci_high"), int | float) else "")
            if isinstance(d.get("cs_low"), int | float) and isinstance(d.get("cs_high"), int | float):
                of = f" on {d['bounds_of']}" if isinstance(d.get("bounds_of"), str) else ""  # the gate's statistic
                ci = f", anytime-valid bound{of} [{d['cs_low']:+.2f}, {d['cs_high']:+.2f}] (plain{ci[1:]})"
            parts.append(f"A/B {rollout} {ab.get('verdict', '?')}: candidate − live {d['mean']:+.2f} P&L{ci} "
                         f"over {d.get('windows', '?')} paired windows")
        else:
            parts.append(f"A/B {rollout} {ab.get('verdict', '?')}: no paired windows")
    previous = evidence.get("rolled_back")
    if isinstance(previous, dict):
        parts.append(f"rollout {previous.get('rollout_id', '?')} was rolled back: "
                     + "; ".join(str(r) for r in previous.get("reasons") or []))
    if "none" in evidence:
        parts.insert(0, "no evidence")
    return "; ".join(parts) if parts else "no evidence"
