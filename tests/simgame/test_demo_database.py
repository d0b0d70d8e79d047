"""The demo runs in a database of its own (an embedded cluster under `<data dir>/demo/`, with its
checkpoints): its bring-up leaves the operator's database untouched, the CLI reaches the demo only
through `--data-dir`, and `demo --reset` starts it afresh (refused while the demo is in use)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.clock import SystemClock
from babylon_console.core.config import Settings
from babylon_console.core.db.embedded import stop_embedded_server
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.tui.app import ConsoleApp
from babylon_console.tui.data import ConsoleData

from ..demo_market import run_demo_until_a_window

runner = CliRunner()
TABLES = ("trajectories", "llm_call_logs", "market_outcomes", "trained_models", "console_sim_clock", "console_events")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[ConsoleApp]:
    """Consoles `demo` would open (not run: the test drives the demo's bring-up itself)."""
    apps: list[ConsoleApp] = []
    monkeypatch.setattr(ConsoleApp, "run", lambda self, *a, **k: apps.append(self))
    return apps


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    demo = tmp_path / "data" / "demo"
    yield demo
    stop_embedded_server(demo / "pgdata")


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


async def _counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def test_the_demo_leaves_the_operators_database_untouched(
        pool: asyncpg.Pool, database_url: str, opened: list[ConsoleApp], demo_dir: Path) -> None:
    await seed_history(pool, Simulation(seed=2, n_agents=6, steps_per_window=3), windows=2, now=SystemClock().now())
    before = await _counts(pool)
    env = {"DATABASE_URL": database_url}

    started = await asyncio.to_thread(invoke, "demo", env=env)
    assert started.exit_code == 0, started.output
    assert f"--data-dir {demo_dir}" in started.output and "DATABASE_URL is not used" in started.output
    data = opened[0].data
    assert data.settings.database_url is None and data.settings.data_dir == demo_dir
    assert data.is_demo and "demo" in data.database_label
    await data.connect()  # the console connects first; then its bring-up seeds and runs the market
    written = await run_demo_until_a_window(data)
    assert written, "the demo's market wrote no window"
    in_demo = await _counts(data.pool)
    gateways = await data.pool.fetch("SELECT listen, stopped_at FROM console_gateways")
    await data.close()
    assert in_demo["trajectories"] > 0 and in_demo["console_sim_clock"] == 1
    # the market's own gateway came up on loopback and went down with the market
    assert len(gateways) == 1 and gateways[0]["listen"].startswith("127.0.0.1:") and gateways[0]["stopped_at"]

    assert await _counts(pool) == before  # nothing the demo wrote reached the operator's database
    real = orjson.loads((await asyncio.to_thread(invoke, "windows", "--json", "--all", env=env)).stdout)
    assert real["total"] == 2 and written[0] not in {w["window_id"] for w in real["windows"]}
    status = orjson.loads((await asyncio.to_thread(invoke, "status", "--json", env=env)).stdout)
    assert status["clock"]["kind"] == "wall"
    # the CLI reaches the demo by its data dir, and finds its market's clock there (standing still: stopped)
    shown = orjson.loads((await asyncio.to_thread(invoke, "--data-dir", str(demo_dir), "windows", "--json",
                                                  "--all")).stdout)
    assert written[0] in {w["window_id"] for w in shown["windows"]}
    clock = orjson.loads((await asyncio.to_thread(invoke, "--data-dir", str(demo_dir), "status", "--json")).stdout)
    assert clock["clock"]["kind"] == "simulated" and clock["clock"]["running"] is False


async def test_demo_reset_starts_afresh_and_is_refused_while_the_demo_is_open(
        opened: list[ConsoleApp], demo_dir: Path) -> None:
    from babylon_console.core.simgame.demo import demo_settings

    data = ConsoleData(demo_settings(Settings()))
    await data.connect()
    await seed_history(data.pool, Simulation(seed=2, n_agents=5, steps_per_window=2), windows=1,
                       now=SystemClock().now())
    checkpoint = demo_dir / "checkpoints" / "offline" / "babylon-agent" / "0001" / "policy.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")

    busy = await asyncio.to_thread(invoke, "demo", "--reset")
    assert busy.exit_code == 1 and "in use" in busy.output and not opened
    assert await data.pool.fetchval("SELECT count(*) FROM trajectories") == 5 and checkpoint.exists()
    await data.close()

    reset = await asyncio.to_thread(invoke, "demo", "--reset")
    assert reset.exit_code == 0, reset.output
    assert "dropped database babylon (5 trajectories" in reset.output and "checkpoints/" in reset.output
    assert len(opened) == 1  # then the demo opens, on its fresh database
    assert not (demo_dir / "checkpoints").exists() and (demo_dir / "pgdata").is_dir()
    fresh = ConsoleData(demo_settings(Settings()), read_only=True)  # read-only: no migration, it must be there
    await fresh.connect()
    try:
        assert await fresh.pool.fetchval("SELECT count(*) FROM trajectories") == 0
    finally:
        await fresh.close()


