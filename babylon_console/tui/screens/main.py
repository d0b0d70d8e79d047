"""The main screen: pane bar, outage banner, the panes, status bar and footer.

It owns the state the panes share (selected window, read-only, readiness criteria, live model,
engine) as reactives bound into the panes that use them, and handles what panes ask for (their
intents, `messages`): choosing a window, showing a pane, promote, rollback, engine control. The
operator flows themselves live in controllers.

It owns polling too: every pane is refreshed on its own interval, only while visible, by a named
worker that never overlaps itself (a poll that is still running is not started again), and
reloads when an event batch makes it stale.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ContentSwitcher

from .. import bindings as keys
from .. import messages as msg
from ..controllers.alarms import AlarmWatch
from ..controllers.engine import EngineControl
from ..controllers.registry import RegistryActions
from ..data import ConsoleData, Event, EventKind
from ..data import events as ev
from ..state import EngineView, Readiness
from ..widgets.bars import Banner, PaneBar, StatusBar
from ..widgets.checkpoints import CheckpointsPane
from ..widgets.context import ContextBar
from ..widgets.errors import ErrorsPane
from ..widgets.inspector import InspectorPane
from ..widgets.keybar import KeyBar
from ..widgets.outcomes import OutcomesPane
from ..widgets.pane import Pane, theme_color
from ..widgets.training import TrainingPane, TrainingState
from ..widgets.windows import WindowsPane

POLL_TICK_S = 0.5
ERROR_TOAST_GAP_S = 3.0


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#windows-table"
    BINDINGS: ClassVar = keys.bindings("main") + keys.fallback_bindings(
        "windows", "outcomes", "training", "checkpoints", "inspector", "errors")

    # state shared by the panes
    selected_window: reactive[str | None] = reactive(None, init=False)
    known_windows: reactive[tuple[str, ...]] = reactive((), init=False)
    read_only: reactive[bool] = reactive(False, init=False)
    readiness: reactive[Readiness | None] = reactive(None, init=False)
    live_model: reactive[Any] = reactive(None, init=False)
    engine: reactive[EngineView] = reactive(EngineView, init=False)
    db_ready: reactive[bool] = reactive(False, init=False)
    model_key: reactive[str | None] = reactive(None, init=False)  # the training key the panes are about

    def __init__(self, data: ConsoleData, engine: EngineControl, registry: RegistryActions, *, mode: str = "",
                 read_only: bool = False, alarms: AlarmWatch | None = None) -> None:
        super().__init__()
        self.data = data
        self.engine_control = engine
        self.registry = registry
        self.alarms = alarms
        self.mode = mode
        self.set_reactive(MainScreen.read_only, read_only)
        self.set_reactive(MainScreen.engine, engine.view())
        self.set_reactive(MainScreen.readiness, engine.readiness())
        self.training_state = TrainingState()
        self.history: list[str] = []
        self._last_load: dict[str, float] = {}
        self._stale: set[str] = set()
        self._errors_untoasted = 0
        self._early_problems: list[tuple[str, str, str]] = []
        self._last_error_toast = 0.0

    def compose(self) -> ComposeResult:
        data, shared = self.data, (MainScreen.read_only,)
        yield PaneBar(self.mode, id="pane-bar")
        yield ContextBar(id="context-bar")
        yield Banner(id="banner")
        with ContentSwitcher(initial="windows", id="panes"):
            yield WindowsPane(data, id="windows").data_bind(
                *shared, MainScreen.selected_window, MainScreen.readiness)
            yield OutcomesPane(data, id="outcomes").data_bind(
                *shared, MainScreen.selected_window, MainScreen.known_windows, MainScreen.readiness)
            yield TrainingPane(data, self.training_state, id="training").data_bind(
                *shared, MainScreen.engine, MainScreen.model_key)
            yield CheckpointsPane(data, id="checkpoints").data_bind(*shared, MainScreen.readiness)
            yield InspectorPane(data, id="inspector").data_bind(*shared, MainScreen.selected_window)
            yield ErrorsPane(data, id="errors").data_bind(*shared)
        yield StatusBar(id="status-bar")
        yield KeyBar(id="key-bar")

    def on_mount(self) -> None:
        self.query_one(Banner).display = False
        self.set_interval(POLL_TICK_S, self._tick)
        self.set_interval(1.0, self.update_status)
        self.call_after_refresh(self.active_pane.on_show_pane)
        if self.read_only:
            self.status.set_part("mode", Text("read-only: actions are refused", style="bold"))
        for problem in self._early_problems:
            self.pane(ErrorsPane).add(*problem)
        self._early_problems.clear()
        self.show_context()
        self.post_message(msg.ScreenReady())

    # -- panes ---------------------------------------------------------------------------------

    @property
    def pane_bar(self) -> PaneBar:
        return self.query_one(PaneBar)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def banner(self) -> Banner:
        return self.query_one(Banner)

    @property
    def switcher(self) -> ContentSwitcher:
        return self.query_one(ContentSwitcher)

    @property
    def active_pane(self) -> Pane:
        return self.query_one(f"#{self.switcher.current or 'windows'}", Pane)

    def pane[P: Pane](self, kind: type[P]) -> P:
        return self.query_one(kind)

    def is_visible(self, pane: Pane) -> bool:
        return pane.visible_now

    def show_pane(self, name: str, remember: bool = True) -> None:
        current = self.switcher.current
        if current == name:
            self.load_pane(self.active_pane, force=True)
            return
        if remember and current:
            self.history = [*self.history[-19:], current]
        self.switcher.current = name
        self.pane_bar.set_active(name)
        pane = self.active_pane
        self._stale.discard(name)
        self._focus_inside(pane)
        self.app.refresh_bindings()
        # Paint the pane as it was first, then refresh it: the key is answered in the next frame.
        self.call_after_refresh(pane.on_show_pane)
        self.call_after_refresh(self.load_pane, pane, True)

    def _focus_inside(self, pane: Pane) -> None:
        """Keys follow the focus: it moves into the pane shown at once (its first focusable widget;
        `on_show_pane` may pick another), never staying in a hidden pane, whose widgets would
        otherwise still answer keys (a table's cursor) and whose bindings the key bar would show."""
        focused = self.focused
        if focused is not None and pane in focused.ancestors:
            return
        self.set_focus(next((w for w in self.focus_chain if pane in w.ancestors), None))

    def pane_named(self, scope: str) -> Pane:
        return next(p for p in self.query(Pane) if p.scope == scope)

    async def run_pane_action(self, spec_id: str) -> None:
        """A pane's action from the palette: show its pane first, then act there (or say why not)."""
        spec = keys.BY_ID[spec_id]
        pane = self.pane_named(spec.scope)
        if self.switcher.current != pane.id:
            self.show_pane(pane.id or spec.scope)
            if self.db_ready and pane.source is not None:  # a hidden pane's data may be minutes old: act on fresh
                try:
                    pane.show(await pane.load())
                except Exception as exc:  # a failed read is said as any failed load; the action checks again
                    self.app.report_failure(f"load {pane.title}", exc)  # type: ignore[attr-defined]
        reason = pane.why_refused(spec.action_name)
        if reason:
            self.app.notify(reason, title=spec.description, severity="warning", timeout=4)
            return
        await self.app.run_action(spec.action, pane)

    def mark_stale(self, *names: str) -> None:
        """Data behind these panes changed: each reloads at its next tick while visible, or when
        shown (a burst of changes costs one reload; a reload in flight is never cancelled)."""
        self._stale.update(names)

    def _tick(self) -> None:
        if not self.db_ready:
            return
        pane = self.active_pane
        since = time.monotonic() - self._last_load.get(pane.id or "", 0.0)
        if pane.id in self._stale and since >= pane.min_reload_s:
            if self.load_pane(pane):
                self._stale.discard(pane.id or "")
            return
        if pane.poll_seconds and since >= pane.poll_seconds:
            self.load_pane(pane)
        pane.tick()

    def load_pane(self, pane: Pane, force: bool = False) -> bool:
        """Start loading `pane` (if visible and the database is up); False when nothing started."""
        if not self.db_ready or not pane.visible_now:
            return False

        async def load() -> None:
            payload = await pane.load()
            if pane.is_mounted:
                pane.show(payload)

        started = self.app.start_worker(load, name=f"load {pane.id}", group=f"load-{pane.id}",  # type: ignore[attr-defined]
                                        replace=force)
        if started is not None:
            self._last_load[pane.id or ""] = time.monotonic()
        return started is not None

    # -- events --------------------------------------------------------------------------------

    @on(msg.EventsArrived)
    def _events_arrived(self, message: msg.EventsArrived) -> None:
        if self.is_mounted:
            self.fold_events(message.events, message.replay)

    def fold_events(self, batch: list[Event], replay: bool) -> None:
        """A batch from the event feed: every pane folds it; panes it makes stale reload."""
        for event in batch:
            match event.data:
                case ev.RunStarted(config=config):
                    self.engine_control.run_started(config)
                case ev.RolledBack(operator="auto-rollback") if not replay:
                    self.app.notify(event.summary, title="Automatic rollback", severity="warning", timeout=8)
                case ev.EngineWarning(stage="rollout") if not replay:
                    self.app.notify(event.summary, title="Rollout gate", timeout=8)
                case ev.Alarm() as alarm if not replay and self.alarms is not None:
                    self.alarms.fired(alarm)
                case ev.AlarmAcknowledged() if not replay and self.alarms is not None:
                    self.alarms.refresh()
        errors = sum(1 for e in batch if e.kind is EventKind.ERROR)
        for pane in self.query(Pane):
            pane.on_events(batch, replay)
            if not replay and pane.is_stale_after(batch):
                self.mark_stale(pane.id or "")
        if errors and not replay:
            self._toast_errors(batch, errors)
        self.readiness = self.engine_control.readiness()
        self.update_status()

    def _toast_errors(self, batch: list[Event], count: int) -> None:
        self._errors_untoasted += count
        now = time.monotonic()
        if now - self._last_error_toast < ERROR_TOAST_GAP_S:
            return
        last = next(e for e in reversed(batch) if e.kind is EventKind.ERROR)
        more = self._errors_untoasted - 1
        message = last.summary + (f"\n(+{more} more: see 6 Errors)" if more > 0 else "")
        self.app.notify(message, title="Engine error", severity="error", timeout=6)
        self._last_error_toast, self._errors_untoasted = now, 0

    def add_problem(self, level: str, source: str, message: str) -> None:
        """A line in the Errors pane; one reported while the panes are still being mounted waits for them."""
        try:
            pane = self.pane(ErrorsPane)
        except NoMatches:
            self._early_problems.append((level, source, message))
            return
        pane.add(level, source, message)

    def show_read_only(self, badge: str, mode: str) -> None:
        """Read-only from now on (the server's roles allow this login none of the console's actions):
        every pane refuses its writes; the badge says whose word it is."""
        self.read_only = True
        self.status.set_part("mode", Text(badge, style="bold"))
        self.pane_bar.set_mode(mode)
        self.update_status()

    def show_alarm_count(self, count: int | None) -> None:
        """The open alarms' badge, seen from every pane: in the status line and on the Training pane's tab."""
        if not self.is_mounted:
            return
        if not count:
            self.status.set_part("alarms", "")
            self.pane_bar.set_badge("training", "")
            return
        style = f"bold {theme_color(self.app, 'error')}".strip()
        many = f"{count}+" if self.alarms is not None and count >= self.alarms.limit else str(count)
        self.status.set_part("alarms", Text(f"⚠ {many} open alarm{'s' if count != 1 else ''} (3 Training)",
                                            style=style))
        self.pane_bar.set_badge("training", f"⚠{many}")

    def update_status(self) -> None:
        if not self.is_mounted:
            return  # torn down (quitting): an engine finishing late has nothing to show
        state = self.training_state
        self.status.set_part("engine", self.engine_control.status_text(state.state, state.step))
        if self.live_model is not None:
            self.status.set_part("live", f"Live: {self.live_model.model_id}")

    # -- intents from the panes ----------------------------------------------------------------

    @on(msg.WindowChosen)
    def _window_chosen(self, message: msg.WindowChosen) -> None:
        if message.window_id != self.selected_window:
            self.selected_window = message.window_id
            self.mark_stale("outcomes", "inspector")

    @on(msg.WindowsSeen)
    def _windows_seen(self, message: msg.WindowsSeen) -> None:
        self.known_windows = message.window_ids

    @on(msg.ShowPane)
    def _show(self, message: msg.ShowPane) -> None:
        self.show_pane(message.name)

    @on(msg.ReloadRequested)
    def _reload(self, message: msg.ReloadRequested) -> None:
        pane = self.query_one(f"#{message.pane_id}", Pane)
        self.load_pane(pane, force=True)

    @on(msg.PromoteRequested)
    def _promote(self, message: msg.PromoteRequested) -> None:
        self.registry.promote(message.view, message.row)

    @on(msg.EvaluateRequested)
    def _evaluate(self, message: msg.EvaluateRequested) -> None:
        self.registry.evaluate(message.row, self.data.holdout_share,
                               message.live_storage_path)

    @on(msg.AcknowledgeRequested)
    def _acknowledge(self, message: msg.AcknowledgeRequested) -> None:
        if self.alarms is not None:
            self.alarms.acknowledge(message.alarm)

    @on(msg.RollbackRequested)
    def _rollback(self, message: msg.RollbackRequested) -> None:
        self.registry.rollback(message.view)

    @on(msg.LiveModelSeen)
    def _live(self, message: msg.LiveModelSeen) -> None:
        self.live_model = message.model
        self.update_status()

    @on(msg.BadgeChanged)
    def _badge(self, message: msg.BadgeChanged) -> None:
        self.pane_bar.set_badge(message.pane, message.text)

    def watch_engine(self) -> None:
        self.update_status()
        self.show_context()

    def show_context(self) -> None:
        """The header: the model the panes are about, its backend, the database."""
        try:
            bar = self.query_one(ContextBar)
        except NoMatches:  # not composed yet, or torn down
            return
        model, backend = self.engine_control.context()
        bar.show(model, backend, self.data.database_label)
        from ..data import training_key

        self.model_key = training_key(backend, model)

    def watch_model_key(self) -> None:
        """Another model: its alarms are counted, and the Training pane reads its health."""
        if self.db_ready and self.alarms is not None:
            self.alarms.refresh()
        self.mark_stale("training")

    # -- actions (scope "main") ----------------------------------------------------------------

    def action_show_pane(self, name: str) -> None:
        self.show_pane(name)

    def action_back(self) -> None:
        if self.active_pane.back():
            return
        while self.history:
            previous = self.history.pop()
            if previous != self.switcher.current:
                self.show_pane(previous, remember=False)
                return

    def action_refresh(self) -> None:
        self.load_pane(self.active_pane, force=True)

    def action_start_engine(self) -> None:
        self.engine_control.request("start_engine", self.db_ready)

    def action_toggle_pause(self) -> None:
        self.engine_control.request("toggle_pause", self.db_ready)

    def action_stop_engine(self) -> None:
        self.engine_control.request("stop_engine", self.db_ready)

    def refusal(self, action: str) -> str | None:
        return self.engine_control.refusal(action, self.db_ready)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = keys.spec_for_action("main", action)
        if spec is None or not spec.writes:
            return True
        return None if self.refusal(action) else True

    def action_explain(self, spec_id: str) -> None:
        """A disabled pane action's key was pressed: say why (only for the visible pane's keys)."""
        spec = keys.BY_ID.get(spec_id)
        if spec is None:
            return
        pane = self.active_pane
        if spec.scope != pane.scope:
            return
        reason = pane.why_refused(spec.action_name)
        if reason:
            self.app.notify(reason, title=spec.description, severity="warning", timeout=4)
