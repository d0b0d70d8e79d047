"""The key bar at the bottom: the bindings active right now, from the registry, in one line.

It replaces Textual's `Footer`, which mounts a widget per key on every change of bindings (and,
in Textual 8.2, keeps the old ones alive through data bindings: memory grew with every pane
switch). This is one Static, redrawn only when the active bindings change. Disabled actions are
dimmed; a click on a key runs its binding.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


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

    def _redraw(self) -> None:
        app = self.app
        key_style = f"bold {getattr(app.current_theme, 'primary', '') or ''}".strip()
        text = Text(no_wrap=True, overflow="ellipsis")
        seen_actions: set[str] = set()
        palette_key = None
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if binding.action == "command_palette":
                palette_key = app.get_key_display(binding)
                continue
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            start = len(text)
            text.append(f" {app.get_key_display(binding)} ", style=key_style if active.enabled else "dim")
            text.append(f"{binding.description} ", style="" if active.enabled else "dim")
            text.apply_meta({"@click": f"app.simulate_key({key!r})"}, start, len(text))
        if palette_key and app.ENABLE_COMMAND_PALETTE:
            width = self.size.width or 160
            right = Text.assemble((f" {palette_key} ", key_style), "Commands ")
            pad = max(1, width - text.cell_len - right.cell_len)
            text.append(" " * pad)
            text.append_text(right)
        self.update(text)

    def on_resize(self) -> None:
        self._redraw()
