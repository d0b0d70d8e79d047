"""Windows pane: readiness of every window in the lookback, with a sparkline, filter and sort."""

from __future__ import annotations

from statistics import fmean
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Sparkline, Static

from .. import bindings as keys
from ..data import EventKind
from ..messages import ShowPane, WindowChosen, WindowsSeen
from ..state import Readiness
from .columns import Column, hidden_labels, show_columns
from .pane import Pane, theme_color

if TYPE_CHECKING:
    from ..data import WindowReadiness

STATE_COLORS = {
    "ready": "success",
    "open": "accent",
    "settling": "warning",
    "too few agents": "foreground",
    "trained": "secondary",
    "held out": "primary",
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


# (label, key, shown when narrow): at 80 columns the narrow set fits; the pane says what it hides
COLUMNS: tuple[Column, ...] = (
    ("Window (UTC)", "window", True), ("State", "state", True), ("Agents", "agents", True),
    ("Qualified", "qualified", False), ("Trajectories", "trajectories", True), ("Steps", "steps", False),
    ("P&L min", "pnl_min", False), ("P&L avg", "pnl_avg", True), ("P&L max", "pnl_max", False),
    ("Outcomes", "outcomes", False),
)
WIDE_FROM = 112  # pane width (cells) from which every column fits


def fmt_pnl(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.1f}"


class WindowsPane(Pane):
    scope = "windows"
    title = "Windows"
    poll_seconds = 3.0
    min_reload_s = 2.0
    BINDINGS: ClassVar = keys.bindings("windows")
    stale_on = frozenset({EventKind.STEP_TRAINED, EventKind.WINDOW_JUDGED, EventKind.ITERATION_STARTED,
                          EventKind.HOLDOUT_SET})

    selected_window: reactive[str | None] = reactive(None, init=False)
    readiness: reactive[Readiness | None] = reactive(None, init=False)

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.windows: list[WindowReadiness] = []
        self.filter_text = ""
        self.sort_index = 0
        self.descending = True
        self._signature: tuple[Any, ...] | None = None
        self.wide = True
        self.columns: list[str] = []

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="windows-criteria", classes="pane-title")
        yield Static("agents per window (oldest → newest)", id="windows-spark-caption", classes="caption")
        yield Sparkline([], id="windows-spark", summary_function=fmean)
        yield Input(placeholder="filter: window id or state (esc clears)", id="windows-filter")
        yield DataTable(id="windows-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="windows-detail", classes="detail")

    def on_mount(self) -> None:
        self._set_columns(wide=True)
        self._update_criteria()

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE_FROM
        if wide != self.wide:
            self._set_columns(wide)
            self._update_criteria()
            self._signature = None
            self._render_rows()

    def _set_columns(self, wide: bool) -> None:
        self.wide = wide
        self.columns = show_columns(self.query_one(DataTable), COLUMNS, wide)

    @property
    def hidden_columns(self) -> list[str]:
        return hidden_labels(COLUMNS, self.columns)

    def on_show_pane(self) -> None:
        self.query_one(DataTable).focus()

    # -- data ----------------------------------------------------------------------------------

    async def load(self) -> list[WindowReadiness]:
        assert self.source is not None and self.readiness is not None
        return await self.source.readiness(self.readiness.criteria, self.readiness.lookback_hours)

    def show(self, payload: list[WindowReadiness]) -> None:
        self.windows = payload
        self.post_message(WindowsSeen(tuple(sorted(w.window_id for w in payload))))
        self._update_criteria()
        spark = self.query_one(Sparkline)
        spark.data = [w.agents for w in sorted(payload, key=lambda w: w.window_id)] or [0]
        caption = "agents per window (oldest → newest)"
        if payload:
            caption += f": {min(spark.data)}–{max(spark.data)}, mean {fmean(spark.data):.1f} (bars: mean per column)"
        self.query_one("#windows-spark-caption", Static).update(caption)
        self._render_rows()
        if self.selected_window is None and payload:
            self._choose(self._visible()[0].window_id if self._visible() else payload[0].window_id)

    def _choose(self, window_id: str) -> None:
        if window_id != self.selected_window:
            self.selected_window = window_id  # at once, so this pane's detail follows; the screen then binds it
            self.post_message(WindowChosen(window_id))

    def watch_readiness(self) -> None:
        self._update_criteria()

    def watch_selected_window(self, window_id: str | None) -> None:
        """Another pane chose a window (Outcomes' ] and [): the cursor and the detail follow."""
        table = self.query_one(DataTable)
        if window_id is not None and window_id in table.rows:
            row = table.get_row_index(window_id)
            if table.cursor_row != row:  # the highlight it fires names the chosen window: no new choice
                table.move_cursor(row=row, animate=False, scroll=True)
        self._update_detail()

    def _update_criteria(self) -> None:
        if self.readiness is None:
            return
        criteria, lookback = self.readiness.criteria, self.readiness.lookback_hours
        ready = sum(1 for w in self.windows if w.ready)
        sort_label, _ = SORTS[self.sort_index]
        self.query_one("#windows-criteria", Static).update(Text.assemble(
            ("Window readiness", "bold"),
            f"  {len(self.windows)} windows, {ready} ready · needs ≥ {criteria.min_agents} agents with ≥ "
            f"{criteria.min_steps} step(s), settled {criteria.settle_seconds} s · lookback {lookback} h · "
            f"sorted by {sort_label} {'↓' if self.descending else '↑'}"
            + (f" · filter “{self.filter_text}”" if self.filter_text else "")
            + (f" · narrow: {', '.join(self.hidden_columns)} hidden" if self.hidden_columns else ""),
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
        keep = self.selected_window
        table.clear()
        for w in rows:
            state = Text(w.state.value, style=theme_color(self.app, STATE_COLORS.get(w.state.value, "foreground")))
            if w.ready:
                state.stylize("bold")
            cells = {
                "window": w.window_id, "state": state, "agents": str(w.agents), "qualified": str(w.qualified_agents),
                "trajectories": str(w.trajectories), "steps": f"{w.steps:,}", "pnl_min": fmt_pnl(w.pnl_min),
                "pnl_avg": fmt_pnl(w.pnl_avg), "pnl_max": fmt_pnl(w.pnl_max),
                "outcomes": f"{w.stock_outcomes}+{w.prediction_outcomes}",
            }
            table.add_row(*(cells[key] for key in self.columns), key=w.window_id)
        if keep is not None and any(w.window_id == keep for w in rows):
            table.move_cursor(row=table.get_row_index(keep), animate=False, scroll=True)
        self._update_detail()

    def _update_detail(self) -> None:
        selected = next((w for w in self.windows if w.window_id == self.selected_window), None)
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
        if event.cursor_row != event.data_table.cursor_row:
            return  # stale: the cursor moved on (a choice made elsewhere) before this was handled
        if event.row_key is not None and event.row_key.value is not None:
            self._choose(str(event.row_key.value))
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
        if self.selected_window:
            self.post_message(ShowPane("outcomes"))

    def action_inspect_window(self) -> None:
        if self.selected_window:
            self.post_message(ShowPane("inspector"))

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
