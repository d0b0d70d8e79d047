"""One-line bars: the pane bar at the top, the status bar, and the outage banner."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..bindings import PANES


class PaneBar(Static):
    """` Babylon Console │ 1 Windows  2 Outcomes … ` with the active pane highlighted; clickable."""

    def __init__(self, mode: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.active = "windows"
        self.mode = mode
        self.badges: dict[str, str] = {}

    def set_active(self, pane: str) -> None:
        self.active = pane
        self._redraw()

    def set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self._redraw()

    def set_badge(self, pane: str, text: str) -> None:
        if self.badges.get(pane) != text:
            self.badges[pane] = text
            self._redraw()

    def on_mount(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        # Below ~100 columns (a tmux split) the name gives way, so every pane's number stays visible.
        narrow = 0 < self.size.width < 100
        text = Text.assemble(("◆ ", "bold"), "│") if narrow else Text.assemble(("◆ Babylon Console ", "bold"), "│")
        for i, (name, title) in enumerate(PANES, start=1):
            label = f" {i} {title}"
            badge = self.badges.get(name)
            if badge:
                label += f" {badge}"
            label += " "
            style = "reverse bold" if name == self.active else ""
            text.append(label, style=style)
            text.apply_meta({"@click": f"app.main_pane('{name}')"}, len(text) - len(label), len(text))
        if self.mode:
            text.append("│ ")
            text.append(self.mode, style="italic")
        self.update(text)


class StatusBar(Static):
    """Database, engine, live model and market, in one calm line; parts are set independently."""

    # read-only (and whose word it is) and open alarms first: a narrow terminal cuts the line at the right
    PARTS = ("mode", "alarms", "db", "engine", "live", "market", "eval")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.parts: dict[str, Text] = {}

    def set_part(self, name: str, value: str | Text) -> None:
        text = value if isinstance(value, Text) else Text(value)
        old = self.parts.get(name)
        if old is not None and old.plain == text.plain and old.spans == text.spans:
            return
        self.parts[name] = text
        self.update(Text(" · ").join(self.parts[p] for p in self.PARTS if self.parts.get(p)))


class Banner(Static):
    """The outage banner: shown while the database cannot be reached, gone when it answers again."""

    def show_message(self, message: str) -> None:
        self.update(Text.assemble(("⚠ Database unreachable: ", "bold"), message,
                                  "  Retrying every few seconds; panes keep their last data."))
        self.display = True

    def clear(self) -> None:
        self.display = False
