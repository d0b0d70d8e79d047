"""Engine control: the engine this console runs, or one elsewhere steered through the database.

One rule (`refusal`) says whether start, pause/resume or stop may run now; the screen's
`check_action` and the flows here both read it. The embedded engine runs on a background loop and
reports its state changes by posting `EngineChanged` (never by touching widgets).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import bindings as keys
from .. import refusals
from ..data import COMMAND_TIMEOUT_S, ConsoleData, Refused
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.engine import EngineSettingsDialog
from ..messages import EngineChanged
from ..runners.background import BackgroundLoop
from ..runners.engine import EngineOverrides, EngineRunner
from ..state import EngineView, Readiness
from .host import Host

if TYPE_CHECKING:
    from ..data import RunRow

STOP_WAIT_S = 20.0


class EngineControl:
    def __init__(self, host: Host, data: ConsoleData, *, attach: bool,
                 publish: Callable[[EngineView], None]) -> None:
        self.host = host
        self.data = data
        self.attach = attach
        self.publish = publish
        self.runner: EngineRunner | None = None
        self.background: BackgroundLoop | None = None
        self.remote_run: RunRow | None = None  # the latest run in the database
        self.overrides = EngineOverrides()
        self.attached_config: dict[str, Any] = {}
        self.command_timeout_s = COMMAND_TIMEOUT_S

    # -- state ---------------------------------------------------------------------------------

    def view(self) -> EngineView:
        r = self.runner
        if r is not None and self.follows_runner():
            return EngineView(here=True, state=r.state, run_id=getattr(r, "run_id", None),
                              stage=getattr(r, "stage", None), error=getattr(r, "error", None), attach=self.attach)
        return EngineView(run=self.remote_run, attach=self.attach)

    def follows_runner(self) -> bool:
        """Whether the console shows its own engine: while it runs, or while it is still the model's
        newest run. Otherwise the newest run of the model elsewhere (a console whose engine stopped
        never shows that run over another that trains), and never an engine refused by the lock."""
        r = self.runner
        if r is None or getattr(r, "locked", False):
            return False
        if r.active:
            return True
        run = self.remote_run
        return run is None or run.run_id == getattr(r, "run_id", None)

    def context(self) -> tuple[str, str]:
        """The model this console is about and its backend (the followed run's, else the configured one)."""
        s = self.data.settings
        run = self.remote_run
        if self.runner is not None and self.follows_runner():
            return s.model_name, str(self.runner.overrides.backend or s.backend)
        if run is not None:
            return run.model_name, run.backend
        return s.model_name, str(self.overrides.backend or s.backend)

    def changed(self) -> None:
        """Publish the engine's state to the screen and refresh which keys are enabled."""
        self.publish(self.view())
        self.host.refresh_bindings()

    @property
    def active(self) -> bool:
        return self.runner is not None and self.runner.active

    async def poll_run(self) -> None:
        """Read the latest run (an engine elsewhere may die without a word)."""
        run = await self.data.latest_run()
        if run != self.remote_run:
            self.remote_run = run
            if self.attach and run is not None and run.active:
                self.attached_config = run.config
            self.changed()

    def run_started(self, config: dict[str, Any]) -> None:
        """A `run_started` event: an attached console reads the headless engine's criteria from it."""
        if self.attach:
            self.attached_config = config

    def readiness(self) -> Readiness:
        from ..data import ReadinessCriteria

        s = self.data.settings
        o = self.overrides.given() or self.attached_config or {}
        criteria = ReadinessCriteria(
            min_agents=o.get("min_agents") or s.min_agents,
            min_steps=o.get("min_steps") or s.min_steps,
            settle_seconds=o.get("settle_seconds", s.settle_seconds),
            holdout_share=self.data.holdout_share,  # the database's record, never a setting or override
        )
        return Readiness(criteria, int(o.get("lookback_hours") or s.lookback_hours))

    def status_text(self, events_state: str | None, events_step: int | None) -> str:
        """The status bar's engine part; `events_*`: what the event feed last said."""
        if self.runner is not None and self.follows_runner():
            text = f"Engine: {self.runner.state}"
            return text + (f" · step {events_step}" if events_step is not None else "")
        run = self.remote_run
        where = " (attached)" if self.attach else " (another process)"
        if run is not None and run.liveness in ("stale", "dead"):
            return f"Engine: {run.liveness} · last heartbeat {run.heartbeat_age_s or 0:.0f} s ago{where}"
        if run is not None and run.active:  # the run's own row, never events of another run
            return f"Engine: {run.state} · step {run.step}{where}"
        if self.attach:
            return f"Engine: {events_state or 'waiting for events'} (attached)"
        return "Engine: idle (E starts it)" if not self.host.read_only else "Engine: watching"

    # -- the one refusal rule ------------------------------------------------------------------

    def refusal(self, action: str, db_ready: bool) -> str | None:
        spec = keys.spec_for_action("main", action)
        if spec is not None and spec.writes:
            role = self.data.role_refusal(action)
            # the console's own engine pauses and stops in-process: no engine command is written
            if role and (self.host.read_only or action == "start_engine" or not self.view().here):
                return role
            if self.host.read_only:
                return refusals.read_only(spec.description)
        return refusals.engine(action, self.view(), db_ready)

    # -- flows ---------------------------------------------------------------------------------

    def request(self, action: str, db_ready: bool) -> None:
        reason = self.refusal(action, db_ready)
        if reason:
            spec = keys.spec_for_action("main", action)
            self.host.refuse(spec.description if spec else "Engine", reason)
            return
        match action:
            case "start_engine":
                self._ask_settings()
            case "toggle_pause":
                self._toggle_pause()
            case "stop_engine":
                self._confirm_stop()

    def _ask_settings(self) -> None:
        s = self.data.settings
        defaults = EngineOverrides(
            judge=s.judge, backend=s.backend, iterations=1, windows_per_iteration=s.windows_per_iteration,
            min_agents=s.min_agents, min_steps=s.min_steps, settle_seconds=s.settle_seconds,
            lookback_hours=s.lookback_hours, learning_rate=s.learning_rate,
        ).merged(self.overrides)
        self.host.push_screen(EngineSettingsDialog(defaults), lambda values: values and self.start(values))

    def ensure_background(self) -> BackgroundLoop:
        if self.background is None:
            self.background = BackgroundLoop()
        return self.background

    def start(self, overrides: EngineOverrides, clock: Any = None) -> EngineRunner:
        host = self.host
        runner = EngineRunner(self.data, self.ensure_background(), overrides, clock=clock,
                              on_change=lambda: host.post_message(EngineChanged()))
        self.runner = runner
        self.overrides = self.overrides.merged(overrides)
        host.notify(f"Engine starting: {overrides.backend or 'offline'} backend, "
                    f"{overrides.judge or 'outcome'} judge.", timeout=3)

        async def work() -> None:
            try:
                summary = await runner.run()
            except Refused as exc:
                if runner.locked:  # another engine already trains this model: follow it instead
                    await self.poll_run()
                    self._following(exc)
                else:
                    host.refuse("Engine not started", str(exc))
                return
            finally:
                self.changed()
            detail = f": {summary.error}" if summary.error else ""
            host.notify(f"Engine {summary.state.value} after {summary.iterations} iteration(s){detail}",
                        title="Engine", severity="error" if summary.error else "information", timeout=5)

        host.start_worker(work, name="engine", group="engine", replace=True, action=True)
        self.changed()
        return runner

    def _following(self, refusal: BaseException) -> None:
        run = self.remote_run
        where = f"run {run.run_id} (pid {run.pid} on {run.host})" if run is not None and run.active else str(refusal)
        self.host.notify(f"An engine already trains {self.data.settings.model_name}: {where}. This console follows "
                         "it instead of starting another.", title="Engine", timeout=8)

    def _toggle_pause(self) -> None:
        runner = self.runner if self.follows_runner() else None
        if runner is None:
            run = self.remote_run
            self._command_remote("resume" if run is not None and run.state == "paused" else "pause")
            return
        if runner.state == "paused":
            runner.resume()
            self.host.notify("Engine resumed.", timeout=2)
        else:
            runner.pause()
            self.host.notify("Engine pauses after its current stage.", timeout=3)
        self.host.set_timer(0.3, self.changed)

    def _confirm_stop(self) -> None:
        runner = self.runner if self.follows_runner() else None

        def stop(ok: bool | None) -> None:
            if not ok:
                return
            if runner is None:
                self._command_remote("stop")
            else:
                runner.stop()
                self.host.notify("Engine stops after its current stage.", timeout=3)

        self.host.push_screen(ConfirmDialog("Stop the engine?", "The engine finishes its current stage, then stops. "
                                            "Windows not trained yet stay ready.", "Stop", danger=True), stop)

    def _command_remote(self, command: str) -> None:
        """Send pause/resume/stop to the engine running elsewhere and report its answer."""
        run = self.remote_run
        assert run is not None
        host = self.host

        async def work() -> None:
            acked = await self.data.send_command(run.run_id, command, self.command_timeout_s)  # type: ignore[arg-type]
            if acked is None:
                host.notify(f"Run {run.run_id} did not answer within {self.command_timeout_s:g} s; the {command} "
                            "stays queued and applies if it comes back.", title="No answer", severity="error",
                            timeout=6)
            else:
                host.notify(f"{command} acknowledged by {run.run_id} ({acked.result}).", title="Engine", timeout=4)
            self.remote_run = await self.data.latest_run()
            self.changed()

        host.notify(f"Asking {run.run_id} on {run.host} to {command}...", timeout=2)
        host.start_worker(work, name=f"{command} remote engine", group="control", action=True)

    # -- shutdown ------------------------------------------------------------------------------

    async def stop_and_wait(self, wait_s: float = STOP_WAIT_S) -> None:
        runner = self.runner
        if runner is None or not runner.active:
            return
        self.host.notify("Stopping the engine after its current stage…", timeout=wait_s)
        runner.stop()
        deadline = time.monotonic() + wait_s
        while runner.active and time.monotonic() < deadline:  # noqa: ASYNC110 - state set by another thread
            await asyncio.sleep(0.1)

    async def release(self) -> None:
        if self.background is not None:
            background, self.background = self.background, None
            await asyncio.sleep(0.2)
            await asyncio.to_thread(background.close, 5.0)
