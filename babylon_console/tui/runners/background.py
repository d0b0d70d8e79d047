"""The console's second event loop, on a daemon thread of its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable


class BackgroundLoop:
    """A daemon thread running its own event loop, for the engine and the simulated market."""

    def __init__(self, name: str = "babylon-background") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = False

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        with contextlib.suppress(RuntimeError):  # the loop is being torn down: nothing left to report to
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit[T](self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        self.start()
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    async def run[T](self, coro: Awaitable[T]) -> T:
        """Await `coro` on the background loop from another loop (cancelling one cancels the other)."""
        return await asyncio.wrap_future(self.submit(coro))

    def call(self, fn: Callable[..., object], *args: object) -> None:
        if self._started and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def close(self, timeout: float = 5.0) -> None:
        if self._started and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
