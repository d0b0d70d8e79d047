"""What a controller needs from the app: toasts, dialogs, workers, bindings, messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from textual.message import Message
from textual.worker import Worker


class Host(Protocol):
    read_only: bool

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None: ...

    def push_screen(self, screen: Any, callback: Callable[[Any], Any] | None = None) -> Any: ...

    def start_worker(self, work: Callable[[], Any], *, name: str, group: str, thread: bool = False,
                     replace: bool = False, action: bool = False) -> Worker[Any] | None: ...

    def refresh_bindings(self) -> None: ...

    def post_message(self, message: Message) -> bool: ...

    def set_timer(self, delay: float, callback: Callable[[], Any]) -> Any: ...

    def refuse(self, title: str, reason: str) -> None: ...

    def follow_the_server(self) -> None: ...
