"""The hold-out as a property of the database (`core.checkpoints.holdout`, `babylon-console holdout`): set once,
audited, honoured by every process on the database; a setting that disagrees is refused; an evaluation never
counts a window a model compared was trained on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.evaluation import BY_COMPARISON, evaluate
from babylon_console.core.checkpoints.holdout import (
    HoldoutMismatch,
    HoldoutReasonNeeded,
    InvalidHoldout,
    current_holdout,
    ensure_holdout,
    holdout_history,
    set_holdout,
)
from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.game.windows import held_out
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

from .test_evaluation import NOW, _checkpoints, _Clock


def cli(database_url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--database-url", database_url, "--data-dir", str(tmp_path), *args],
                              env=env or {}, catch_exceptions=False)


async def test_set_change_and_history_are_audited_with_an_event(pool: asyncpg.Pool) -> None:
    assert await current_holdout(pool) is None  # no record: nothing held out
    first = await set_holdout(pool, 0.15, operator="ana", reason=None)  # the first needs no reason
    assert (first.share, first.set_by, first.rule) == (0.15, "ana", "sha256-v1")
    with pytest.raises(HoldoutReasonNeeded, match=r"already 15%.*--reason"):
        await set_holdout(pool, 0.2, operator="bo", reason="  ")
    assert await set_holdout(pool, 0.15, operator="bo", reason=None) == first  # the same share: nothing changes
    with pytest.raises(InvalidHoldout, match=r"in \[0, 1\)"):
        await set_holdout(pool, 1.0, operator="bo", reason="all")
    second = await set_holdout(pool, 0.2, operator="bo", reason="more evaluation windows")
    assert (await current_holdout(pool)) == second
    assert [r.share for r in await holdout_history(pool)] == [0.2, 0.15]
    events = [orjson.loads(p) for (p,) in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'holdout_set' ORDER BY id")]
    assert [(e["share"], e.get("previous_share")) for e in events] == [(0.15, None), (0.2, 0.15)]
    assert events[1]["reason"] == "more evaluation windows" and events[1]["operator"] == "bo"
    # the demo's bring-up sets one only where there is none
    assert await ensure_holdout(pool, 0.5, operator="demo", reason="demo") == second


async def test_the_record_is_honoured_by_every_engine_on_the_database(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Two engines built from plain settings (no hold-out given), as two processes would be: both read the
    database's record, so neither trains a held-out window; a change by the command is honoured at once."""
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), 24, NOW)
    await set_holdout(pool, 0.3, operator="ana", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    assert settings.holdout_share is None
    options = {"iterations": 2, "windows_per_iteration": 3, "min_agents": 5, "min_steps": 4, "lookback_hours": 48,
               "max_per_group": 6}
    first = await Engine(pool, EngineConfig.from_settings(settings, **options), settings=settings,
                         clock=_Clock()).run()
    assert first.windows_trained and not any(held_out(w, 0.3) for w in first.windows_trained)
    await set_holdout(pool, 0.6, operator="ana", reason="keep more windows for evaluation")
    other = settings.with_overrides(model_name="second-model")
    second = await Engine(pool, EngineConfig.from_settings(other, **options), settings=other, clock=_Clock()).run()
    assert second.windows_trained and not any(held_out(w, 0.6) for w in second.windows_trained)
    started = [orjson.loads(p)["config"]["holdout_share"] for (p,) in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'run_started' ORDER BY id")]
    assert started == [0.3, 0.6]


async def test_a_setting_that_disagrees_with_the_record_is_refused_with_both_values(
        pool: asyncpg.Pool, tmp_path: Path, database_url: str) -> None:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = EngineConfig(iterations=1, holdout_share=0.15)
    with pytest.raises(HoldoutMismatch, match=r"is 0.15 \(15%\) but the database records no hold-out \(0%\)"):
        await Engine(pool, config, settings=settings, clock=_Clock()).run()
    assert await pool.fetchval("SELECT count(*) FROM console_runs") == 0  # refused before it started
    await set_holdout(pool, 0.3, operator="ana", reason=None)
    windows = await asyncio.to_thread(cli, database_url, tmp_path, "windows", env={"BABYLON_HOLDOUT_SHARE": "0.2"})
    assert windows.exit_code == 2
    line = windows.output.strip()
    assert line.startswith("error: BABYLON_HOLDOUT_SHARE is 0.2 (20%) but the database records a hold-out of 30%")
    assert "set by ana" in line and "babylon-console holdout --share" in line and len(line.splitlines()) == 1
    trained = await asyncio.to_thread(cli, database_url, tmp_path, "train", "--quiet",
                                      env={"BABYLON_HOLDOUT_SHARE": "0"})
    assert trained.exit_code == 2 and "BABYLON_HOLDOUT_SHARE is 0 (0%)" in trained.output
    assert "Traceback" not in trained.output
    agreeing = await asyncio.to_thread(cli, database_url, tmp_path, "windows", "--json",
                                       env={"BABYLON_HOLDOUT_SHARE": "0.3"})
    assert agreeing.exit_code == 0 and orjson.loads(agreeing.stdout)["criteria"]["holdout_share"] == 0.3


async def test_the_console_refuses_a_disagreeing_setting_at_connect(database_url: str, tmp_path: Path,
                                                                    pool: asyncpg.Pool) -> None:
    from pydantic import SecretStr

    from babylon_console.tui.data import ConsoleData

    await set_holdout(pool, 0.25, operator="ana", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path), DATABASE_URL=database_url)  # type: ignore[call-arg]
    data = ConsoleData(settings.model_copy(update={"holdout_share": 0.1}), read_only=True)
    with pytest.raises(HoldoutMismatch, match=r"is 0.1 \(10%\) but the database records a hold-out of 25%"):
        await data.connect()
    assert data._pool is None  # nothing left open
    agreeing = ConsoleData(settings.model_copy(update={"database_url": SecretStr(database_url)}), read_only=True)
    await agreeing.connect()
    try:
        assert agreeing.holdout_share == 0.25
    finally:
        await agreeing.close()


async def test_the_holdout_command_shows_sets_and_audits(database_url: str, tmp_path: Path) -> None:
    empty = await asyncio.to_thread(cli, database_url, tmp_path, "holdout")
    assert empty.exit_code == 0 and "No hold-out" in empty.output
    bad = await asyncio.to_thread(cli, database_url, tmp_path, "holdout", "--share", "1.5", "--reason", "x")
    assert bad.exit_code == 2 and bad.output.startswith("error: --share must be a share in [0, 1)")
    done = await asyncio.to_thread(cli, database_url, tmp_path, "holdout", "--share", "0.15", "--operator", "ana")
    assert done.exit_code == 0 and "Hold-out set to 15%" in done.output
    refused = await asyncio.to_thread(cli, database_url, tmp_path, "holdout", "--share", "0.2")
    assert refused.exit_code == 1 and "--reason" in refused.output and "Traceback" not in refused.output
    changed = await asyncio.to_thread(cli, database_url, tmp_path, "holdout", "--share", "0.2", "--reason",
                                      "more evaluation windows", "--operator", "bo")
    assert changed.exit_code == 0 and "Hold-out set to 20% (was 15%)" in changed.output
    shown = await asyncio.to_thread(cli, database_url, tmp_path, "holdout")
    assert "20% of windows (rule sha256-v1), set by bo" in shown.output and "more evaluation windows" in shown.output
    assert "History (newest first)" in shown.output and "ana" in shown.output
    as_json = orjson.loads((await asyncio.to_thread(cli, database_url, tmp_path, "holdout", "--json")).stdout)
    assert as_json["share"] == 0.2 and as_json["holdout"]["set_by"] == "bo" and len(as_json["history"]) == 2


async def _trained_before_the_holdout(pool: asyncpg.Pool, model_id: str, step: int, windows: list[str]) -> None:
    """`model_id` as the engine registers a checkpoint: its batch named by its training key, the windows
    it trained on recorded for that key."""
    batch = f"offline:m:b{step}"
    await pool.execute('UPDATE trained_models SET "trainingBatch" = $2, version = $3 WHERE "modelId" = $1',
                       model_id, batch, f"step-{step}")
    await pool.executemany("INSERT INTO console_trained_windows (window_id, model_name, batch_id) VALUES ($1, $2, $3)",
                           [(w, "offline:m", batch) for w in windows])


async def test_an_evaluation_never_counts_a_window_a_compared_model_was_trained_on(
        pool: asyncpg.Pool, tmp_path: Path, database_url: str) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    base, trained = await _checkpoints(pool, tmp_path)
    newest = sorted({w for (w,) in await pool.fetch('SELECT DISTINCT "windowId" FROM trajectories')}, reverse=True)
    held = [w for w in newest if held_out(w, 0.3)]
    # step 1 learned from the three newest held-out windows (before any hold-out existed); the model's
    # step 2 (later) learned from the fourth: step 1 never saw it, so it still counts for step 1
    await _trained_before_the_holdout(pool, trained, 1, held[:3])
    await pool.execute('INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, '
                       '"storagePath", "createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
                       "m-step2", "step-2", "offline/linear-softmax-policy", "offline:m:b2", "registered", "offline://x/y/2")
    await pool.execute("INSERT INTO console_trained_windows (window_id, model_name, batch_id) VALUES ($1, $2, $3)",
                       held[3], "offline:m", "offline:m:b2")
    await set_holdout(pool, 0.3, operator="ana", reason=None)
    result = await evaluate(pool, tmp_path, trained, against="base", windows=6)
    assert not set(result.windows) & set(held[:3]) and held[3] in result.windows
    assert result.n == min(6, len(held) - 3) >= 3  # the next held-out windows take their place
    assert result.left_out_text == "3 windows left out: trained on before the hold-out was set"
    stored = await pool.fetchval("SELECT result FROM console_evaluations WHERE id = $1", result.id)
    assert sorted(orjson.loads(stored)["left_out"]) == sorted(held[:3])
    # the model compared with: its windows are left out too, with their own reason
    reverse = await evaluate(pool, tmp_path, base, against=trained, windows=6)
    assert set(reverse.left_out.values()) == {BY_COMPARISON} and not set(reverse.windows) & set(held[:3])
    # the CLI says so, in text and in JSON
    text = await asyncio.to_thread(cli, database_url, tmp_path, "models", "eval", trained, "--against", "base",
                                   "--windows", "4")
    assert text.exit_code == 0, text.output
    assert "3 windows left out: trained on before the hold-out was set" in text.output
    shown = orjson.loads((await asyncio.to_thread(cli, database_url, tmp_path, "models", "eval", trained,
                                                  "--against", "base", "--windows", "4", "--json")).stdout)
    assert len(shown["left_out"]) == 3 and shown["holdout_share"] == 0.3


async def test_models_eval_with_nothing_live_compares_with_the_base_model_and_says_so(
        pool: asyncpg.Pool, tmp_path: Path, database_url: str) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    _, trained = await _checkpoints(pool, tmp_path)
    await set_holdout(pool, 0.3, operator="ana", reason=None)
    text = await asyncio.to_thread(cli, database_url, tmp_path, "models", "eval", trained, "--windows", "4")
    assert text.exit_code == 0, text.output
    assert "nothing is live: compared with the base model" in text.output and "vs the base model" in text.output
    shown = orjson.loads((await asyncio.to_thread(cli, database_url, tmp_path, "models", "eval", trained,
                                                  "--windows", "4", "--json")).stdout)
    assert shown["note"] == "nothing is live: compared with the base model" and shown["against_model_id"] is None
    assert shown["against"] == "live"


def test_the_detail_line_names_the_windows_left_out() -> None:
    from babylon_console.core.checkpoints.evaluation import BEFORE_HOLDOUT, EvalResult
    from babylon_console.core.game.rows import TrainedModel
    from babylon_console.tui.data import CheckpointRow

    result = EvalResult(model_id="m", against="base", against_model_id=None, storage_path="a",
                        against_storage_path="b", windows=["w"] * 3, n=3, mean_a=1, mean_b=0, mean_diff=1,
                        ci_low=0.5, ci_high=1.5, win_rate=1.0,
                        left_out={"2026-11-20T01:00": BEFORE_HOLDOUT, "2026-11-20T02:00": BEFORE_HOLDOUT})
    model = TrainedModel(id="m", model_id="m", version="step-1", base_model="b", status="ready", storage_path="a")
    row = CheckpointRow(model, 1, {}, "ready", None, None, result)
    assert row.evaluation_summary is not None
    assert row.evaluation_summary.endswith("; 2 windows left out: trained on before the hold-out was set")
    mixed = result.model_copy(update={"left_out": {"a": BEFORE_HOLDOUT, "b": BY_COMPARISON, "c": BY_COMPARISON}})
    assert mixed.left_out_text == ("3 windows left out: 2 the model compared with was trained on it, "
                                   "1 trained on before the hold-out was set")


async def test_the_demo_sets_its_own_hold_out_in_the_database_it_runs_in(tmp_path: Path) -> None:
    from babylon_console.core.db.embedded import stop_embedded_server
    from babylon_console.core.simgame.demo import demo_settings
    from babylon_console.tui.data import ConsoleData
    from babylon_console.tui.runners.demo import engine_overrides_for_demo

    from ..demo_market import run_demo_until_a_window

    # the engine reads the record, as every engine
    assert "holdout_share" not in engine_overrides_for_demo(10.0).given()
    settings = demo_settings(Settings(BABYLON_DATA_DIR=str(tmp_path)))  # type: ignore[call-arg]
    data = ConsoleData(settings)
    await data.connect()
    try:
        await run_demo_until_a_window(data)
        record = await current_holdout(data.pool)
    finally:
        await data.close()
        stop_embedded_server(settings.data_dir / "pgdata")
    assert record is not None and (record.share, record.set_by) == (0.15, "demo")
