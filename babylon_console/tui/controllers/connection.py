"""The database connection's health: connect after the first frame, ping on an interval, show an
outage as the banner (with a line in the Errors pane) and clear it when the database answers again.

The screen is reached through a getter (it may not be mounted yet) and duck-typed: it has `banner`,
`status`, `add_problem`, `db_ready` and `load_pane`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text

from ..data import ConsoleData, ConsoleError, ErrorKind, one_line
from .host import Host


class DatabaseHealth:
    def __init__(self, host: Host, data: ConsoleData, screen: Callable[[], Any],
                 first_connected: Callable[[], None], after_ping: Callable[[], Awaitable[None]]) -> None:
        """`first_connected`: called once, when the database first answers; `after_ping`: work for
        every healthy tick (the engine elsewhere: is it still beating?)."""
        self.host = host
        self.data = data
        self.screen = screen
        self.first_connected = first_connected
        self.after_ping = after_ping
        self.ready = False
        self.outage: str | None = None
        self._connected_once = False
        self._connect_worker: Any = None
        self.misconfigured: str | None = None  # the console may not open this database as configured

    def connect(self) -> None:
        self._connect_worker = self.host.start_worker(self._connect, name="connect", group="connect")

    async def _connect(self) -> None:
        try:
            await self.data.connect()
        except ConsoleError as exc:
            if exc.kind is not ErrorKind.INVALID_INPUT:
                raise
            self.refused_configuration(exc)  # not an outage: asking again will not help
            return
        self.recovered()

    def refused_configuration(self, exc: ConsoleError) -> None:
        """The database answered but the configuration may not be used with it (a hold-out setting that
        disagrees with the database's record): said once, with what to change; no pings follow."""
        self.misconfigured = exc.message
        self._set_ready(False)
        screen = self.screen()
        if screen is None or not screen.is_mounted:
            return
        screen.banner.show_message(exc.message)
        screen.status.set_part("db", Text("DB: not opened (configuration)", style="bold"))
        screen.add_problem("error", "configuration", exc.message)
        self.host.notify(exc.message, title=exc.title, severity="error", timeout=12)

    def tick(self) -> None:
        if self.misconfigured is not None:
            return
        if self._connect_worker is not None and not self._connect_worker.is_finished:
            return
        self.host.start_worker(self._health, name="health check", group="health")

    async def _health(self) -> None:
        try:
            await self.data.ping()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure to answer is an outage here: the banner says what
            self.down(one_line(exc))
            return
        if self.outage is not None or not self.ready:
            self.recovered()
        await self.after_ping()

    def down(self, message: str) -> None:
        first = self.outage is None
        self.outage = message
        self._set_ready(False)
        screen = self.screen()
        if screen is None or not screen.is_mounted:
            return
        screen.banner.show_message(message)
        screen.status.set_part("db", Text("DB: unreachable", style="bold"))
        if first:
            screen.add_problem("error", "database", message)

    def recovered(self) -> None:
        was_down = self.outage is not None
        self.outage = None
        self._set_ready(True)
        screen = self.screen()
        screen.banner.clear()
        screen.status.set_part("db", f"DB: {self.data.target_label}")
        if not self._connected_once:
            self._connected_once = True
            self.first_connected()
        elif was_down:
            self.host.notify("The database answers again.", title="Database", timeout=3)
        screen.load_pane(screen.active_pane, force=True)

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready
        screen = self.screen()
        if screen is not None:
            screen.db_ready = ready
        self.host.refresh_bindings()
