"""Checkpoints pane: trained models with their metrics and status, promote / roll back, audit trail."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from .. import bindings as keys
from .. import refusals
from ..data import CheckpointRow, CheckpointsView, EventKind
from ..messages import EvaluateRequested, LiveModelSeen, PromoteRequested, RollbackRequested
from .columns import Column, hidden_labels, show_columns
from .pane import Pane, theme_color

ROLE_COLORS = {"live": "success", "candidate": "accent", "registered": "primary", "archived": "foreground",
               "failed": "error", "training": "warning"}


# (label, key, shown when narrow): at 80 columns the narrow set fits; the pane says what it hides
COLUMNS: tuple[Column, ...] = (
    ("Model", "model", True), ("Step", "step", True), ("Status", "status", True), ("Share", "share", True),
    ("Avg reward", "avg reward", True), ("Reward", "reward", False), ("Loss", "loss", False), ("KL", "kl", False),
    ("Entropy", "entropy", False), ("Grad norm", "grad norm", False),
    # every clock named: checkpoints are registered (and ordered) by the wall clock; the market's time of
    # the step (simulated databases, e.g. the demo's) has its own column
    ("Registered (UTC)", "created (utc)", False), ("Market time", "market time", False),
    ("Held-out Δ [95% CI]", "held-out", True),
)
WIDE_FROM = 150  # pane width (cells) from which every column fits
SHORT_BELOW = 30  # pane height (rows) below which the spacing goes, so the table keeps its rows


def _metric(row: CheckpointRow, key: str, fmt: str = ".4f") -> str:
    value = row.metrics.get(key)
    return "–" if value is None else format(value, fmt)


AUDIT_TITLE = "Audit trail (promotions and rollbacks)"
VERDICT_COLORS = {"promote": "success", "rollback": "error", "hold": "warning", "collecting": "foreground"}


def ab_text(ab: Any, app: object) -> Text:
    """The live A/B readout in two lines: per-arm P&L (and its calls through the gateway) and the
    paired difference, then the verdict; it names its rollout and counts only the windows since that
    rollout started."""
    text = Text.assemble(("A/B evidence ", "bold"))
    if ab.rollout_id is not None:
        text.append(f"rollout {ab.rollout_id}" + (f", windows from {ab.first_window}" if ab.first_window else "")
                    + " · ")
    for arm in ab.arms:
        pnl = "–" if arm.mean_pnl is None else f"{arm.mean_pnl:+.2f}"
        text.append(f"{arm.arm} {arm.agents} agents, {arm.windows} windows, P&L {pnl}"
                    + (f", drawdown {arm.drawdown:.0%}" if arm.drawdown is not None else "")
                    + (f", {arm.requests} requests via gateway, {arm.error_rate:.1%} errors, p99 {arm.p99_ms:.0f} ms"
                       if arm.requests and arm.error_rate is not None and arm.p99_ms is not None else "") + " · ")
    d = ab.difference
    if d is not None and d.ci_low is not None and d.ci_high is not None:
        # the gate reads the anytime-valid bound; the plain CI is shown beside it, labelled
        text.append(f"candidate − live {d.mean:+.2f}, {d.cs_text()} over {d.windows} windows (paired; "
                    f"{d.plain_ci_text()}), ahead in {d.win_rate:.0%}")
    else:
        text.append("waiting for paired windows")
    if ab.served_share is not None:
        text.append(f" · served {ab.served_share:.0%} (asked {ab.asked_share:.0%})")
    text.append("\nverdict: ")
    text.append(ab.verdict, style=f"bold {theme_color(app, VERDICT_COLORS.get(ab.verdict, 'foreground'))}")
    text.append(" — " + "; ".join(ab.reasons))
    for warning in ab.warnings:
        text.append(f"\n⚠ {warning}", style=theme_color(app, "warning"))
    return text


def gateways_text(gateways: Any) -> str | None:
    """One line: the model gateways that are up, their request rate and counts per arm (None: no
    gateway was ever run against this database)."""
    if gateways is None or not gateways.seen:
        return None
    if not gateways.up:
        return "gateways: none up (no fresh heartbeat)"
    parts = [f"gateways: {gateways.up} up" + (f" ({gateways.from_memory} routing from memory)"
                                              if gateways.from_memory else ""),
             f"{gateways.rate_per_s:.1f} req/s (last minute)"]
    for arm in ("live", "candidate", "pinned", "base", "none"):
        counts = gateways.arms.get(arm)
        if counts and counts.get("requests"):
            errors = counts.get("errors", 0)
            parts.append(f"{arm} {counts['requests']} requests, {errors} error{'s' if errors != 1 else ''} "
                         f"({errors / counts['requests']:.1%})")
    if gateways.log_dropped:
        parts.append(f"{gateways.log_dropped} log rows dropped")
    return " · ".join(parts)


class CheckpointsPane(Pane):
    scope = "checkpoints"
    title = "Checkpoints"
    poll_seconds = 3.0
    min_reload_s = 2.0
    BINDINGS: ClassVar = keys.bindings("checkpoints")
    stale_on = frozenset({EventKind.CHECKPOINT_REGISTERED, EventKind.CHECKPOINT_EVALUATED, EventKind.PROMOTED,
                          EventKind.ROLLED_BACK, EventKind.HOLDOUT_SET})

    readiness: reactive[Any] = reactive(None, init=False, bindings=True)  # state.Readiness: the hold-out share

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.view: CheckpointsView | None = None
        self.selected_id: str | None = None
        self._signature: Any = None
        self._audit_signature: Any = None
        self.wide = True
        self.columns: list[str] = []

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Loading checkpoints…", id="checkpoints-summary", classes="pane-title")
        yield Static(id="checkpoints-ab", classes="detail")
        yield DataTable(id="checkpoints-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="checkpoints-detail", classes="detail")
        yield Static(AUDIT_TITLE, id="checkpoints-audit-title", classes="section")
        yield DataTable(id="checkpoints-audit", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._set_columns(wide=True)
        # audit rows are dated by the database's wall clock
        audit = self.query_one("#checkpoints-audit", DataTable)
        audit.add_column("When (UTC, wall clock)", key="when (utc)")
        for label in ("Action", "Operator", "From", "To", "Share", "Rollout", "Reason", "Evidence"):
            audit.add_column(label, key=label.lower())

    def on_show_pane(self) -> None:
        self.query_one("#checkpoints-table", DataTable).focus()

    def on_resize(self) -> None:
        """Narrow: fewer columns, named in the summary; short: no spacing, so the table keeps its rows."""
        self.set_class(self.size.height < SHORT_BELOW, "-short")
        wide = self.size.width >= WIDE_FROM
        if wide != self.wide:
            self._set_columns(wide)
            self._signature = None
            if self.view is not None:
                self._summary()
                self._rows()

    def _set_columns(self, wide: bool) -> None:
        self.wide = wide
        self.columns = show_columns(self.query_one("#checkpoints-table", DataTable), COLUMNS, wide)

    @property
    def hidden_columns(self) -> list[str]:
        return hidden_labels(COLUMNS, self.columns)

    # -- data ----------------------------------------------------------------------------------

    async def load(self) -> CheckpointsView:
        assert self.source is not None
        return await self.source.checkpoints()

    def show(self, payload: CheckpointsView) -> None:
        self.view = payload
        self.post_message(LiveModelSeen(payload.live))
        self._summary()
        self._rows()
        self._audit()
        self._detail()
        self.refresh_bindings()

    def _summary(self) -> None:
        view = self.view
        if view is None:
            return
        text = Text.assemble(("Checkpoints ", "bold"), f"{len(view.rows)} registered · live: ")
        if view.live is not None:
            text.append(view.live.model_id, style=f"bold {theme_color(self.app, 'success')}")
            text.append(f" ({view.live.storage_path})")
        else:
            text.append("none", style="bold")
        # what the Prisma-era game's own query serves, next to "live"
        text.append(" · game's query: ")
        served = view.game_serves
        if view.serving_warning:
            text.append(served.model_id if served else "no row", style=f"bold {theme_color(self.app, 'warning')}")
        else:
            text.append("the live model" if served else "no row (base model)")
        if view.rollout is not None and view.rollout.candidate_model_id:
            text.append(" · A/B: ")
            text.append(view.rollout.candidate_model_id, style=f"bold {theme_color(self.app, 'accent')}")
            text.append(f" serves {view.rollout.candidate_share:.0%} of agents")
        if self.hidden_columns:
            text.append(f" · narrow: {', '.join(self.hidden_columns)} hidden", style="dim")
        if view.serving_warning:
            text.append(f"\nwarning: {view.serving_warning}", style=theme_color(self.app, "warning"))
        gateways = gateways_text(view.gateways)
        if gateways is not None:
            text.append("\n" + gateways, style="" if view.gateways.up else theme_color(self.app, "warning"))
        self.query_one("#checkpoints-summary", Static).update(text)
        ab = self.query_one("#checkpoints-ab", Static)
        ab.display = view.ab is not None and view.ab.candidate_model_id is not None  # else: no rollout runs
        if ab.display:
            ab.update(ab_text(view.ab, self.app))

    def _rows(self) -> None:
        view = self.view
        assert view is not None
        signature = tuple((r.model.model_id, r.role, r.share, r.model.avg_reward, r.refusal, r.evaluation_text)
                          for r in view.rows)
        if signature == self._signature:
            return
        self._signature = signature
        table = self.query_one("#checkpoints-table", DataTable)
        keep = self.selected_id
        table.clear()
        for r in view.rows:
            m = r.model
            role = Text(r.role, style=theme_color(self.app, ROLE_COLORS.get(r.role, "foreground")))
            if r.role in ("live", "candidate"):
                role.stylize("bold")
            cells = {
                "model": m.model_id, "step": "–" if r.step is None else str(r.step), "status": role,
                "share": "–" if r.share is None else f"{r.share:.0%}",
                "avg reward": "–" if m.avg_reward is None else f"{m.avg_reward:.3f}",
                "reward": _metric(r, "train/reward", ".3f"), "loss": _metric(r, "loss/train"),
                "kl": _metric(r, "loss/kl_div"), "entropy": _metric(r, "loss/entropy"),
                "grad norm": _metric(r, "loss/grad_norm"),
                "created (utc)": m.created_at.strftime("%Y-%m-%d %H:%M") if m.created_at else "–",
                "market time": m.market_time.strftime("%Y-%m-%d %H:%M") if m.market_time else "–",
                "held-out": r.evaluation_text,
            }
            table.add_row(*(cells[key] for key in self.columns), key=m.model_id)
        ids = [r.model.model_id for r in view.rows]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), animate=False, scroll=True)
        elif ids:
            self.selected_id = ids[0]

    def _audit(self) -> None:
        view = self.view
        assert view is not None
        signature = tuple(a.id for a in view.audit)
        if signature == self._audit_signature:
            return
        self._audit_signature = signature
        audit = self.query_one("#checkpoints-audit", DataTable)
        audit.clear()
        for a in view.audit:
            audit.add_row(a.created_at.strftime("%Y-%m-%d %H:%M:%S"), a.action, a.operator, a.from_model_id or "–",
                          a.to_model_id or "–", "–" if a.share is None else f"{a.share:.0%}",
                          "–" if a.rollout_id is None else str(a.rollout_id), a.note or "–", a.evidence_summary,
                          key=str(a.id))
        self._audit_who()

    def _audit_who(self) -> None:
        """The audit title names who acted on the highlighted row by the server's word (its database role
        and login, next to the name the client gave): the table's columns stay as they are."""
        title = Text(AUDIT_TITLE)
        audit = self.query_one("#checkpoints-audit", DataTable)
        entries = self.view.audit if self.view is not None else []
        if 0 <= audit.cursor_row < len(entries):
            entry = entries[audit.cursor_row]
            if entry.db_role is not None:
                login = f", login {entry.db_login}" if entry.db_login and entry.db_login != entry.db_role else ""
                title.append(f" · row {audit.cursor_row + 1}, {entry.operator}: database role {entry.db_role}{login}",
                             style="not bold")
        self.query_one("#checkpoints-audit-title", Static).update(title)

    def selected(self) -> CheckpointRow | None:
        if self.view is None:
            return None
        return next((r for r in self.view.rows if r.model.model_id == self.selected_id), None)

    def _detail(self) -> None:
        row = self.selected()
        detail = self.query_one("#checkpoints-detail", Static)
        if row is None:
            detail.update("No checkpoints yet: they appear as the engine trains (3 Training)."
                          if self.view is not None and not self.view.rows else "")
            return
        text = Text.assemble((row.model.model_id, "bold"), f"  {row.model.storage_path}  ")
        if self.read_only:
            text.append("read-only: promote and roll back are refused", style=theme_color(self.app, "warning"))
        elif row.refusal:
            text.append(f"cannot promote: {row.refusal}", style="dim")
        else:
            text.append("P", style="bold")
            text.append(" promote (A/B share or 100%)")
        if row.evaluation_summary:
            text.append("\n" + row.evaluation_summary, style="dim")
        detail.update(text)

    def theme_changed(self) -> None:
        if self.view is not None:
            self._signature = None
            self.show(self.view)

    @on(DataTable.RowHighlighted, "#checkpoints-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.selected_id = str(event.row_key.value)
            self._detail()
            self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#checkpoints-audit")
    def _audit_highlighted(self) -> None:
        self._audit_who()

    # -- actions -------------------------------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        if action == "evaluate":
            share = self.view.holdout_share if self.view is not None else 0.0  # the database's hold-out
            return refusals.evaluate(self.selected(), share)
        if action == "promote":
            return refusals.promote(self.view, self.selected())
        if action == "rollback":
            return refusals.rollback(self.view)
        return None

    def action_promote(self) -> None:
        row = self.selected()
        if row is not None:
            self.post_message(PromoteRequested(self.view, row))

    def action_evaluate(self) -> None:
        row = self.selected()
        if row is not None:
            live = self.view.live if self.view is not None else None
            self.post_message(EvaluateRequested(row, live.storage_path if live is not None else None))

    def action_rollback(self) -> None:
        self.post_message(RollbackRequested(self.view))
