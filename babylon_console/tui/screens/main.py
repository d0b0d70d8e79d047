"""The main screen: pane bar, outage banner, the panes, status bar and footer.

It owns polling: every pane is refreshed on its own interval, only while visible, by a named
worker that never overlaps itself (a poll that is still running is not started again).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import ContentSwitcher

from .. import bindings as keys
from ..widgets.bars import Banner, PaneBar, StatusBar
from ..widgets.checkpoints import CheckpointsPane
from ..widgets.errors import ErrorsPane
from ..widgets.inspector import InspectorPane
from ..widgets.keybar import KeyBar
from ..widgets.outcomes import OutcomesPane
from ..widgets.pane import Pane
from ..widgets.training import TrainingPane
from ..widgets.windows import WindowsPane

if TYPE_CHECKING:
    from ..app import ConsoleApp

POLL_TICK_S = 0.5


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#windows-table"
    BINDINGS: ClassVar = keys.bindings("main") + keys.fallback_bindings(
        "windows", "outcomes", "training", "checkpoints", "inspector", "errors")

    def __init__(self, mode: str = "") -> None:
        super().__init__()
        self.mode = mode
        self.history: list[str] = []
        self._last_load: dict[str, float] = {}
        self._stale: set[str] = set()

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield PaneBar(self.mode, id="pane-bar")
        yield Banner(id="banner")
        with ContentSwitcher(initial="windows", id="panes"):
            yield WindowsPane(id="windows")
            yield OutcomesPane(id="outcomes")
            yield TrainingPane(id="training")
            yield CheckpointsPane(id="checkpoints")
            yield InspectorPane(id="inspector")
            yield ErrorsPane(id="errors")
        yield StatusBar(id="status-bar")
        yield KeyBar(id="key-bar")

    def on_mount(self) -> None:
        self.query_one(Banner).display = False
        self.set_interval(POLL_TICK_S, self._tick)
        self.call_after_refresh(self.active_pane.on_show_pane)
        self.console.on_main_ready()

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
        return self.is_mounted and self.switcher.current == pane.id and self.app.screen is self

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
        self.app.refresh_bindings()
        # Paint the pane as it was first, then refresh it: the key is answered in the next frame.
        self.call_after_refresh(pane.on_show_pane)
        self.call_after_refresh(self.load_pane, pane, True)

    def mark_stale(self, *names: str) -> None:
        """Data behind these panes changed: each reloads at its next tick while visible, or when
        shown (a burst of changes costs one reload; a reload in flight is never cancelled)."""
        self._stale.update(names)

    def _tick(self) -> None:
        if not self.console.db_ready:
            return
        pane = self.active_pane
        since = time.monotonic() - self._last_load.get(pane.id or "", 0.0)
        if pane.id in self._stale and since >= pane.min_reload_s:
            if self.load_pane(pane):
                self._stale.discard(pane.id or "")
            return
        if pane.poll_seconds and since >= pane.poll_seconds:
            self.load_pane(pane)
        if isinstance(pane, TrainingPane):
            pane.redraw()

    def load_pane(self, pane: Pane, force: bool = False) -> bool:
        """Start loading `pane` (if visible and the database is up); False when nothing started."""
        if not self.console.db_ready or not self.is_visible(pane):
            return False

        async def load() -> None:
            payload = await pane.load()
            if pane.is_mounted:
                pane.show(payload)

        started = self.console.start_worker(load, name=f"load {pane.id}", group=f"load-{pane.id}", replace=force)
        if started is not None:
            self._last_load[pane.id or ""] = time.monotonic()
        return started is not None

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
        self.console.start_engine_flow()

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()

    def action_stop_engine(self) -> None:
        self.console.stop_engine_flow()

    def refusal(self, action: str) -> str | None:
        return self.console.engine_refusal(action)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = keys.spec_for_action("main", action)
        if spec is None or not spec.writes:
            return True
        return None if self.console.read_only or self.refusal(action) else True

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
