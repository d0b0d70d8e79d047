"""Training-health alarms in the console: how many are open (the badge every pane shows), the toast
when one fires, and the operator's acknowledgement.

The open count is read from the database when the console connects and again after every alarm or
acknowledgement event (from any process) and after this console's own acknowledgement; a read still
running when another is asked for is followed by one more, so the badge never keeps a stale count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import bindings as keys
from .. import refusals
from ..data import ConsoleData, Refused
from ..data import events as ev
from .host import Host

if TYPE_CHECKING:
    from ..data import AlarmRecord

class AlarmWatch:
    limit = 500  # open alarms counted at most (the badge says 500+ then)

    def __init__(self, host: Host, data: ConsoleData, model_key: Callable[[], str | None],
                 show_count: Callable[[int | None], None], changed: Callable[[], None]) -> None:
        """`model_key`: the training key the console is about; `show_count`: put the open count on the
        badge (None: not known); `changed`: alarms changed (reload what lists them)."""
        self.host = host
        self.data = data
        self.model_key = model_key
        self.show_count = show_count
        self.changed = changed
        self.open_count: int | None = None
        self._again = False

    def refresh(self) -> None:
        """Read the open count again (in a worker; never two at once)."""
        self._again = True

        async def work() -> None:
            while self._again:
                self._again = False
                self.open_count = len(await self.data.alarms(self.model_key(), open_only=True, limit=self.limit))
                self.show_count(self.open_count)

        self.host.start_worker(work, name="read open alarms", group="alarms-open")

    def fired(self, alarm: ev.Alarm) -> None:
        """An alarm event arrived: a toast with its sentence, and the count read again."""
        title = f"Alarm: {alarm.rule or 'unknown rule'}" + (" · engine paused" if alarm.paused else "")
        self.host.notify(alarm.summary, title=title, severity="error" if alarm.paused else "warning", timeout=12)
        self.refresh()

    def refusal(self, alarm: AlarmRecord | None) -> str | None:
        spec = keys.BY_ID["training.acknowledge"]
        reason = self.data.role_refusal(spec.action_name) or (
            refusals.read_only(spec.description) if self.host.read_only else None)
        return reason or refusals.acknowledge(alarm)

    def acknowledge(self, alarm: AlarmRecord | None) -> None:
        reason = self.refusal(alarm)
        if reason or alarm is None:
            self.host.refuse("Acknowledge alarm", reason or "no open alarm")
            return

        async def work() -> None:
            try:
                record = await self.data.acknowledge_alarm(alarm.id)
            except Refused as exc:  # acknowledged meanwhile by another, or the server's roles: it says why
                self.host.refuse("Acknowledge alarm", str(exc))
                self.host.follow_the_server()
            else:
                self.host.notify(f"Alarm {record.id} ({record.rule}, {record.where}) acknowledged by "
                                 f"{record.acknowledged_who}.", title="Alarm acknowledged", timeout=5)
            self.refresh()
            self.changed()

        self.host.start_worker(work, name="acknowledge alarm", group="action", action=True)
