"""`train`'s plain output shows the run's first event even when its follower connects late."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from babylon_console.commands import train as train_command
from babylon_console.core import events
from babylon_console.core.engine.run_state import EngineState, RunSummary


async def test_the_first_event_shows_however_late_the_follower_connects(
    database_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_connect = asyncpg.connect

    async def slow_connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.5)  # a slow network: the run's first event is written before this returns
        return await real_connect(*args, **kwargs)

    class QuickEngine:
        run_id = "run-late-follower"
        summary = RunSummary(run_id=run_id, state=EngineState.STOPPED)

        async def run(self) -> RunSummary:
            await events.emit(pool, events.RunStarted(message="engine started: offline backend, outcome judge"),
                              run_id=self.run_id)
            await asyncio.sleep(1.5)  # long enough for the follower to connect and read
            return self.summary

    monkeypatch.setattr(train_command, "live_frame", lambda: False)
    monkeypatch.setattr(asyncpg, "connect", slow_connect)
    await train_command._run_engine(QuickEngine(), quiet=False, dsn=database_url)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "engine started: offline backend, outcome judge" in out, out
