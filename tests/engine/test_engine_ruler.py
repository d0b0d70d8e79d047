"""The engine with the RULER judge against a local OpenAI-compatible server (127.0.0.1): ground
truth reaches the judge but never the training data; a window whose judge keeps answering garbage
is recorded as failed while the other window trains."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.game.windows import window_id_for
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import history_starts, seed_history
from babylon_console.core.training.judges import RulerJudge
from tests.fake_openai import FakeOpenAI

NOW = datetime(2026, 11, 24, 12, 20)


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")  # litellm's own response types
async def test_ruler_engine_path(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await seed_history(pool, Simulation(seed=9, n_agents=5, steps_per_window=4), windows=2, now=NOW)
    bad_window, good_window = (window_id_for(s) for s in history_starts(2, NOW))

    def reply(body: dict) -> str:
        text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        if f"Window {bad_window}" in text:
            return "I refuse to answer in JSON"
        ids = re.findall(r'<trajectory id="(\d+)">', text)
        return orjson.dumps({"scores": [
            {"trajectory_id": i, "explanation": f"agent {i} traded sensibly", "score": round(0.1 + 0.15 * int(i), 2)}
            for i in ids]}).decode()

    async with FakeOpenAI(reply) as server:
        judge = RulerJudge("openai/judge-test", base_url=server.base_url, api_key="test-key", max_attempts=2,
                           timeout_s=10, backoff_s=0.01)
        settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
        config = EngineConfig(iterations=1, windows_per_iteration=2, min_agents=5, min_steps=4, judge="ruler",
                              lookback_hours=24)
        summary = await Engine(pool, config, settings=settings, judge=judge, clock=FixedClock()).run()
        requests = list(server.requests)

    assert summary.windows_failed == [bad_window]
    assert summary.windows_trained == [good_window] and summary.steps == [1]
    judged = [r for r in requests if f"Window {good_window}" in str(r["messages"])]
    assert judged, "the judge saw the good window's ground truth"
    assert len([r for r in requests if f"Window {bad_window}" in str(r["messages"])]) == 2  # retried once
    # Scores and explanations persisted in our table (the game's judge columns are its own).
    rows = await pool.fetch("SELECT score, explanation FROM console_judgments WHERE window_id = $1", good_window)
    assert sorted(r[0] for r in rows) == [0.25, 0.4, 0.55, 0.7, 0.85]
    assert all("traded sensibly" in r[1] for r in rows)
    judgments = await pool.fetchval("SELECT count(*) FROM console_judgments WHERE judge = 'ruler'")
    assert judgments == 5
    # The training data (ART history written by model.log) carries no ground truth.
    history = list((tmp_path / "data" / "checkpoints" / "offline").rglob("*.parquet"))
    assert history, "ART's trajectory history was written"
    import pyarrow.parquet as pq

    text = str(pq.read_table(history[0]).to_pylist())
    assert f"Window {good_window}" not in text and "what the markets actually did" not in text
    assert "MARKET_STATE" in text  # ...while the agents' own prompts are there
