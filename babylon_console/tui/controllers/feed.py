"""The event feed: engine events of any process, delivered to the screen in batches.

At start it replays the recent history (chart points, judged windows, the tail), then follows new
events through LISTEN/NOTIFY. Events are buffered and delivered at most every `flush_s`, so a
burst of hundreds costs one fold and one redraw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ..data import ConsoleData, Event, is_outage
from ..messages import WorkFailed
from .host import Host

FLUSH_S = 0.2  # events reach the screen at most 5 times a second


class EventFeed:
    def __init__(self, host: Host, data: ConsoleData, deliver: Callable[[list[Event], bool], None],
                 retry_s: float = 2.0) -> None:
        """`deliver(batch, replay)` hands a batch to the screen (on the UI's loop)."""
        self.host = host
        self.data = data
        self.deliver = deliver
        self.retry_s = retry_s
        self.last_id: int | None = None
        self._pending: list[Event] = []

    def start(self) -> None:
        self.host.start_worker(self._follow, name="follow events", group="events")

    def add(self, events: Iterable[Event]) -> None:
        """Queue events as if they had arrived from the database (tests and benchmarks)."""
        self._pending.extend(events)

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.deliver(batch, False)

    async def _follow(self) -> None:
        while True:
            try:
                if self.last_id is None:  # the replay too is retried: a feed that never started would stay dark
                    history = await self.data.training_history()
                    recent = await self.data.recent_events(300)
                    merged = sorted({e.id: e for e in [*history, *recent]}.values(), key=lambda e: e.id or 0)
                    self.last_id = merged[-1].id if merged else await self.data.last_event_id()
                    self.deliver(merged, True)
                async for batch in self.data.follow_events(self.last_id):
                    self._pending.extend(batch)
                    self.last_id = batch[-1].id
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed outlives any failure: reported, then it reconnects
                if not is_outage(exc):
                    self.host.post_message(WorkFailed("following events", exc))
                await asyncio.sleep(self.retry_s)
