"""Windows pane: readiness of every window in the lookback, with a sparkline, filter and sort."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.widgets import DataTable, Input, Sparkline, Static

from .. import bindings as keys
from ..data import WindowReadiness
from .pane import Pane, theme_color

STATE_COLORS = {
    "ready": "success",
    "open": "accent",
    "settling": "warning",
    "too few agents": "foreground",
    "trained": "secondary",
    "unusable": "error",
    "invalid id": "error",
}

# (label, key function) for the sort cycle
SORTS: tuple[tuple[str, Any], ...] = (
    ("window", lambda w: w.window_id),
    ("state", lambda w: (w.state.value, w.window_id)),
    ("agents", lambda w: (w.agents, w.window_id)),
    ("trajectories", lambda w: (w.trajectories, w.window_id)),
    ("steps", lambda w: (w.steps, w.window_id)),
    ("P&L", lambda w: (w.pnl_avg if w.pnl_avg is not None else float("-inf"), w.window_id)),
)


def fmt_pnl(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.1f}"


class WindowsPane(Pane):
    scope = "windows"
    title = "Windows"
    poll_seconds = 3.0
    min_reload_s = 2.0
    BINDINGS: ClassVar = keys.bindings("windows")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.windows: list[WindowReadiness] = []
        self.filter_text = ""
        self.sort_index = 0
        self.descending = True
        self._signature: tuple[Any, ...] | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="windows-criteria", classes="pane-title")
        yield Static("agents per window (oldest → newest)", classes="caption")
        yield Sparkline([], id="windows-spark")
        yield Input(placeholder="filter: window id or state (esc clears)", id="windows-filter")
        yield DataTable(id="windows-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="windows-detail", classes="detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (("Window (UTC)", "window"), ("State", "state"), ("Agents", "agents"),
                           ("Qualified", "qualified"), ("Trajectories", "trajectories"), ("Steps", "steps"),
                           ("P&L min", "pnl_min"), ("P&L avg", "pnl_avg"), ("P&L max", "pnl_max"),
                           ("Outcomes", "outcomes")):
            table.add_column(label, key=key)
        self._update_criteria()

    def on_show_pane(self) -> None:
        self.query_one(DataTable).focus()

    # -- data ----------------------------------------------------------------------------------

    async def load(self) -> list[WindowReadiness]:
        criteria, lookback = self.console.readiness_criteria()
        return await self.console.data.readiness(criteria, lookback)

    def show(self, payload: list[WindowReadiness]) -> None:
        self.windows = payload
        self.console.known_windows = sorted(w.window_id for w in payload)
        self._update_criteria()
        spark = self.query_one(Sparkline)
        spark.data = [w.agents for w in sorted(payload, key=lambda w: w.window_id)] or [0]
        self._render_rows()
        if self.console.selected_window is None and payload:
            self.console.select_window(self._visible()[0].window_id if self._visible() else payload[0].window_id)

    def _update_criteria(self) -> None:
        criteria, lookback = self.console.readiness_criteria()
        ready = sum(1 for w in self.windows if w.ready)
        sort_label, _ = SORTS[self.sort_index]
        self.query_one("#windows-criteria", Static).update(Text.assemble(
            ("Window readiness", "bold"),
            f"  {len(self.windows)} windows, {ready} ready · needs ≥ {criteria.min_agents} agents with ≥ "
            f"{criteria.min_steps} step(s), settled {criteria.settle_seconds} s · lookback {lookback} h · "
            f"sorted by {sort_label} {'↓' if self.descending else '↑'}"
            + (f" · filter “{self.filter_text}”" if self.filter_text else ""),
        ))

    def _visible(self) -> list[WindowReadiness]:
        needle = self.filter_text.lower().strip()
        rows = [w for w in self.windows if not needle or needle in f"{w.window_id} {w.state.value}".lower()]
        _, key = SORTS[self.sort_index]
        return sorted(rows, key=key, reverse=self.descending)

    def _render_rows(self) -> None:
        rows = self._visible()
        signature = tuple((w.window_id, w.state, w.agents, w.qualified_agents, w.trajectories, w.steps,
                           w.pnl_min, w.pnl_avg, w.pnl_max, w.stock_outcomes, w.prediction_outcomes) for w in rows)
        if signature == self._signature:
            return
        self._signature = signature
        table = self.query_one(DataTable)
        keep = self.console.selected_window
        table.clear()
        for w in rows:
            state = Text(w.state.value, style=theme_color(self.app, STATE_COLORS.get(w.state.value, "foreground")))
            if w.ready:
                state.stylize("bold")
            table.add_row(
                w.window_id, state, str(w.agents), str(w.qualified_agents), str(w.trajectories), f"{w.steps:,}",
                fmt_pnl(w.pnl_min), fmt_pnl(w.pnl_avg), fmt_pnl(w.pnl_max),
                f"{w.stock_outcomes}+{w.prediction_outcomes}", key=w.window_id,
            )
        if keep is not None and any(w.window_id == keep for w in rows):
            table.move_cursor(row=table.get_row_index(keep), animate=False, scroll=True)
        self._update_detail()

    def _update_detail(self) -> None:
        selected = next((w for w in self.windows if w.window_id == self.console.selected_window), None)
        detail = self.query_one("#windows-detail", Static)
        if selected is None:
            detail.update("No window selected." if self.windows else "No windows in the lookback yet.")
            return
        reasons = "; ".join(selected.reasons) if selected.reasons else "ready to train"
        warnings = ("; ".join(selected.warnings) + "  ") if selected.warnings else ""
        detail.update(Text.assemble((selected.window_id, "bold"), f"  {selected.state.value}: {reasons}  ",
                                    (warnings, theme_color(self.app, "warning")),
                                    ("enter", "bold"), " outcomes  ", ("i", "bold"), " inspect"))

    # -- events --------------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#windows-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.console.select_window(str(event.row_key.value))
            self._update_detail()

    @on(DataTable.RowSelected, "#windows-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_window()

    @on(Input.Changed, "#windows-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._update_criteria()
        self._render_rows()

    @on(Input.Submitted, "#windows-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    # -- actions -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#windows-filter", Input)
        field.display = True
        field.focus()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.descending = self.sort_index in (0, 2, 3, 4, 5)
        self._update_criteria()
        self._render_rows()

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self._update_criteria()
        self._render_rows()

    def action_open_window(self) -> None:
        if self.console.selected_window:
            self.console.main.show_pane("outcomes")

    def action_inspect_window(self) -> None:
        if self.console.selected_window:
            self.console.main.show_pane("inspector")

    def theme_changed(self) -> None:
        self._signature = None
        self._render_rows()

    def back(self) -> bool:
        field = self.query_one("#windows-filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.filter_text = ""
            self._update_criteria()
            self._render_rows()
            self.query_one(DataTable).focus()
            return True
        return False
