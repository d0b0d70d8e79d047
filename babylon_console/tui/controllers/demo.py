"""The demo's bring-up, in the demo's own database (`core.simgame.demo`): seed a history if it has none, run
the simulated market, then start a continuous offline engine, which reads the market's clock from
that database as every other process does. Progress reaches the status bar and the Windows pane
through messages posted from the market's thread."""

from __future__ import annotations

import asyncio

from textual.worker import Worker

from ..data import ConsoleData
from ..messages import DataChanged, ProblemReported, StatusChanged
from ..runners.demo import DemoRunner, DemoSettings, engine_overrides_for_demo
from .engine import EngineControl
from .host import Host


class DemoMarket:
    def __init__(self, host: Host, data: ConsoleData, settings: DemoSettings, engine: EngineControl) -> None:
        self.host = host
        self.data = data
        self.settings = settings
        self.engine = engine
        self.runner: DemoRunner | None = None
        self._market_worker: Worker[None] | None = None

    def start(self) -> None:
        host, settings = self.host, self.settings

        def status(text: str) -> None:
            host.post_message(StatusChanged("market", text))

        def on_window(window_id: str, n: int) -> None:
            host.post_message(StatusChanged("market", f"Market: window {window_id} written ({n} agents)"))
            host.post_message(DataChanged("windows"))

        def on_warning(message: str) -> None:
            host.post_message(ProblemReported("live market", message))

        demo = DemoRunner(self.data, self.engine.ensure_background(), settings,
                          progress=lambda done, total: status(f"Seeding history: {done}/{total} windows"),
                          on_window=on_window, on_warning=on_warning)
        self.runner = demo
        status("Market: starting…")
        host.notify(f"The demo runs in a database of its own: {self.data.database_label}. Your database is not "
                    "touched.", title="Demo", timeout=8)

        async def market() -> None:
            await demo.run()

        async def engine_when_ready() -> None:
            while not demo.live:  # set by the background thread once the market and its gateway are up
                if not self.market_running():
                    return  # the market failed before it started (reported by its worker)
                await asyncio.sleep(0.2)
            status(f"Market: live, a window every {settings.seconds_per_window:g} s")
            host.post_message(DataChanged("windows"))
            if not self.engine.active:
                self.engine.start(engine_overrides_for_demo(settings.seconds_per_window))

        self._market_worker = host.start_worker(market, name="demo market", group="demo")
        host.start_worker(engine_when_ready, name="demo engine", group="demo-engine")

    def market_running(self) -> bool:
        return self._market_worker is not None and not self._market_worker.is_finished

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
