"""The key bar at the bottom: the keys that work on the pane shown, from the registry, in one line.

It lists the shown pane's keys, then the engine's (every pane), and pins `?` help, `q` quit and the
palette at the right: when the line is too narrow, the pane's keys are cut (with …), never those.
Hidden panes' keys are never listed (they do nothing there); a key whose action is refused right now
is dimmed (pressing it says why). A click on a key presses it.

It replaces Textual's `Footer`, which mounts a widget per key on every change of bindings (and,
in Textual 8.2, keeps the old ones alive through data bindings: memory grew with every pane
switch). This is one Static, redrawn only when the active bindings change.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.text import Text
from textual.actions import parse as parse_action
from textual.binding import Binding
from textual.widgets import Static

from .. import bindings as keys


class Entry(NamedTuple):
    key: str  # what a click presses
    display: str
    description: str
    enabled: bool


class KeyBar(Static):
    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._redraw)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen: Any) -> None:
        if self.is_attached:
            self._redraw()

    def refresh_keys(self) -> None:
        self._redraw()

    def entries(self) -> tuple[list[Entry], list[Entry]]:
        """(left, pinned): the shown pane's and the engine's keys; help, quit and the palette."""
        screen, app = self.screen, self.app
        pane = getattr(screen, "active_pane", None)
        groups: list[tuple[str, Any]] = [(pane.scope, pane)] if pane is not None else []
        groups += [("main", screen), ("app", app)]
        left: list[Entry] = []
        pinned: list[Entry] = []
        for scope, namespace in groups:
            for spec in keys.specs(scope):
                if not spec.show:
                    continue
                _, name, params = parse_action(spec.action)
                state = namespace.check_action(name, params)
                if state is False:
                    continue
                (pinned if scope == "app" else left).append(self._entry(spec, bool(state)))
        palette = keys.BY_ID["app.palette"]
        if app.ENABLE_COMMAND_PALETTE:
            pinned.append(self._entry(palette, True))
        return left, pinned

    def _entry(self, spec: keys.KeySpec, enabled: bool) -> Entry:
        override = getattr(self.app, "keymap_overrides", {}).get(spec.id)
        binding = spec.binding() if override is None else Binding(override, spec.action)
        key = binding.key.split(",")[0].strip()
        return Entry(key, self.app.get_key_display(binding), spec.description, enabled)

    def _redraw(self) -> None:
        app = self.app
        key_style = f"bold {getattr(app.current_theme, 'primary', '') or ''}".strip()
        left, pinned = self.entries()
        text, right = self._line(left, key_style), self._line(pinned, key_style)
        width = self.size.width or 160
        room = width - right.cell_len - 1
        if text.cell_len > room:
            text.truncate(max(0, room - 1))
            text.append("…")
        text.append(" " * max(1, width - text.cell_len - right.cell_len))
        text.append_text(right)
        self.update(text)

    @staticmethod
    def _line(entries: list[Entry], key_style: str) -> Text:
        text = Text(no_wrap=True)
        for entry in entries:
            start = len(text)
            text.append(f" {entry.display} ", style=key_style if entry.enabled else "dim")
            text.append(f"{entry.description} ", style="" if entry.enabled else "dim")
            text.apply_meta({"@click": f"app.simulate_key({entry.key!r})"}, start, len(text))
        return text

    def on_resize(self) -> None:
        self._redraw()
