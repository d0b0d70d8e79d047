"""Training pane: run state, the Health strip, live charts by step, judging progress per window, ETA,
event tail and the model's alarms.

Events are folded into `TrainingState` as they arrive (cheap, bounded: every buffer is a deque
with a maximum length), whether or not the pane is visible; the pane draws only while visible,
and charts at most a few times a second, rendered in a worker thread. The health figures and the
alarms are read from the database (`load`) when the pane is shown and after a trained step, an
alarm or an acknowledgement.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.color import Color
from textual.containers import Grid, Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, RichLog, Static

from .. import bindings as keys
from .. import refusals
from ..data import Event, EventKind
from ..data import events as ev
from ..messages import AcknowledgeRequested
from ..state import EngineView
from . import alarms as alarm_list
from .chart import MetricChart, render_chart
from .health import HealthStrip
from .pane import Pane, theme_color

CHART_POINTS = 2000
TAIL_LINES = 500
FOLD_MEMORY = 20_000  # recent events kept to fold again when the pane follows another run
TAIL_CATCH_UP = 100  # lines written at once when the pane is shown after a burst
JUDGING_WINDOWS = 24
ALARMS_SHOWN = 50
SHORT_BELOW = 30  # pane height (rows) below which the charts give up rows to the Health strip
CHART_MIN_INTERVAL_S = 1.0  # charts redraw at most once a second

# chart id -> (title, [(metric key, label, theme color)])
CHARTS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "chart-reward": ("reward (mean, std)", [("train/reward", "mean", "primary"),
                                            ("train/reward_std_dev", "std", "accent")]),
    "chart-loss": ("loss", [("loss/train", "loss", "primary")]),
    "chart-kl": ("KL divergence", [("loss/kl_div", "kl", "secondary")]),
    "chart-entropy": ("entropy", [("loss/entropy", "entropy", "accent")]),
    "chart-grad": ("grad norm", [("loss/grad_norm", "grad", "warning")]),
}
METRICS = sorted({key for _, series in CHARTS.values() for key, _, _ in series})

KIND_STYLES = {EventKind.ERROR: "error", EventKind.WARNING: "warning", EventKind.STEP_TRAINED: "primary",
               EventKind.CHECKPOINT_REGISTERED: "success", EventKind.CHECKPOINT_EVALUATED: "accent",
               EventKind.PROMOTED: "success",
               EventKind.ROLLED_BACK: "warning", EventKind.ALARM: "error"}


@dataclass(slots=True)
class HealthView:
    """What `TrainingPane.load` read: the newest step's health (None: none stored) and recent alarms."""

    health: Any  # core.training.health.StepHealth | None
    alarms: list[Any]  # core.training.health_store.AlarmRecord, newest first


@dataclass(slots=True)
class JudgingRow:
    window_id: str
    status: str
    detail: str = ""


