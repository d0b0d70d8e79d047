"""Registry actions: promote a checkpoint (A/B share or 100%) and roll back, each after a confirm.

The refusal rules are `refusals.promote` / `refusals.rollback` plus the server's roles and read-only, the same rules the
Checkpoints pane's `check_action` reads, so a key that is enabled never leads to a refusal here
except for a race with another operator (the registry then refuses, and says why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from .. import bindings as keys
from .. import refusals
from ..data import (
    CheckpointRow,
    CheckpointsView,
    ConsoleData,
    Refused,
    evidence_against,
    is_offline,
    no_evidence,
    share_refusal,
)
from ..dialogs.confirm import ConfirmDialog, TypedConfirmDialog
from ..dialogs.promote import PromoteDialog
from ..messages import StatusChanged
from .host import Host


class RegistryActions:
    def __init__(self, host: Host, data: ConsoleData, live_id: Callable[[], str | None],
                 changed: Callable[[], None]) -> None:
        """`live_id`: the live model as last shown; `changed`: the registry changed (reload what shows it)."""
        self.host = host
        self.data = data
        self.live_id = live_id
        self.changed = changed

    def refusal(self, action: str, view: CheckpointsView | None, row: CheckpointRow | None) -> str | None:
        spec = keys.spec_for_action("checkpoints", action)
        if spec is not None and spec.writes:
            reason = self.data.role_refusal(action) or (refusals.read_only(spec.description) if self.host.read_only
                                                         else None)
            if reason:
                return reason
        if action == "promote":
            return refusals.promote(view, row)
        if action == "rollback":
            return refusals.rollback(view)
        return None

    def promote(self, view: CheckpointsView | None, row: CheckpointRow | None) -> None:
        reason = self.refusal("promote", view, row)
        if reason or row is None:
            self.host.refuse("Promote", reason or "no checkpoint selected")
            return
        live = self.live_id()
        model_id = row.model.model_id
        contrary = evidence_against(model_id, row.evaluation, view.ab if view is not None else None)
        against = contrary[0] if contrary is not None else None

        def chosen(share: float | None) -> None:
            if share is None:  # never silently: the operator may not have meant to cancel
                self.host.notify(f"Promotion of {model_id} cancelled: nothing changed", title="Cancelled", timeout=4)
                return
            refused = share_refusal(model_id, live, share)  # an A/B share with nothing live
            if refused:
                self.host.refuse("Promotion refused", refused)
                return
            if share >= 1.0:
                message = Text.assemble("Make ", (model_id, "bold"), " the live model for every agent?\n",
                                        f"The current live model ({live or 'none'}) is archived. "
                                        "The game serves the new one at once.")
            else:
                message = Text.assemble("Serve ", (model_id, "bold"), f" to {share:.0%} of agents (A/B) next to ",
                                        (live or "no live model", "bold"), "?")
            self._confirm(model_id, share, message, against)

        evidence = None if row.evaluation is None else f"Held-out evaluation: {row.evaluation_text}"
        if evidence is not None and getattr(row.evaluation, "left_out_text", None):
            evidence += f" ({row.evaluation.left_out_text})"
        nothing = no_evidence(model_id, row.evaluation, view.ab if view is not None else None)
        self.host.push_screen(PromoteDialog(model_id, live, default_share=0.10 if live is not None else 1.0,
                                            evidence=evidence, no_evidence=nothing), chosen)

    def _confirm(self, model_id: str, share: float, message: Text, against: str | None) -> None:
        """A plain confirm, or, when the evidence on screen speaks against it, a typed confirmation
        with a reason (the data layer checks the evidence again when it promotes)."""
        if against is None:
            self.host.push_screen(ConfirmDialog("Confirm promotion", message, "Promote", danger=share >= 1.0),
                                  lambda ok: self._promote(model_id, share) if ok else None)
        else:
            self.host.push_screen(TypedConfirmDialog(f"Promote {model_id} against the evidence?", against, model_id),
                                  lambda reason: self._promote(model_id, share, reason) if reason else None)

    def _promote(self, model_id: str, share: float, reason: str | None = None) -> None:
        async def work() -> None:
            try:
                result = await self.data.promote(model_id, share, reason)
            except Refused as exc:  # the registry refused (RegistryError), or the server's roles: it says why
                self.host.refuse("Promotion refused", str(exc))
                self.host.follow_the_server()
                return
            self.host.notify(result.message, title="Promoted" if result.action == "promote" else "A/B rollout",
                             timeout=5)
            self.changed()

        self.host.start_worker(work, name="promote", group="action", action=True)

    def evaluate(self, row: CheckpointRow | None, holdout_share: float, live_storage_path: str | None = None) -> None:
        """Held-out evaluation of the selected checkpoint against the live model, with progress in
        the status bar; against its base model while none is live, when it is the live one, or when
        the live one is of the other kind (offline vs served: they cannot be compared)."""
        spec = keys.spec_for_action("checkpoints", "evaluate")
        reason = self.data.role_refusal("evaluate") or (
            refusals.read_only(spec.description) if self.host.read_only and spec is not None
            else refusals.evaluate(row, holdout_share))
        if reason or row is None:
            self.host.refuse("Evaluate", reason or "no checkpoint selected")
            return
        model_id, live = row.model.model_id, self.live_id()
        offline = is_offline(str(row.model.storage_path))
        same_kind = live_storage_path is None or is_offline(live_storage_path) == offline
        against = "live" if live is not None and live != model_id and same_kind else "base"

        def progress(done: int, total: int) -> None:
            self.host.post_message(StatusChanged("eval", f"Evaluating {model_id}: {done}/{total} held-out windows"))

        async def work() -> None:
            progress(0, 0)
            try:
                result = await self.data.evaluate(model_id, against, progress)
            finally:
                self.host.post_message(StatusChanged("eval", ""))
            ci = "" if result.ci_low is None else f", {result.bounds_text()}"
            left_out = f"; {result.left_out_text}" if result.left_out_text else ""
            self.host.notify(f"{model_id} vs {result.against_model_id or 'the base model'}: "
                             f"{result.mean_diff:+.2f} {result.unit}{ci} over {result.n} held-out windows{left_out}",
                             title="Evaluated", timeout=8)
            self.changed()

        self.host.notify(f"Evaluating {model_id} against {against} on held-out windows…", timeout=3)
        self.host.start_worker(work, name="evaluate", group="evaluate", action=True)

    def rollback(self, view: CheckpointsView | None) -> None:
        reason = self.refusal("rollback", view, None)
        if reason:
            self.host.refuse("Roll back", reason)
            return
        assert view is not None
        if view.rollout is not None and view.rollout.candidate_model_id:
            what = (f"Cancel the A/B rollout of {view.rollout.candidate_model_id}? "
                    f"{view.live.model_id if view.live else 'No live model'} then serves every agent.")
        else:
            what = (f"Roll back from {view.live.model_id if view.live else 'the live model'} to the model "
                    "that was live before it?")
        self.host.push_screen(ConfirmDialog("Confirm rollback", what, "Roll back", danger=True),
                              lambda ok: self._rollback() if ok else None)

    def _rollback(self) -> None:
        async def work() -> Any:
            try:
                result = await self.data.rollback()
            except Refused as exc:  # the registry refused (RegistryError), or the server's roles: it says why
                self.host.refuse("Rollback refused", str(exc))
                self.host.follow_the_server()
                return
            self.host.notify(result.message, title="Rolled back", timeout=5)
            self.changed()

        self.host.start_worker(work, name="rollback", group="action", action=True)
