"""The base of every pane: a scope in the key registry, a loader, and guarded actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.containers import Vertical

from .. import bindings as keys

if TYPE_CHECKING:
    from ..app import ConsoleApp


class Pane(Vertical):
    """One pane of the main screen.

    - `load()` fetches what the pane shows (awaited in a named worker, never overlapping itself);
      `show(payload)` puts it on screen. The main screen calls them only while the pane is visible,
      every `poll_seconds` (0: only when asked).
    - `refusal(action)` says why an action cannot run now (None: it can). A refused action is
      disabled (dimmed in the footer, left out of the palette); its key then shows the reason.
    - `back()` closes what the pane has open (filter, search); False when there was nothing.
    """

    scope: ClassVar[str] = ""
    title: ClassVar[str] = ""
    poll_seconds: ClassVar[float] = 0.0
    min_reload_s: ClassVar[float] = 1.0  # a burst of changes reloads a visible pane at most this often

    can_focus = False

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    async def load(self) -> Any:
        return None

    def show(self, payload: Any) -> None:
        pass

    def on_show_pane(self) -> None:
        """Called when the pane becomes visible (focus its main widget)."""

    def back(self) -> bool:
        return False

    def theme_changed(self) -> None:
        """The theme changed: redraw what carries theme colors."""

    def refusal(self, action: str) -> str | None:
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = keys.spec_for_action(self.scope, action)
        if spec is None:
            return True
        if spec.writes and self.console.read_only:
            return None
        return None if self.refusal(action) else True

    def why_refused(self, action: str) -> str | None:
        spec = keys.spec_for_action(self.scope, action)
        if spec is not None and spec.writes and self.console.read_only:
            return f"read-only console: {spec.description.lower()} is refused (started with --read-only)"
        return self.refusal(action)

    def request_load(self) -> None:
        """Reload now (if visible)."""
        self.console.main.load_pane(self, force=True)


def theme_color(app: object, name: str, default: str = "") -> str:
    """A color of the current theme ("success", "warning", "error", "accent", ...) as a Rich color."""
    theme = getattr(app, "current_theme", None)
    value = getattr(theme, name, None) if theme is not None else None
    return value or default
