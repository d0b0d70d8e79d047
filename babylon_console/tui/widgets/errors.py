"""Errors pane: engine ERROR and WARNING events and the console's own failures, newest last."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import RichLog, Static

from .. import bindings as keys
from ..data import Event
from ..data import events as ev
from ..messages import BadgeChanged
from .pane import Pane, theme_color

MAX_ERRORS = 500


class ErrorsPane(Pane):
    scope = "errors"
    title = "Errors"
    BINDINGS: ClassVar = keys.bindings("errors")

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.entries: deque[tuple[int, str, str, str, str]] = deque(maxlen=MAX_ERRORS)  # seq, when, level, src, msg
        self.seq = 0
        self.unseen = 0
        self._shown = 0

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Errors and warnings: engine (judge, backend) and console", id="errors-title",
                     classes="pane-title")
        yield RichLog(id="errors-log", max_lines=MAX_ERRORS, wrap=True, markup=False)

    def on_show_pane(self) -> None:
        self.unseen = 0
        self.post_message(BadgeChanged("errors", ""))
        log = self.query_one(RichLog)
        log.clear()
        self._shown = 0
        self._draw()
        log.focus()

    def add(self, level: str, source: str, message: str, when: datetime | None = None) -> None:
        self.seq += 1
        stamp = (when or datetime.now()).strftime("%H:%M:%S")
        self.entries.append((self.seq, stamp, level, source, message))
        if self.visible_now:
            self._draw()
        else:
            self.unseen += 1
            if level == "error":
                self.post_message(BadgeChanged("errors", f"({self.unseen})"))

    def on_events(self, events: list[Event], replay: bool) -> None:
        self.ingest(events)

    def ingest(self, events: list[Event]) -> int:
        """Add ERROR and WARNING events; returns how many errors there were."""
        errors = 0
        for event in events:
            match event.data:
                case ev.EngineFailure(stage=stage):
                    errors += 1
                    self.add("error", stage or "engine", event.summary, event.created_at)
                case ev.EngineWarning(stage=stage):
                    self.add("warning", stage or "engine", event.summary, event.created_at)
        return errors

    def _draw(self) -> None:
        log = self.query_one(RichLog)
        for seq, stamp, level, source, message in self.entries:
            if seq <= self._shown:
                continue
            color = theme_color(self.app, "error" if level == "error" else "warning")
            log.write(Text.assemble((stamp + " ", "dim"), (f"{level:<8}", f"bold {color}"), (f"{source:<10} ", "dim"),
                                    message))
        self._shown = self.seq

    def action_clear_errors(self) -> None:
        self.entries.clear()
        self.query_one(RichLog).clear()
        self._shown = self.seq
        self.unseen = 0
        self.post_message(BadgeChanged("errors", ""))