def test_the_operators_holdout_setting_does_not_reach_the_demo(tmp_path: Path) -> None:
    """BABYLON_HOLDOUT_SHARE is checked against the operator's database; the demo's database records
    15% of its own, so carrying the operator's value into the demo made it refuse itself."""
    from babylon_console.core.simgame.demo import demo_settings

    operator = Settings(BABYLON_DATA_DIR=str(tmp_path), BABYLON_HOLDOUT_SHARE="0.0")  # type: ignore[call-arg]
    assert operator.holdout_share == 0.0
    assert demo_settings(operator).holdout_share is None


def test_the_demos_market_refuses_a_database_that_is_not_the_demos(tmp_path: Path) -> None:
    """It writes a hold-out record and a simulated market: never into the operator's database."""
    from babylon_console.core.errors import Refused
    from babylon_console.core.simgame.demo import demo_settings
    from babylon_console.tui.runners.background import BackgroundLoop
    from babylon_console.tui.runners.demo import DemoRunner

    background = BackgroundLoop()
    try:
        operator = Settings(BABYLON_DATA_DIR=str(tmp_path), DATABASE_URL="postgresql://u@db.example/game")  # type: ignore[call-arg]
        with pytest.raises(Refused, match=r"only in the demo.s own database.*game on db\.example"):
            DemoRunner(ConsoleData(operator), background)
        embedded = Settings(BABYLON_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]  # the operator's embedded one
        with pytest.raises(Refused, match="hold-out record"):
            DemoRunner(ConsoleData(embedded.model_copy(update={"database_url": None})), background)
        assert DemoRunner(ConsoleData(demo_settings(operator)), background).data.is_demo
    finally:
        background.close()


async def test_the_demos_engine_may_start_only_once_the_markets_gateway_is_up(
        demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's imports (ART imports the OpenAI client) ran while the gateway's start imported that
    client in the market's thread: "partially initialized module 'openai.types.chat'" failed both the
    market and the engine. The bring-up says `live` only once the gateway is up."""
    from babylon_console.core.simgame.demo import demo_settings
    from babylon_console.core.simgame.serving import GatewayAgents
    from babylon_console.tui.runners.background import BackgroundLoop
    from babylon_console.tui.runners.demo import DemoRunner, DemoSettings

    real_start, release = GatewayAgents.start, asyncio.Event()
    loop = asyncio.get_running_loop()

    async def held_start(self: GatewayAgents) -> GatewayAgents:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(release.wait(), loop))
        return await real_start(self)

    monkeypatch.setattr(GatewayAgents, "start", held_start)
    data = ConsoleData(demo_settings(Settings(BABYLON_DATA_DIR=str(demo_dir.parent))))  # type: ignore[call-arg]
    await data.connect()
    background = BackgroundLoop()
    demo = DemoRunner(data, background, DemoSettings(windows=1, agents=5, steps=2, seconds_per_window=1.0,
                                                     policy_agents=2))
    market = asyncio.ensure_future(demo.run())
    try:
        for _ in range(300):
            if demo.market is not None or market.done():
                break
            await asyncio.sleep(0.1)
        assert demo.market is not None and not demo.live  # the market exists, its gateway is still starting
        release.set()
        for _ in range(300):
            if demo.live or market.done():
                break
            await asyncio.sleep(0.1)
        assert demo.live
    finally:
        release.set()
        demo.stop()
        await asyncio.wait_for(market, 30)
        background.close()
        await data.close()