class TrainingState:
    """Everything the pane shows, folded from events; bounded in memory.

    Charts, judging progress and counters are those of one run, the one the pane follows (`follow`):
    events of other runs (another model's, an older engine's) reach only the event tail. The recent
    events are kept, so following another run folds its own events again."""

    def __init__(self) -> None:
        self.tail: deque[tuple[int, Text]] = deque(maxlen=TAIL_LINES)
        self.tail_seq = 0
        self.followed: str | None = None  # None: no run known yet, every event folds
        self._recent: deque[Event] = deque(maxlen=FOLD_MEMORY)
        self.chart_version = self.judging_version = self.version = 0
        self._reset_folded()

    def _reset_folded(self) -> None:
        self.series: dict[str, deque[tuple[int, float]]] = {k: deque(maxlen=CHART_POINTS) for k in METRICS}
        self.chart_version += 1
        self.judging: OrderedDict[str, JudgingRow] = OrderedDict()
        self.judging_version += 1
        self.run_id: str | None = None
        self.state: str | None = None
        self.paused_on_alarm: str | None = None  # the engine paused itself on this alarm (`kl_spike at step 4`)
        self.iteration = 0
        self.step: int | None = None
        self.iterations_target: int | None = None
        self.iteration_started: datetime | None = None
        self.iteration_durations: deque[float] = deque(maxlen=20)
        self.windows_trained = 0
        self.windows_failed = 0
        self.last_checkpoint: str | None = None
        self.last_event_at: datetime | None = None
        self.version += 1

    def _folds(self, event: Event) -> bool:
        return self.followed is None or event.run_id in (None, self.followed)

    def follow(self, run_id: str | None) -> bool:
        """Chart `run_id` (the run the pane follows); True when that changed what is folded."""
        if run_id is None or run_id == self.followed:
            return False
        self.followed = run_id
        self._reset_folded()
        for event in self._recent:
            if self._folds(event):
                self._fold(event)
        return True

    def _judging(self, window_id: str, status: str, detail: str = "") -> None:
        row = self.judging.get(window_id)
        if row is None:
            row = self.judging[window_id] = JudgingRow(window_id, status, detail)
        else:
            row.status, row.detail = status, detail or row.detail
            self.judging.move_to_end(window_id)
        while len(self.judging) > JUDGING_WINDOWS:
            self.judging.popitem(last=False)
        self.judging_version += 1

    def ingest(self, events: Iterable[Event], colors: dict[str, str]) -> None:
        for event in events:
            self._recent.append(event)
            if self._folds(event):
                self._fold(event)
            self.tail_seq += 1
            self.tail.append((self.tail_seq, self._line(event, colors)))
            self.version += 1

    def _line(self, event: Event, colors: dict[str, str]) -> Text:
        when = event.created_at.strftime("%H:%M:%S") if event.created_at else "--:--:--"
        style = colors.get(KIND_STYLES.get(event.kind, ""), "")
        kind = event.raw_kind or event.kind.value  # a kind this version does not know keeps its name
        return Text.assemble((when + " ", "dim"), (f"{kind:<21} ", style or "bold"), event.summary)

    def _fold(self, event: Event) -> None:
        self.last_event_at = event.created_at
        match event.data:
            case ev.RunStarted(config=config):
                self.run_id, self.state = event.run_id, "running"
                self.paused_on_alarm = None
                self.iteration, self.iteration_started = 0, None
                self.windows_trained = self.windows_failed = 0
                target = config.get("iterations")
                self.iterations_target = target if isinstance(target, int) else None
            case ev.RunPaused(operator=operator, message=message):
                self.state = "paused"
                said = f"{operator or ''} {message or ''}"
                if "alarm" in said.lower():  # the engine paused itself on an alarm: its words name it
                    self.paused_on_alarm = self.paused_on_alarm or (message or operator)
            case ev.Alarm(paused=True, rule=rule, step=step, window_id=window_id):
                self.paused_on_alarm = f"{rule or 'an alarm'} at " + (f"step {step}" if step is not None
                                                                        else f"window {window_id or '?'}")
            case ev.RunResumed():
                self.state = "running"
                self.paused_on_alarm = None
            case ev.RunStopped(reason=reason):
                self.state = "failed" if "failed" in (reason or "") else "stopped"
                self.iteration_started = None
            case ev.IterationStarted(iteration=iteration, windows=windows):
                self.run_id = event.run_id or self.run_id
                self.state = self.state if self.state in ("paused",) else "running"
                self.iteration = iteration or self.iteration + 1
                self.iteration_started = event.created_at
                for window_id in windows:
                    self._judging(window_id, "queued")
            case ev.WindowSelected(window_id=window_id, trajectories=kept, available=available):
                self._judging(str(window_id), "judging", f"{kept} of {available} trajectories")
            case ev.WindowJudged(window_id=window_id, mean=mean, std=std, n=n):
                self._judging(str(window_id), "judged", f"mean {mean:.3f} ± {std:.3f}, n={n}")
            case ev.WindowSkipped(window_id=window_id, message=message):
                self._judging(str(window_id), "skipped", (message or "")[-40:])
            case ev.EngineFailure(window_id=str() as window_id, message=message) if window_id:
                self._judging(window_id, "failed", (message or "")[:60])
                self.windows_failed += 1
            case ev.StepTrained(step=step, metrics=metrics, windows=windows):
                if step is not None:
                    self.step = step
                    for key in METRICS:
                        value = metrics.get(key)
                        if value is not None:
                            self.series[key].append((step, float(value)))
                    self.chart_version += 1
                self.windows_trained += len(windows)
                for window_id in windows:
                    self._judging(window_id, "trained", f"step {step}")
                if self.iteration_started is not None and event.created_at is not None:
                    self.iteration_durations.append((event.created_at - self.iteration_started).total_seconds())
                    self.iteration_started = None
            case ev.CheckpointRegistered(model_id=model_id):
                self.last_checkpoint = model_id
            case _:
                pass

    def clear_charts(self) -> None:
        for values in self.series.values():
            values.clear()
        self.chart_version += 1

    @property
    def average_iteration_s(self) -> float | None:
        if not self.iteration_durations:
            return None
        return sum(self.iteration_durations) / len(self.iteration_durations)

    def eta(self, now: datetime | None) -> str:
        avg = self.average_iteration_s
        if self.state not in ("running", "paused"):
            return ""
        if avg is None:
            return "ETA: after the first trained step"
        parts = [f"~{_secs(avg)} per iteration"]
        if self.iteration_started is not None and now is not None:
            elapsed = (now - self.iteration_started).total_seconds()
            parts.append(f"this iteration ~{_secs(max(0.0, avg - elapsed))} left")
        elif self.iteration_started is None:
            parts.append("waiting for ready windows")
        if self.iterations_target:
            left = max(0, self.iterations_target - self.iteration)
            parts.append(f"run: {self.iteration}/{self.iterations_target} iterations, ~{_secs(left * avg)} left")
        return "ETA " + ", ".join(parts)


