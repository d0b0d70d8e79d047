"""The operators' console: a Textual app over the headless core.

Principles (the app paints first and never blocks input):
- every database call runs in a named worker; polls never overlap themselves; only the visible pane
  polls; events are buffered and folded into the panes a few times a second;
- the engine and the demo's simulated market run on a background thread with their own event loop
  (`data.BackgroundLoop`), steered with thread-safe calls;
- every worker failure goes through one place (`on_worker_state_changed` -> `report_failure`):
  a database outage becomes the banner (cleared when the database answers again), anything else a
  toast and a line in the Errors pane, and a failed operator action also a dialog;
- `--read-only` disables every action that changes something; its key says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from . import bindings as keys
from .data import (
    COMMAND_TIMEOUT_S,
    BackgroundLoop,
    CheckpointRow,
    CheckpointsView,
    ConsoleData,
    DemoRunner,
    DemoSettings,
    EngineRunner,
    Event,
    EventKind,
    ProxyClock,
    RegistryError,
    RunInfo,
    engine_overrides_for_demo,
    is_outage,
)
from .dialogs.confirm import ConfirmDialog, ErrorDialog
from .dialogs.engine import EngineSettingsDialog
from .dialogs.promote import PromoteDialog
from .screens.help import HelpScreen
from .screens.main import MainScreen
from .themes import DEFAULT_THEME, load_themes, project_themes_dir, save_theme, saved_theme
from .widgets.errors import ErrorsPane
from .widgets.keybar import KeyBar
from .widgets.pane import Pane
from .widgets.training import TrainingPane

HEALTH_INTERVAL_S = 2.0
EVENT_FLUSH_S = 0.2  # events reach the screen at most 5 times a second
ERROR_TOAST_GAP_S = 3.0
STOP_WAIT_S = 20.0
REPEAT_QUIET_S = 30.0  # the same failure is toasted at most this often


class ConsoleApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Babylon Console"
    BINDINGS: ClassVar = keys.bindings("app") + keys.fallback_bindings("main")
    NOTIFICATION_TIMEOUT = 4

    def __init__(
        self,
        data: ConsoleData,
        *,
        read_only: bool = False,
        attach: bool = False,
        demo: DemoSettings | None = None,
        health_interval: float = HEALTH_INTERVAL_S,
        follow_events: bool = True,
        themes_dirs: Iterable[Any] | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.read_only = read_only or data.read_only
        data.read_only = self.read_only
        self.attach = attach
        self.demo_settings = demo
        self.health_interval = health_interval
        self.follow_events_enabled = follow_events
        # state shared by the panes
        self.db_ready = False
        self.outage: str | None = None
        self.selected_window: str | None = None
        self.known_windows: list[str] = []
        self.live_model: Any = None
        self.engine: EngineRunner | None = None
        self.engine_overrides: dict[str, Any] = {}
        self.attached_config: dict[str, Any] = {}
        self.remote_run: RunInfo | None = None  # the latest run in the database, while no engine runs here
        self.command_timeout_s = COMMAND_TIMEOUT_S
        self.demo: DemoRunner | None = None
        self.background: BackgroundLoop | None = None
        self.first_paint_at: float | None = None
        self._connected_once = False
        self._events: list[Event] = []
        self._last_event_id: int | None = None
        self._last_error_toast = 0.0
        self._errors_untoasted = 0
        self._quitting = False
        self._last_failure: str | None = None
        self._last_failure_at = 0.0
        # themes and keys
        data_dir = data.settings.data_dir
        for theme in load_themes(*(themes_dirs or (project_themes_dir(), data_dir / "themes"))):
            self.register_theme(theme)
        wanted = saved_theme(data_dir) or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        elif DEFAULT_THEME in self.available_themes:
            self.theme = DEFAULT_THEME
        self.keymap_overrides = keys.load_keymap(data_dir / "keymap.toml")

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Toasts show text as it is: messages carry error texts and ids, never markup."""
        super().notify(str(message), title=title, severity=severity, timeout=timeout, markup=markup)

    # -- screens -------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.mode_label)

    @property
    def mode_label(self) -> str:
        parts = []
        if self.demo_settings is not None:
            parts.append("demo")
        if self.attach:
            parts.append("attached")
        if self.read_only:
            parts.append("READ-ONLY")
        return " · ".join(parts)

    @property
    def main(self) -> MainScreen:
        return self.get_default_screen_instance()

    def get_default_screen_instance(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise RuntimeError("the main screen is not mounted")

    def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.set_interval(self.health_interval, self._health_tick)
        self.set_interval(EVENT_FLUSH_S, self._flush_events)
        self.set_interval(1.0, self._status_tick)

    def on_main_ready(self) -> None:
        """The main screen is composed: paint first, then connect in a worker."""
        self.call_after_refresh(self._painted)
        self.main.status.set_part("db", f"DB: connecting to {self.data.target_label}…")
        self._status_tick()
        if self.read_only:
            self.main.status.set_part("mode", Text("read-only: actions are refused", style="bold"))
        if self.demo_settings is not None:
            self.engine_overrides = engine_overrides_for_demo(self.demo_settings.seconds_per_window)
        self.start_worker(self._connect, name="connect", group="connect")

    def _painted(self) -> None:
        if self.first_paint_at is None:
            self.first_paint_at = time.perf_counter()
            self.on_first_paint()
            self.set_timer(3.0, _quiet_gc)

    def on_first_paint(self) -> None:
        """Hook: the first frame is on screen (benchmarks override it)."""

    def _theme_changed(self, theme: Any) -> None:
        save_theme(self.data.settings.data_dir, theme.name)
        with contextlib.suppress(Exception):
            for pane in self.main.query(Pane):
                pane.theme_changed()
            self.main.query_one(KeyBar).refresh_keys()
            self.main.mark_stale("outcomes", "inspector")

    # -- workers: one way to start them, one place for their failures ---------------------------

    def start_worker(self, work: Callable[[], Any], *, name: str, group: str, thread: bool = False,
                     replace: bool = False) -> Worker[Any] | None:
        """Run `work` in a named worker. A worker of the same group still running is left alone
        (polls never overlap) unless `replace`, which cancels it."""
        if not replace and any(w.group == group and not w.is_finished for w in self.workers):
            return None
        return self.run_worker(work, name=name, group=group, exclusive=replace, thread=thread, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is WorkerState.ERROR and worker.error is not None:
            self.report_failure(worker.name, worker.error, dialog=worker.name.startswith("action:"))

    def report_failure(self, what: str, exc: BaseException, dialog: bool = False) -> None:
        if is_outage(exc):
            self._set_outage(_one_line(exc))
            return
        message = f"{what.removeprefix('action: ')} failed: {_one_line(exc)}"
        self.log.error(message)
        with contextlib.suppress(Exception):
            self.main.pane(ErrorsPane).add("error", "console", message)
        if dialog:
            self.push_screen(ErrorDialog(f"{what.removeprefix('action: ').capitalize()} failed", str(exc)))
            return
        # the same failure again (a poll that keeps failing) goes to the Errors pane only
        now = time.monotonic()
        if self._last_failure == message and now - self._last_failure_at < REPEAT_QUIET_S:
            return
        self._last_failure, self._last_failure_at = message, now
        self.notify(message, title="Console", severity="error", timeout=6)

    # -- database: connect, health, outage banner ----------------------------------------------

    async def _connect(self) -> None:
        await self.data.connect()
        self._recovered()

    def _health_tick(self) -> None:
        if self._quitting or any(w.group == "connect" and not w.is_finished for w in self.workers):
            return
        self.start_worker(self._health, name="health check", group="health")

    async def _health(self) -> None:
        try:
            await self.data.ping()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._set_outage(_one_line(exc))
            return
        if self.outage is not None or not self.db_ready:
            self._recovered()
        if self.engine is None:  # an engine elsewhere: is it still beating? (it may die without a word)
            self.remote_run = await self.data.latest_run()

    def _set_outage(self, message: str) -> None:
        first = self.outage is None
        self.outage = message
        self.db_ready = False
        with contextlib.suppress(Exception):
            main = self.main
            main.banner.show_message(message)
            main.status.set_part("db", Text("DB: unreachable", style="bold"))
            if first:
                main.pane(ErrorsPane).add("error", "database", message)

    def _recovered(self) -> None:
        was_down = self.outage is not None
        self.outage = None
        self.db_ready = True
        main = self.main
        main.banner.clear()
        main.status.set_part("db", f"DB: {self.data.target_label}")
        if not self._connected_once:
            self._connected_once = True
            self._after_connect()
        elif was_down:
            self.notify("The database answers again.", title="Database", timeout=3)
        main.load_pane(main.active_pane, force=True)

    def _after_connect(self) -> None:
        if self.follow_events_enabled:
            self.start_worker(self._follow_events, name="follow events", group="events")
        if self.demo_settings is not None and not self.read_only:
            self._start_demo()
        elif self.demo_settings is not None:
            self.notify("Read-only: the demo watches; it does not start its market or engine.", timeout=5)

    # -- events --------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        if self._last_event_id is None:
            history = await self.data.training_history()
            recent = await self.data.recent_events(300)
            merged = sorted({e.id: e for e in [*history, *recent]}.values(), key=lambda e: e.id or 0)
            self._ingest(merged, replay=True)
            self._last_event_id = merged[-1].id if merged else await self.data.last_event_id()
        while True:
            try:
                async for batch in self.data.follow_events(self._last_event_id):
                    self._events.extend(batch)
                    self._last_event_id = batch[-1].id
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc):
                    self.report_failure("following events", exc)
                await asyncio.sleep(self.health_interval)

    def add_events(self, events: Iterable[Event]) -> None:
        """Queue events as if they had arrived from the database (tests and benchmarks)."""
        self._events.extend(events)

    def _flush_events(self) -> None:
        if not self._events:
            return
        batch, self._events = self._events, []
        self._ingest(batch, replay=False)

    def _ingest(self, batch: list[Event], replay: bool) -> None:
        main = self.main
        training = main.pane(TrainingPane)
        training.ingest(batch)
        errors = main.pane(ErrorsPane).ingest(batch)
        if errors and not replay:
            self._toast_errors(batch, errors)
        kinds = {e.kind for e in batch}
        for event in batch:
            if event.kind is EventKind.RUN_STARTED and self.attach:
                self.attached_config = event.payload.get("config") or {}
        if not replay:
            if kinds & {EventKind.CHECKPOINT_REGISTERED, EventKind.PROMOTED, EventKind.ROLLED_BACK}:
                main.mark_stale("checkpoints")
            if kinds & {EventKind.STEP_TRAINED, EventKind.WINDOW_JUDGED, EventKind.ITERATION_STARTED}:
                main.mark_stale("windows")
            judged = {e.payload.get("window_id") for e in batch if e.kind is EventKind.WINDOW_JUDGED}
            if self.selected_window in judged:
                main.mark_stale("inspector")
        training.redraw()
        self._status_tick()

    def _toast_errors(self, batch: list[Event], count: int) -> None:
        self._errors_untoasted += count
        now = time.monotonic()
        if now - self._last_error_toast < ERROR_TOAST_GAP_S:
            return
        last = next(e for e in reversed(batch) if e.kind is EventKind.ERROR)
        more = self._errors_untoasted - 1
        message = last.summary + (f"\n(+{more} more: see 6 Errors)" if more > 0 else "")
        self.notify(message, title="Engine error", severity="error", timeout=6)
        self._last_error_toast, self._errors_untoasted = now, 0

    # -- status bar ----------------------------------------------------------------------------

    def _status_tick(self) -> None:
        with contextlib.suppress(Exception):
            main = self.main
            state = main.pane(TrainingPane).state
            if self.engine is not None:
                text = f"Engine: {self.engine.state}"
                if state.step is not None:
                    text += f" · step {state.step}"
            elif (run := self.remote_run) is not None and run.liveness in ("stale", "dead"):
                text = (f"Engine: {run.liveness} · last heartbeat {run.heartbeat_age_s or 0:.0f} s ago"
                        + (" (attached)" if self.attach else " (another process)"))
            elif self.attach:
                text = f"Engine: {state.state or 'waiting for events'} (attached)"
            elif state.state in ("running", "paused"):
                text = f"Engine: {state.state} (another process)"
            else:
                text = "Engine: idle (E starts it)" if not self.read_only else "Engine: watching"
            main.status.set_part("engine", text)
            if self.live_model is not None:
                main.status.set_part("live", f"Live: {self.live_model.model_id}")

    # -- selection shared by the panes ---------------------------------------------------------

    def select_window(self, window_id: str) -> None:
        if window_id != self.selected_window:
            self.selected_window = window_id
            with contextlib.suppress(Exception):
                self.main.mark_stale("outcomes", "inspector")

    def readiness_criteria(self) -> tuple[Any, int]:
        from ..core.windows import ReadinessCriteria

        s = self.data.settings
        o = self.engine_overrides or self.attached_config or {}
        criteria = ReadinessCriteria(
            min_agents=o.get("min_agents") or s.min_agents,
            min_steps=o.get("min_steps") or s.min_steps,
            settle_seconds=o.get("settle_seconds", s.settle_seconds),
        )
        return criteria, int(o.get("lookback_hours") or s.lookback_hours)

    # -- actions: app scope --------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_main_pane(self, name: str) -> None:
        if self.screen is self.main:
            self.main.show_pane(name)

    async def action_quit(self) -> None:
        self.action_request_quit()

    def action_request_quit(self) -> None:
        if self._quitting:
            return
        if self.run_active():
            state = self.engine.state if self.engine else "running"
            self.push_screen(
                ConfirmDialog("Quit?", f"A training run is active (engine {state}). Quitting stops it after its "
                              "current stage.", "Stop and quit", danger=True),
                lambda ok: self._quit() if ok else None)
        else:
            self._quit()

    def run_active(self) -> bool:
        return self.engine is not None and self.engine.active

    def _quit(self) -> None:
        self._quitting = True
        self.run_worker(self._stop_and_exit(), name="shutdown", group="shutdown", exit_on_error=False)

    async def _stop_and_exit(self) -> None:
        if self.engine is not None and self.engine.active:
            self.notify("Stopping the engine after its current stage…", timeout=STOP_WAIT_S)
            self.engine.stop()
            deadline = time.monotonic() + STOP_WAIT_S
            while self.engine.active and time.monotonic() < deadline:  # noqa: ASYNC110 - state set by another thread
                await asyncio.sleep(0.1)
        await self._release()
        self.exit()

    async def _release(self) -> None:
        if self.demo is not None:
            self.demo.stop()
        if self.background is not None:
            background, self.background = self.background, None
            await asyncio.sleep(0.2)
            await asyncio.to_thread(background.close, 5.0)
        await self.data.close()

    async def on_unmount(self) -> None:
        if self.engine is not None and self.engine.active:
            self.engine.stop()
        with contextlib.suppress(Exception):
            await self._release()

    def action_explain(self, spec_id: str) -> None:
        spec = keys.BY_ID.get(spec_id)
        if spec is None or not isinstance(self.screen, MainScreen):
            return
        if spec.writes and self.read_only:
            reason = f"read-only console: {spec.description.lower()} is refused (started with --read-only)"
        else:
            reason = self.main.refusal(spec.action_name)
        if reason:
            self.notify(reason, title=spec.description, severity="warning", timeout=4)

    # -- command palette: the registry's commands that are valid now -----------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        try:
            main = self.main
        except RuntimeError:
            main = None
        for spec in keys.KEYS:
            if not spec.palette or spec.scope == "dialog" or main is None:
                continue
            target = self._command_target(spec, main)
            if target is None:
                continue
            title = f"Show {spec.description} pane" if spec.id.startswith("pane.") else spec.description
            yield SystemCommand(f"{title} ({keys.display_key(spec, self.keymap_overrides)})", spec.help or title,
                                partial(self.call_later, self.run_action, spec.action, target))
        yield SystemCommand("Theme", "Change the theme (remembered)", self.action_change_theme)
        yield SystemCommand("Screenshot", "Save an SVG screenshot of the console", self.action_screenshot)

    def _command_target(self, spec: keys.KeySpec, main: MainScreen) -> Any:
        if spec.scope == "app":
            return self if spec.action_name not in ("command_palette",) else None
        if spec.scope == "main":
            return main if main.check_action(spec.action_name, ()) else None
        pane = main.active_pane
        if spec.scope != pane.scope:
            return None
        return pane if pane.check_action(spec.action_name, ()) else None

    # -- operator actions ------------------------------------------------------------------------

    def _refuse(self, title: str, reason: str) -> None:
        self.notify(reason, title=title, severity="warning", timeout=4)

    def promote_flow(self, row: CheckpointRow) -> None:
        if self.read_only:
            return self._refuse("Promote", "read-only console: promote is refused (started with --read-only)")
        if row.refusal:
            return self._refuse("Promote", f"{row.model.model_id} cannot be promoted: {row.refusal}")
        live = self.live_model.model_id if self.live_model is not None else None
        model_id = row.model.model_id

        def chosen(share: float | None) -> None:
            if share is None:
                return
            if share >= 1.0:
                message = Text.assemble("Make ", (model_id, "bold"), " the live model for every agent?\n",
                                        f"The current live model ({live or 'none'}) is archived. "
                                        "The game serves the new one at once.")
            else:
                message = Text.assemble("Serve ", (model_id, "bold"), f" to {share:.0%} of agents (A/B) next to ",
                                        (live or "no live model", "bold"), "?")
            self.push_screen(ConfirmDialog("Confirm promotion", message, "Promote", danger=share >= 1.0),
                             lambda ok: self._promote(model_id, share) if ok else None)

        self.push_screen(PromoteDialog(model_id, live), chosen)
        return None

    def _promote(self, model_id: str, share: float) -> None:
        async def work() -> None:
            try:
                result = await self.data.promote(model_id, share)
            except RegistryError as exc:
                self._refuse("Promotion refused", str(exc))
                return
            self.notify(result.message, title="Promoted" if result.action == "promote" else "A/B rollout",
                        timeout=5)
            self.main.mark_stale("checkpoints")

        self.start_worker(work, name="action: promote", group="action")

    def rollback_flow(self, view: CheckpointsView | None) -> None:
        if self.read_only:
            return self._refuse("Roll back", "read-only console: roll back is refused (started with --read-only)")
        if view is not None and view.rollout is not None and view.rollout.candidate_model_id:
            what = (f"Cancel the A/B rollout of {view.rollout.candidate_model_id}? "
                    f"{view.live.model_id if view.live else 'No live model'} then serves every agent.")
        else:
            what = (f"Roll back from {view.live.model_id if view and view.live else 'the live model'} to the model "
                    "that was live before it?")

        def work_factory() -> Callable[[], Any]:
            async def work() -> None:
                try:
                    result = await self.data.rollback()
                except RegistryError as exc:
                    self._refuse("Rollback refused", str(exc))
                    return
                self.notify(result.message, title="Rolled back", timeout=5)
                self.main.mark_stale("checkpoints")

            return work

        self.push_screen(ConfirmDialog("Confirm rollback", what, "Roll back", danger=True),
                         lambda ok: self.start_worker(work_factory(), name="action: rollback", group="action")
                         if ok else None)
        return None

    # -- engine control ------------------------------------------------------------------------

    def engine_refusal(self, action: str) -> str | None:
        attached = "attached to a headless engine: engines are started where they run (babylon-console engine)"
        if action == "start_engine":
            if self.attach:
                return attached
            if not self.db_ready:
                return "the database is not connected"
            if self.engine is not None and self.engine.active:
                return f"the engine is already {self.engine.state}"
            return None
        if action in ("toggle_pause", "stop_engine"):
            if self.engine is None and (remote := self.remote_run) is not None and remote.active:
                if action == "toggle_pause" and remote.state not in ("running", "paused"):
                    return f"the engine is {remote.state}"
                return None  # an engine elsewhere: controlled through the database
            if self.attach:
                return "no engine is running (the headless engine this console watches is not running)"
            if self.engine is None or not self.engine.active:
                return "no engine is running in this console (E starts one)"
            if action == "toggle_pause" and self.engine.state not in ("running", "paused"):
                return f"the engine is {self.engine.state}"
        return None

    def start_engine_flow(self) -> None:
        reason = "read-only console: starting the engine is refused" if self.read_only else \
            self.engine_refusal("start_engine")
        if reason:
            return self._refuse("Start engine", reason)
        s = self.data.settings
        defaults: dict[str, Any] = {
            "judge": s.judge, "backend": s.backend, "iterations": 1, "windows_per_iteration": s.windows_per_iteration,
            "min_agents": s.min_agents, "min_steps": s.min_steps, "settle_seconds": s.settle_seconds,
            "lookback_hours": s.lookback_hours, "learning_rate": s.learning_rate,
        }
        defaults.update({k: v for k, v in self.engine_overrides.items() if k in defaults})
        self.push_screen(EngineSettingsDialog(defaults), lambda values: values and self.start_engine(values))
        return None

    def start_engine(self, overrides: dict[str, Any], clock: Any = None) -> EngineRunner:
        if self.background is None:
            self.background = BackgroundLoop()
        runner = EngineRunner(self.data, self.background, overrides, clock=clock)
        self.engine = runner
        self.engine_overrides = {**self.engine_overrides, **overrides}
        self.notify(f"Engine starting: {overrides.get('backend', 'offline')} backend, "
                    f"{overrides.get('judge', 'outcome')} judge.", timeout=3)

        async def work() -> None:
            try:
                summary = await runner.run()
            except Exception as exc:
                if type(exc).__name__ == "EngineLocked":
                    self._refuse("Engine not started", str(exc))
                    return
                raise
            finally:
                self._status_tick()
                self.refresh_bindings()
            detail = f": {summary.error}" if summary.error else ""
            self.notify(f"Engine {summary.state.value} after {summary.iterations} iteration(s){detail}",
                        title="Engine", severity="error" if summary.error else "information", timeout=5)

        self.start_worker(work, name="action: engine", group="engine", replace=True)
        self.refresh_bindings()
        return runner

    def _command_remote(self, command: str) -> None:
        """Send pause/resume/stop to the engine running elsewhere and report its answer."""
        run = self.remote_run
        assert run is not None

        async def work() -> None:
            acked = await self.data.send_command(run.run_id, command, self.command_timeout_s)  # type: ignore[arg-type]
            if acked is None:
                self.notify(f"Run {run.run_id} did not answer within {self.command_timeout_s:g} s; the {command} stays "
                            "queued and applies if it comes back.", title="No answer", severity="error", timeout=6)
            else:
                self.notify(f"{command} acknowledged by {run.run_id} ({acked.result}).", title="Engine", timeout=4)
            self.remote_run = await self.data.latest_run()
            self._status_tick()
            self.refresh_bindings()

        self.notify(f"Asking {run.run_id} on {run.host} to {command}...", timeout=2)
        self.start_worker(work, name=f"action: {command} remote engine", group="control")

    def toggle_pause(self) -> None:
        engine = self.engine
        reason = self.engine_refusal("toggle_pause")
        if reason:
            return self._refuse("Pause", reason)
        if engine is None:
            run = self.remote_run
            return self._command_remote("resume" if run is not None and run.state == "paused" else "pause")
        if engine.state == "paused":
            engine.resume()
            self.notify("Engine resumed.", timeout=2)
        else:
            engine.pause()
            self.notify("Engine pauses after its current stage.", timeout=3)
        self.set_timer(0.3, self.refresh_bindings)
        return None

    def stop_engine_flow(self) -> None:
        reason = self.engine_refusal("stop_engine")
        if reason:
            return self._refuse("Stop engine", reason)
        engine = self.engine

        def stop(ok: bool | None) -> None:
            if not ok:
                return
            if engine is None:
                self._command_remote("stop")
            else:
                engine.stop()
                self.notify("Engine stops after its current stage.", timeout=3)

        self.push_screen(ConfirmDialog("Stop the engine?", "The engine finishes its current stage, then stops. "
                                       "Windows not trained yet stay ready.", "Stop", danger=True), stop)
        return None

    # -- demo ----------------------------------------------------------------------------------

    def _start_demo(self) -> None:
        settings = self.demo_settings
        assert settings is not None
        if self.background is None:
            self.background = BackgroundLoop()
        loop = asyncio.get_running_loop()

        def from_thread(fn: Callable[..., Any], *args: Any) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(fn, *args)

        def progress(done: int, total: int) -> None:
            from_thread(self.main.status.set_part, "market", f"Seeding history: {done}/{total} windows")

        def on_window(window_id: str, n: int) -> None:
            from_thread(self.main.status.set_part, "market", f"Market: window {window_id} written ({n} agents)")
            from_thread(self.main.mark_stale, "windows")

        def on_warning(message: str) -> None:
            from_thread(self.report_failure, "live market", RuntimeError(message))

        demo = DemoRunner(self.data, self.background, settings, progress=progress, on_window=on_window,
                          on_warning=on_warning)
        self.demo = demo
        self.main.status.set_part("market", "Market: starting…")

        async def market() -> None:
            await demo.run()

        async def engine_when_ready() -> None:
            while demo.market is None:  # set by the background thread
                if not any(w.group == "demo" and not w.is_finished for w in self.workers):
                    return  # the market failed before it started (reported by its worker)
                await asyncio.sleep(0.2)
            self.main.status.set_part("market", "Market: live, a window every "
                                      f"{settings.seconds_per_window:g} s")
            self.main.mark_stale("windows")
            if not self.run_active():
                self.start_engine(engine_overrides_for_demo(settings.seconds_per_window), clock=ProxyClock(demo.clock))

        self.start_worker(market, name="demo market", group="demo")
        self.start_worker(engine_when_ready, name="demo engine", group="demo-engine")


def _quiet_gc() -> None:
    """Keep full garbage collections short: everything alive after start-up (modules, widgets,
    styles) moves to the permanent generation, which the collector no longer scans. Otherwise
    each full collection walks every Textual and pydantic object and stalls input for ~100 ms.
    Young collections are made rarer too (a frame allocates thousands of short-lived objects)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, max(gen2, 20))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
