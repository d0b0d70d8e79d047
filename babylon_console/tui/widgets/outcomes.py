"""Market outcomes of the selected window: stocks (start -> end, change, sentiment, news) and the
prediction markets that resolved (question, outcome, final probability)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from .. import bindings as keys
from ..messages import ShowPane, WindowChosen, WindowsSeen
from ..state import Readiness
from .pane import Pane, theme_color

if TYPE_CHECKING:
    from ..data import WindowGroundTruth


def _news(value: Any) -> list[str]:
    """The headlines of a `newsEvents` value, read as the judges read them (imported on first use: the
    console paints first)."""
    from ..data import headlines

    return headlines(value)


def _num(value: Decimal | float | None, fmt: str) -> str:
    return "–" if value is None else format(float(value), fmt)


class OutcomesPane(Pane):
    scope = "outcomes"
    title = "Outcomes"
    poll_seconds = 15.0
    BINDINGS: ClassVar = keys.bindings("outcomes")

    selected_window: reactive[str | None] = reactive(None, init=False)
    known_windows: reactive[tuple[str, ...]] = reactive((), init=False)
    readiness: reactive[Readiness | None] = reactive(None, init=False)  # to read the windows again

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.truth: WindowGroundTruth | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Select a window in the Windows pane (1).", id="outcomes-title", classes="pane-title")
        yield Static("Stocks", classes="section")
        yield DataTable(id="outcomes-stocks", cursor_type="row", zebra_stripes=True)
        yield Static("Prediction markets", classes="section")
        yield DataTable(id="outcomes-predictions", cursor_type="row", zebra_stripes=True)
        yield Static(id="outcomes-news", classes="detail")

    def on_mount(self) -> None:
        stocks = self.query_one("#outcomes-stocks", DataTable)
        for label in ("Ticker", "Start", "End", "Change %", "Sentiment", "News"):
            stocks.add_column(label, key=label.lower())
        preds = self.query_one("#outcomes-predictions", DataTable)
        for label in ("Question", "Outcome", "Final probability", "Volume"):
            preds.add_column(label, key=label.lower())

    def on_show_pane(self) -> None:
        self.query_one("#outcomes-stocks", DataTable).focus()

    async def load(self) -> WindowGroundTruth | None:
        window = self.selected_window
        if window is None or self.source is None:
            return None
        return await self.source.ground_truth(window)

    def show(self, payload: WindowGroundTruth | None) -> None:
        if payload is not None and self.truth is not None and payload == self.truth:
            return
        self.truth = payload
        title = self.query_one("#outcomes-title", Static)
        stocks = self.query_one("#outcomes-stocks", DataTable)
        preds = self.query_one("#outcomes-predictions", DataTable)
        stocks.clear()
        preds.clear()
        if payload is None:
            title.update("Select a window in the Windows pane (1).")
            return
        title.update(Text.assemble(
            ("Market outcomes ", "bold"), (payload.window_id, "bold"),
            f"  {len(payload.stocks)} stocks, {len(payload.predictions)} prediction markets  ",
            ("[ ]", "bold"), " older/newer window  ", ("i", "bold"), " inspect trajectories"))
        up, down = theme_color(self.app, "success"), theme_color(self.app, "error")
        for row in payload.stocks:
            change = float(row.change_percent) if row.change_percent is not None else None
            news = _news(row.news_events)
            stocks.add_row(
                Text(row.stock_ticker or "?", style="bold"),
                _num(row.start_price, ",.2f"), _num(row.end_price, ",.2f"),
                Text("–" if change is None else f"{change:+.2f}%",
                     style=(up if change and change > 0 else down if change and change < 0 else "")),
                row.sentiment or "–",
                (news[0] if news else "–") + (f"  (+{len(news) - 1})" if len(news) > 1 else ""),
                key=row.id,
            )
        for row in payload.predictions:
            preds.add_row(
                row.question or row.prediction_market_id or "?",
                Text(row.outcome or "unresolved", style="bold"),
                _num(row.final_probability, ".1%"),
                _num(row.volume, ",.0f"),
                key=row.id,
            )
        if payload.empty:
            self.query_one("#outcomes-news", Static).update("No market outcomes were recorded for this window.")
        else:
            self._show_news(payload.stocks[0].id if payload.stocks else None)

    def _show_news(self, row_id: str | None) -> None:
        row = next((r for r in (self.truth.stocks if self.truth else []) if r.id == row_id), None)
        target = self.query_one("#outcomes-news", Static)
        if row is None:
            target.update("")
            return
        news = _news(row.news_events)
        target.update(Text.assemble((f"{row.stock_ticker} news: ", "bold"),
                                    " · ".join(news) if news else "no news this hour"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "outcomes-stocks" and event.row_key is not None:
            self._show_news(str(event.row_key.value))

    def action_step_window(self, delta: int) -> None:
        self.run_worker(self._step_window(delta), name="step window", group="step-window", exit_on_error=False)

    async def _step_window(self, delta: int) -> None:
        """`[`/`]`: the older or newer window. The list of windows is the Windows pane's as last
        loaded; past its end (or with none yet) it is read again, so new windows (a live market)
        are reached; at the true end the pane says so."""
        windows = list(self.known_windows)
        current = self.selected_window
        if (current not in windows or not 0 <= windows.index(current) + delta < len(windows)) and \
                self.source is not None and self.readiness is not None:
            fresh = await self.source.readiness(self.readiness.criteria, self.readiness.lookback_hours)
            windows = sorted(w.window_id for w in fresh)
            self.post_message(WindowsSeen(tuple(windows)))
        if not windows:
            self.notify("No windows in the lookback yet.", timeout=3)
            return
        if current not in windows:
            index = len(windows) - 1  # the newest, from nowhere
        elif 0 <= windows.index(current) + delta < len(windows):
            index = windows.index(current) + delta
        else:
            edge = "newest" if delta > 0 else "oldest in the lookback"
            self.notify(f"{current} is the {edge} window.", title="Outcomes", timeout=3)
            return
        self.selected_window = windows[index]
        self.post_message(WindowChosen(windows[index]))
        self.request_load()

    def action_inspect_window(self) -> None:
        if self.selected_window:
            self.post_message(ShowPane("inspector"))