class ChartsRendered(Message):
    """Charts rendered in a worker thread, ready to show (posted from that thread)."""

    def __init__(self, rendered: list[tuple[MetricChart, Text]], version: int, sizes: tuple[Any, ...]) -> None:
        super().__init__()
        self.rendered = rendered
        self.version = version
        self.sizes = sizes


class TrainingPane(Pane):
    """Draws the engine's state (bound from the screen) and the events folded into `state`."""

    scope = "training"
    title = "Training"
    BINDINGS: ClassVar = keys.bindings("training")

    engine: reactive[EngineView] = reactive(EngineView, init=False)
    model_key: reactive[str | None] = reactive(None, init=False)  # the training key the console is about
    poll_seconds = 10.0  # health rows and alarms also arrive without an event this console saw
    stale_on = frozenset({EventKind.STEP_TRAINED, EventKind.ALARM, EventKind.ALARM_ACKNOWLEDGED})

    def __init__(self, source: Any = None, state: TrainingState | None = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.state = state or TrainingState()
        self._tail_shown = 0
        self._judging_shown = -1
        self._charts_shown = -1
        self._charts_size: tuple[tuple[int, int], ...] = ()
        self._charts_at = 0.0
        self._charts_busy = False
        self.wall_clock = True  # False in snapshot tests: no live "now" in the ETA
        self._rgb: dict[str, tuple[int, int, int]] = {}
        self.health_view: HealthView | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="training-status", classes="pane-title")
        yield HealthStrip(id="training-health")
        with Grid(id="training-charts"):
            for chart_id, (title, series) in CHARTS.items():
                yield MetricChart(title, [(label, color) for _, label, color in series], id=chart_id,
                                  classes="chart")
            yield DataTable(id="training-judging", cursor_type="row", zebra_stripes=True, classes="chart")
        with Horizontal(id="training-bottom"):
            yield RichLog(id="training-tail", max_lines=TAIL_LINES, wrap=False, markup=False, auto_scroll=True)
            yield DataTable(id="training-alarms", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#training-judging", DataTable)
        table.border_title = "judging progress"
        for label in ("Window", "Status", "Detail"):
            table.add_column(label, key=label.lower())
        self.query_one("#training-tail", RichLog).border_title = "events"
        alarms = self.query_one("#training-alarms", DataTable)
        alarms.border_title = "alarms"
        for label in alarm_list.COLUMNS:
            alarms.add_column(label, key=label.lower())

    def on_show_pane(self) -> None:
        self.redraw()

    def on_resize(self) -> None:
        self._charts_shown = -1
        self.set_class(self.size.height < SHORT_BELOW, "-short")
        self._draw_health()
        self.call_after_refresh(self.redraw)

    # -- health and alarms ---------------------------------------------------------------------

    async def load(self) -> HealthView | None:
        if self.source is None:
            return None
        key = self.model_key
        health = await self.source.health(key, limit=1)
        return HealthView(health[-1] if health else None, await self.source.alarms(key, limit=ALARMS_SHOWN))

    def show(self, payload: HealthView | None) -> None:
        if payload is None:
            return
        self.health_view = payload
        self._draw_health()
        table = self.query_one("#training-alarms", DataTable)
        alarm_list.fill(table, payload.alarms, f"bold {theme_color(self.app, 'error')}".strip())
        self.set_class(bool(payload.alarms), "-alarms")
        open_count = len(alarm_list.open_alarms(payload.alarms))
        table.border_title = f"alarms · {open_count} open" if open_count else "alarms"
        self.refresh_bindings()

    def _draw_health(self) -> None:
        if not self.is_mounted:
            return
        view = self.health_view
        open_rules = {a.rule for a in alarm_list.open_alarms(view.alarms)} if view is not None else set()
        self.query_one(HealthStrip).show(view.health if view is not None else None, open_rules,
                                         alarm_style=f"bold {theme_color(self.app, 'error')}".strip())

    def acknowledge_target(self) -> Any:
        """The alarm the acknowledge key acts on: the highlighted one while the alarm list has the
        focus, else the newest open one (None: no alarm)."""
        if self.health_view is None:
            return None
        table = self.query_one("#training-alarms", DataTable)
        highlighted = alarm_list.highlighted_id(table) if table.has_focus else None
        return alarm_list.target(self.health_view.alarms, highlighted)

    def refusal(self, action: str) -> str | None:
        if action == "acknowledge_alarm":
            if self.health_view is None:
                return "alarms are still loading"
            return refusals.acknowledge(self.acknowledge_target())
        return None

    def action_acknowledge_alarm(self) -> None:
        self.post_message(AcknowledgeRequested(self.acknowledge_target()))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "training-alarms":
            self.refresh_bindings()  # the key bar dims the key on an acknowledged alarm

    # -- data ----------------------------------------------------------------------------------

    def colors(self) -> dict[str, str]:
        return {name: theme_color(self.app, name) for name in ("primary", "secondary", "accent", "warning",
                                                                 "error", "success")}

    def on_events(self, events: list[Event], replay: bool) -> None:
        self.state.ingest(events, self.colors())
        self.redraw()

    def watch_engine(self) -> None:
        self.redraw()

    def tick(self) -> None:
        self.redraw()

    # -- drawing -------------------------------------------------------------------------------

    def redraw(self) -> None:
        view = self.engine
        self.state.follow(view.run_id if view.here else (view.run.run_id if view.run is not None else None))
        if not self.visible_now:
            return
        self._draw_status()
        self._draw_judging()
        self._draw_tail()
        self._draw_charts()

    def _draw_status(self) -> None:
        s, view = self.state, self.engine
        here, latest = view.here, view.run
        # The run followed is the view's (this console's engine, else the model's newest run anywhere);
        # folded numbers count only when the events folded are that run's: never a stale run id.
        run_id = view.run_id if here else (latest.run_id if latest else None)
        engine_state = view.state if here else (latest.state if latest else None)
        if not here and latest is not None and latest.liveness == "dead" and engine_state in (
                "running", "paused", "starting", "stopping"):
            engine_state = "dead"  # it said running, then stopped beating
        ours = run_id is not None and s.run_id == run_id
        line1 = Text.assemble(("Engine ", "bold"), (engine_state or "idle", "bold"))
        iteration = s.iteration if ours else (latest.iteration if latest and not here else 0)
        step = s.step if ours else (latest.step if latest and not here else None)
        line1.append(f" · iteration {iteration} · step {step if step is not None else '–'}")
        run = latest if not here else None
        if here and engine_state in ("running", "paused") and view.stage:
            line1.append(f" · stage {view.stage}")
        elif run is not None and run.active and run.stage:
            # paused, a run waits for an operator, not on its stage: how long it sat there says nothing
            line1.append(f" · stage {run.stage}" if engine_state == "paused"
                         else f" · stage {run.stage} for {_secs(run.stage_age_s or 0.0)}")
        if run is not None and run.liveness in ("stale", "dead"):
            line1.append(f" · {run.liveness.upper()}: last heartbeat {_secs(run.heartbeat_age_s or 0.0)} ago",
                         style=theme_color(self.app, "error" if run.liveness == "dead" else "warning"))
        if ours:
            line1.append(f" · windows trained {s.windows_trained}, failed {s.windows_failed}")
        # which run and where, after what it is doing: a narrow pane cuts these first
        if run_id:
            line1.append(f" · run {run_id} " + (follow_label(latest, view.attach) if not here else "in this console"))
        if ours and s.last_checkpoint:
            line1.append(f" · last checkpoint {s.last_checkpoint}")
        now = None
        if self.wall_clock and s.last_event_at is not None:
            now = datetime.now(UTC) if s.last_event_at.tzinfo else datetime.now()
        eta = s.eta(now)
        error = view.error if here and view.state == "failed" else None
        line2 = Text(eta or ("E to start the engine" if engine_state in (None, "idle", "stopped", "failed")
                             and not view.attach else ""), style="dim")
        if error:
            line2 = Text(f"failed: {error}", style=theme_color(self.app, "error"))
        elif engine_state == "paused" and s.paused_on_alarm and (ours or run_id is None):
            line2 = Text(f"the engine paused itself on an alarm: {s.paused_on_alarm} · a acknowledges it, "
                         "space resumes",
                         style=f"bold {theme_color(self.app, 'error')}".strip())
        # two rows, each cut with an ellipsis rather than wrapped: a long first line must never push the
        # second (the ETA, or why the engine paused) out of the pane
        status = Text("\n", no_wrap=True, overflow="ellipsis").join([line1, line2])
        self.query_one("#training-status", Static).update(status)

    def _draw_judging(self) -> None:
        if self._judging_shown == self.state.judging_version:
            return
        self._judging_shown = self.state.judging_version
        table = self.query_one("#training-judging", DataTable)
        table.clear()
        colors = {"trained": "success", "judged": "primary", "failed": "error", "skipped": "warning",
                  "judging": "accent"}
        for row in reversed(self.state.judging.values()):
            table.add_row(row.window_id, Text(row.status, style=theme_color(self.app, colors.get(row.status, ""))),
                          row.detail, key=row.window_id)

    def _draw_tail(self) -> None:
        """Append what arrived since the last draw, as one write; after a long absence only the
        last `TAIL_CATCH_UP` lines (older ones stay in the buffer, not on screen)."""
        if self._tail_shown == self.state.tail_seq:
            return
        log = self.query_one("#training-tail", RichLog)
        pending = [line for seq, line in self.state.tail if seq > self._tail_shown]
        if len(pending) > TAIL_CATCH_UP:
            log.clear()
            pending = pending[-TAIL_CATCH_UP:]
        if pending:
            log.write(Text("\n").join(pending))
        self._tail_shown = self.state.tail_seq

    def _draw_charts(self) -> None:
        charts = list(self.query(MetricChart))
        sizes = tuple(c.plot_size() for c in charts)
        if self._charts_shown == self.state.chart_version and sizes == self._charts_size:
            return
        if self._charts_busy or time.monotonic() - self._charts_at < CHART_MIN_INTERVAL_S:
            self.set_timer(CHART_MIN_INTERVAL_S, self.redraw)
            return
        version = self.state.chart_version
        rgb = {name: Color.parse(value).rgb for name, value in self.colors().items() if value}
        jobs = []
        for chart, size in zip(charts, sizes, strict=True):
            _, series = CHARTS[chart.id or ""]
            data = []
            for key, label, color in series:
                points = list(self.state.series[key])
                data.append((label, [p[0] for p in points], [p[1] for p in points], rgb.get(color, (200, 200, 200))))
            jobs.append((chart, data, size))
        self._charts_busy = True
        self._charts_at = time.monotonic()

        def work() -> None:
            try:
                rendered = [(chart, render_chart(data, w, h)) for chart, data, (w, h) in jobs]
                self.post_message(ChartsRendered(rendered, version, sizes))
            finally:
                self._charts_busy = False

        self._rgb = rgb
        self.run_worker(work, name="render charts", group="charts", thread=True, exit_on_error=False)

    def on_charts_rendered(self, message: ChartsRendered) -> None:
        rgb = self._rgb
        for chart, text in message.rendered:
            chart.update(text)
            legend = " ".join(f"[{rgb_hex(rgb.get(color))}]━[/] {label}" for label, color in chart.series)
            chart.border_subtitle = legend
        self._charts_shown = message.version
        self._charts_size = message.sizes

    def theme_changed(self) -> None:
        self._charts_shown = self._judging_shown = -1
        if self.health_view is not None:
            self.show(self.health_view)
        self.redraw()

    def action_clear_charts(self) -> None:
        self.state.clear_charts()
        self.redraw()


def follow_label(run: Any, attach: bool) -> str:
    """Where a run of the model runs, said after its id: `· engine pid 4242 on host trainer-2`."""
    kind = "headless engine" if attach else "engine"
    return f"· {kind} pid {run.pid} on host {run.host}" if run is not None and run.pid else "(another process)"


def _secs(value: float) -> str:
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min"


def rgb_hex(rgb: tuple[int, int, int] | None) -> str:
    r, g, b = rgb or (200, 200, 200)
    return f"#{r:02x}{g:02x}{b:02x}"
