"""The base of every pane: a scope in the key registry, a loader, guarded actions, intents.

A pane receives what it shows: its data source at construction and the screen's shared state
(selected window, read-only, ...) through reactives bound with `data_bind`. It changes nothing
outside itself: it posts intents (`messages`) that the screen handles.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, OptionList
from textual.worker import Worker, WorkerState

from .. import bindings as keys
from .. import refusals
from ..data import ConsoleData, Event, EventKind
from ..messages import ReloadRequested, WorkFailed


class Pane(Vertical):
    """One pane of the main screen.

    - `load()` fetches what the pane shows (awaited in a named worker, never overlapping itself);
      `show(payload)` puts it on screen. The main screen calls them only while the pane is visible,
      every `poll_seconds` (0: only when asked).
    - `stale_on`: the event kinds after which the pane reloads (`is_stale_after` may refine it);
      `on_events` folds events into panes that draw them.
    - `refusal(action)` says why an action cannot run now (None: it can). A refused action is
      disabled (dimmed in the footer, left out of the palette); its key then shows the reason.
    - `back()` closes what the pane has open (filter, search); False when there was nothing.
    - Its keys (its scope in the registry) act only while it is shown: hidden, every action of the
      pane is disabled and left out of the key bar (`check_action` returns False), so a key never
      reaches a pane that is not on screen, wherever the focus was left.
    - `j`/`k`, `g`/`G`, `home`/`end` move the cursor of its focused table or list (scope "table").
    """

    BINDINGS: ClassVar = keys.bindings("table")  # merged into every pane's own bindings
    scope: ClassVar[str] = ""
    title: ClassVar[str] = ""
    poll_seconds: ClassVar[float] = 0.0
    min_reload_s: ClassVar[float] = 1.0  # a burst of changes reloads a visible pane at most this often
    stale_on: ClassVar[frozenset[EventKind]] = frozenset()

    read_only: reactive[bool] = reactive(False, init=False, bindings=True)

    can_focus = False

    def __init__(self, source: ConsoleData | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source

    async def load(self) -> Any:
        return None

    def show(self, payload: Any) -> None:
        pass

    @property
    def visible_now(self) -> bool:
        """On screen: the current pane of a screen that is on top."""
        return self.is_mounted and self.display and self.screen.is_active

    def is_stale_after(self, events: list[Event]) -> bool:
        return any(e.kind in self.stale_on for e in events)

    def on_events(self, events: list[Event], replay: bool) -> None:
        """Fold a batch of events (panes that draw events override it)."""

    def on_show_pane(self) -> None:
        """Called when the pane becomes visible (focus its main widget)."""

    def tick(self) -> None:
        """Called twice a second while visible (panes with a live clock redraw)."""

    def back(self) -> bool:
        return False

    def theme_changed(self) -> None:
        """The theme changed: redraw what carries theme colors."""

    def refusal(self, action: str) -> str | None:
        return None

    @property
    def shown(self) -> bool:
        """The pane the screen shows (the others are hidden by its switcher)."""
        return self.is_mounted and self.display

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.shown:
            return False  # hidden: its keys do nothing, and the key bar leaves them out
        if action == "cursor":
            return self._cursor_target() is not None  # False: the key goes on (home/end in an input)
        return None if self.why_refused(action) else True

    def _cursor_target(self) -> DataTable[Any] | OptionList | None:
        focused = self.screen.focused
        if focused is None or self not in focused.ancestors:
            return None
        if isinstance(focused, DataTable) and focused.cursor_type == "row" and focused.show_cursor:
            return focused
        return focused if isinstance(focused, OptionList) else None

    def action_cursor(self, where: str) -> None:
        target = self._cursor_target()
        if isinstance(target, DataTable):
            moves = {"down": target.action_cursor_down, "up": target.action_cursor_up,
                     "top": target.action_scroll_top, "bottom": target.action_scroll_bottom}
        elif isinstance(target, OptionList):
            moves = {"down": target.action_cursor_down, "up": target.action_cursor_up,
                     "top": target.action_first, "bottom": target.action_last}
        else:
            return
        moves[where]()

    def why_refused(self, action: str) -> str | None:
        spec = keys.spec_for_action(self.scope, action)
        if spec is None:
            return None
        if spec.writes:
            role = self.source.role_refusal(action) if self.source is not None else None
            if role:  # the server's roles: the sentence names the group that may
                return role
            if self.read_only:
                return refusals.read_only(spec.description)
        return self.refusal(action)

    def request_load(self) -> None:
        """Reload now (if visible)."""
        self.post_message(ReloadRequested(self.id or ""))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A pane's own worker (chart rendering) failed: the app's one failure handler reports it."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.post_message(WorkFailed(event.worker.name, event.worker.error))


def theme_color(app: object, name: str, default: str = "") -> str:
    """A color of the current theme ("success", "warning", "error", "accent", ...) as a Rich color."""
    theme = getattr(app, "current_theme", None)
    value = getattr(theme, name, None) if theme is not None else None
    return value or default
