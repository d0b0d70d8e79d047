"""Run the demo's bring-up headlessly (seed a small history, start the live market) until its market
has written one live window, then stop it: what the demo and hold-out tests need of a demo."""

from __future__ import annotations

import asyncio

from babylon_console.tui.data import ConsoleData
from babylon_console.tui.runners.background import BackgroundLoop
from babylon_console.tui.runners.demo import DemoRunner, DemoSettings


async def run_demo_until_a_window(data: ConsoleData, limit_s: float = 30.0) -> list[str]:
    """The live windows the demo's market wrote (at least one, unless it stopped first)."""
    background = BackgroundLoop()
    written: list[str] = []
    demo = DemoRunner(data, background, DemoSettings(windows=2, agents=5, steps=2, seconds_per_window=1.0,
                                                     policy_agents=2), on_window=lambda w, _n: written.append(w))
    market = asyncio.ensure_future(demo.run())
    try:
        for _ in range(int(limit_s * 10)):
            if written or market.done():
                break
            await asyncio.sleep(0.1)
    finally:
        demo.stop()
        await asyncio.wait_for(market, 30)
        background.close()
    return written
