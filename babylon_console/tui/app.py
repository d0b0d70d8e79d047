"""The operators' console: a Textual app over the headless core, as a router.

The app composes the screens, applies themes and the keymap, offers the palette, owns the
database connection's health (the outage banner) and the one handler of failed work. Everything
else lives elsewhere: shared state and intents on the main screen (`screens/main.py`), operator
flows in controllers (`controllers/`), reads and actions in the data layer (`data.py`).

Principles (the app paints first and never blocks input):
- every database call runs in a named worker; polls never overlap themselves; only the visible pane
  polls; events are buffered and folded into the panes a few times a second;
- the engine and the demo's simulated market run on a background thread with their own event loop
  (`runners.background.BackgroundLoop`); they reach the UI only by posting messages;
- every failure of background work reaches `report_failure`: a database outage becomes the banner
  (cleared when the database answers again), a refusal a warning toast, anything else a toast and a
  line in the Errors pane, and a failed operator action an error dialog;
- `--read-only` disables every action that changes something; its key says why. A login the
  server's roles let do none of the console's actions runs read-only by itself, its badge naming the
  role; an action a role may not do is refused naming the group that may.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from . import bindings as keys
from . import messages as msg
from . import palette
from .controllers.alarms import AlarmWatch
from .controllers.connection import DatabaseHealth
from .controllers.demo import DemoMarket
from .controllers.engine import EngineControl
from .controllers.feed import FLUSH_S, EventFeed
from .controllers.registry import RegistryActions
from .data import (
    ConsoleData,
    ConsoleError,
    ErrorKind,
    Event,
    as_console_error,
    one_line,
)
from .dialogs.confirm import ConfirmDialog, ErrorDialog
from .preferences import load_preferences, remember_theme
from .runners.demo import DemoSettings, engine_overrides_for_demo
from .screens.help import HelpScreen
from .screens.main import MainScreen
from .widgets.keybar import KeyBar
from .widgets.pane import Pane

HEALTH_INTERVAL_S = 2.0
REPEAT_QUIET_S = 30.0  # the same failure is toasted at most this often


class ConsoleApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Babylon Console"
    BINDINGS: ClassVar = keys.bindings("app") + keys.fallback_bindings("main")
    NOTIFICATION_TIMEOUT = 4

    def __init__(self, data: ConsoleData, *, read_only: bool = False, attach: bool = False,
                 demo: DemoSettings | None = None, health_interval: float = HEALTH_INTERVAL_S,
                 follow_events: bool = True, themes_dirs: Iterable[Any] | None = None) -> None:
        super().__init__()
        self.data = data
        self.read_only = read_only or data.read_only
        data.read_only = self.read_only
        self.attach = attach
        self.demo_settings = demo
        self.health_interval = health_interval
        self.follow_events_enabled = follow_events
        self.first_paint_at: float | None = None
        self._quitting = False
        self._action_workers: set[Worker[Any]] = set()
        self._early_problems: list[tuple[str, str, str]] = []  # reported before the main screen existed
        self._last_failure: str | None = None
        self._last_failure_at = 0.0
        # controllers: the operator flows
        self.engine_control = EngineControl(self, data, attach=attach, publish=self._publish_engine)
        self.registry = RegistryActions(self, data, live_id=self._live_id,
                                        changed=lambda: self.main.mark_stale("checkpoints"))
        self.feed = EventFeed(self, data, self._deliver_events, retry_s=health_interval)
        self.alarms = AlarmWatch(self, data, model_key=lambda: self.main.model_key, show_count=self._show_alarms,
                                 changed=lambda: self.main.mark_stale("training"))
        self.health = DatabaseHealth(self, data, self._main_or_none, self._after_connect, self._after_ping)
        self.demo = DemoMarket(self, data, demo, self.engine_control) if demo is not None else None
        # preferences: themes, keymap, the remembered theme (problems are shown once the screen is up)
        loaded = load_preferences(data.preferences_dir, themes_dirs)
        for theme in loaded.themes:
            self.register_theme(theme)
        if loaded.preferences.theme in self.available_themes:
            self.theme = loaded.preferences.theme
        self.keymap_overrides = loaded.preferences.keymap
        self.preference_problems = loaded.problems

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Toasts show text as it is: messages carry error texts and ids, never markup."""
        super().notify(str(message), title=title, severity=severity, timeout=timeout, markup=markup)

    def refuse(self, title: str, reason: str) -> None:
        self.notify(reason, title=title, severity="warning", timeout=4)

    # -- what tests and benchmarks read (the state itself lives in the controllers) -------------

    @property
    def engine(self) -> Any:
        return self.engine_control.runner

    @engine.setter
    def engine(self, runner: Any) -> None:
        self.engine_control.runner = runner

    @property
    def remote_run(self) -> Any:
        return self.engine_control.remote_run

    @property
    def command_timeout_s(self) -> float:
        return self.engine_control.command_timeout_s

    @command_timeout_s.setter
    def command_timeout_s(self, value: float) -> None:
        self.engine_control.command_timeout_s = value

    def readiness_criteria(self) -> tuple[Any, int]:
        readiness = self.engine_control.readiness()
        return readiness.criteria, readiness.lookback_hours

    def add_events(self, events: Iterable[Event]) -> None:
        """Queue events as if they had arrived from the database (tests and benchmarks)."""
        self.feed.add(events)

    def run_active(self) -> bool:
        return self.engine_control.active

    # -- screens -------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.data, self.engine_control, self.registry, mode=self.mode_label,
                          read_only=self.read_only, alarms=self.alarms)

    @property
    def mode_label(self) -> str:
        parts = [name for name, on_ in (("demo", self.demo is not None), ("attached", self.attach),
                                        ("READ-ONLY", self.read_only)) if on_]
        return " · ".join(parts)

    @property
    def main(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise RuntimeError("the main screen is not mounted")

    def _main_or_none(self) -> MainScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.set_interval(self.health_interval, self._health_tick)
        self.set_interval(FLUSH_S, self.feed.flush)
        self.set_interval(1.0, self._engine_tick)

    @on(msg.ScreenReady)
    def _main_ready(self) -> None:
        """The main screen is composed: paint first, then connect in a worker."""
        self.call_after_refresh(self._painted)
        main = self.main
        main.status.set_part("db", f"DB: connecting to {self.data.target_label}…")
        main.update_status()
        for problem in self.preference_problems:
            self.report_problem("preferences", str(problem), level="warning")
        for level, source, message in self._early_problems:
            main.add_problem(level, source, message)
        self._early_problems.clear()
        if self.demo_settings is not None:
            self.engine_control.overrides = engine_overrides_for_demo(self.demo_settings.seconds_per_window)
            main.readiness = self.engine_control.readiness()

    def _painted(self) -> None:
        if self.first_paint_at is None:
            self.first_paint_at = time.perf_counter()
            # The CLI kept the collector off through start-up (cli.main): what start-up created stays
            # alive, so it moves to the permanent generation rather than being scanned now.
            gc.freeze()
            gc.enable()
            self.on_first_paint()
            self.health.connect()  # after the frame: connecting imports asyncpg and the database layer
            self.set_timer(3.0, _quiet_gc)

    def on_first_paint(self) -> None:
        """Hook: the first frame is on screen (benchmarks override it)."""

    def _theme_changed(self, theme: Any) -> None:
        for problem in remember_theme(self.data.preferences_dir, theme.name):
            self.report_problem("preferences", str(problem), level="warning")
        main = self._main_or_none()
        if main is None or not main.is_mounted:
            return
        for pane in main.query(Pane):
            pane.theme_changed()
        main.query_one(KeyBar).refresh_keys()
        main.mark_stale("outcomes", "inspector")

    # -- workers: one way to start them, one place for their failures ---------------------------

    def start_worker(self, work: Callable[[], Any], *, name: str, group: str, thread: bool = False,
                     replace: bool = False, action: bool = False) -> Worker[Any] | None:
        """Run `work` in a named worker. A worker of the same group still running is left alone
        (polls never overlap) unless `replace`, which cancels it. `action`: an operator's action,
        whose failure is shown as a dialog."""
        if not replace and any(w.group == group and not w.is_finished for w in self.workers):
            return None
        worker = self.run_worker(work, name=name, group=group, exclusive=replace, thread=thread, exit_on_error=False)
        if action:
            self._action_workers.add(worker)
        return worker

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is WorkerState.ERROR and worker.error is not None:
            self.report_failure(worker.name, worker.error, dialog=worker in self._action_workers)
        if worker.is_finished:
            self._action_workers.discard(worker)

    @on(msg.ProblemReported)
    def _problem(self, message: msg.ProblemReported) -> None:
        self.report_problem(message.source, message.text, level=message.level)

    @on(msg.WorkFailed)
    def _work_failed(self, message: msg.WorkFailed) -> None:
        self.report_failure(message.what, message.error, dialog=message.action)

    def report_failure(self, what: str, exc: BaseException, dialog: bool = False) -> None:
        error = as_console_error(exc)
        if error.kind is ErrorKind.OUTAGE:
            self.health.down(one_line(exc))  # the banner quotes the library as it said it
            return
        if error.kind is ErrorKind.REFUSED:
            self.refuse(what.capitalize(), error.message)
            self.follow_the_server()  # a refusal by the server's roles: its privileges were read again
            return
        # a library's own words, as it said them (the mapped error's text adds its type for logs)
        text = error.message if isinstance(exc, ConsoleError) else (str(exc) or type(exc).__name__)
        message = f"{what} failed: {text.strip().splitlines()[0] if text.strip() else text}"
        self.log.error(message)
        self.report_problem("console", message, toast=False)
        if dialog:
            self.push_screen(ErrorDialog(f"{what.capitalize()} failed", text))
            return
        # the same failure again (a poll that keeps failing) goes to the Errors pane only
        now = time.monotonic()
        if self._last_failure == message and now - self._last_failure_at < REPEAT_QUIET_S:
            return
        self._last_failure, self._last_failure_at = message, now
        self.notify(message, title="Console", severity="error", timeout=6)

    def report_problem(self, source: str, message: str, level: str = "error", toast: bool = True) -> None:
        """A line in the Errors pane (and a toast): problems that are not failed work."""
        main = self._main_or_none()
        if main is None:
            self._early_problems.append((level, source, message))  # shown once the screen is up
        else:
            main.add_problem(level, source, message)
        if toast:
            self.notify(message, title=source.capitalize(), severity="warning" if level == "warning" else "error",
                        timeout=6)

    @property
    def db_ready(self) -> bool:
        return self.health.ready

    @property
    def outage(self) -> str | None:
        return self.health.outage

    def _health_tick(self) -> None:
        if not self._quitting:
            self.health.tick()

    async def _after_ping(self) -> None:
        # the model's newest run, wherever it runs: is it still beating, has a newer one started elsewhere?
        await self.engine_control.poll_run()

    def follow_the_server(self) -> None:
        """The server's word on this login (read at connect, and again after it refused an action): one
        that may do none of the console's actions runs it read-only, with a badge naming its role."""
        badge = self.data.role_badge
        if badge is None:
            return
        self.read_only = self.data.read_only = True
        main = self._main_or_none()
        if main is not None and main.is_mounted:
            main.show_read_only(badge, self.mode_label)
        self.refresh_bindings()

    def _after_connect(self) -> None:
        self.follow_the_server()  # before the demo starts its market: a read-only console only watches
        self.alarms.refresh()  # the open alarms' badge, seen from every pane
        if self.follow_events_enabled:
            self.feed.start()
        if self.demo is not None and not self.read_only:
            self.demo.start()
        elif self.demo is not None:
            self.notify("Read-only: the demo watches; it does not start its market or engine.", timeout=5)

    # -- state from the controllers to the screen ----------------------------------------------

    def _deliver_events(self, batch: list[Event], replay: bool) -> None:
        """The event feed's batches go to the main screen as a message (it folds them into its panes)."""
        main = self._main_or_none()
        if main is not None:
            main.post_message(msg.EventsArrived(batch, replay))

    def _publish_engine(self, view: Any) -> None:
        main = self._main_or_none()
        if main is not None:
            main.engine = view
            main.readiness = self.engine_control.readiness()

    def _show_alarms(self, count: int | None) -> None:
        main = self._main_or_none()
        if main is not None:
            main.show_alarm_count(count)

    def _live_id(self) -> str | None:
        main = self._main_or_none()
        live = main.live_model if main is not None else None
        return live.model_id if live is not None else None

    def _engine_tick(self) -> None:
        """The embedded engine's stage changes without a state change: publish what it is now
        (the screen's reactive redraws only when the view differs)."""
        if self.engine_control.runner is not None:
            self._publish_engine(self.engine_control.view())

    @on(msg.EngineChanged)
    def _engine_changed(self) -> None:
        self.engine_control.changed()

    @on(msg.StatusChanged)
    def _status_changed(self, message: msg.StatusChanged) -> None:
        """Posted to the app from background threads (the market): the main screen shows it."""
        main = self._main_or_none()
        if main is not None and main.is_mounted:
            main.status.set_part(message.part, message.text)

    @on(msg.DataChanged)
    def _data_changed(self, message: msg.DataChanged) -> None:
        main = self._main_or_none()
        if main is not None:
            main.mark_stale(*message.panes)

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

    def _quit(self) -> None:
        self._quitting = True
        self.run_worker(self._stop_and_exit(), name="shutdown", group="shutdown", exit_on_error=False)

    async def _stop_and_exit(self) -> None:
        await self.engine_control.stop_and_wait()
        await self._release()
        self.exit()

    async def _release(self) -> None:
        if self.demo is not None:
            self.demo.stop()
        await self.engine_control.release()
        await self.data.close()

    async def on_unmount(self) -> None:
        if self.engine is not None and self.engine.active:
            self.engine.stop()
        await self._release()

    def action_explain(self, spec_id: str) -> None:
        spec = keys.BY_ID.get(spec_id)
        if spec is None or not isinstance(self.screen, MainScreen):
            return
        reason = self.main.refusal(spec.action_name)
        if reason:
            self.notify(reason, title=spec.description, severity="warning", timeout=4)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from palette.commands(self, self._main_or_none(), self.keymap_overrides)


def _quiet_gc() -> None:
    """Keep full garbage collections short: everything alive after start-up (modules, widgets,
    styles) moves to the permanent generation, which the collector no longer scans. Otherwise
    each full collection walks every Textual and pydantic object and stalls input for ~100 ms.
    Young collections are made rarer too (a frame allocates thousands of short-lived objects)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, max(gen2, 20))
