"""The hold-out rule and held-out evaluation (`core.game.windows.held_out`, `core.checkpoints.evaluation`)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg
import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.checkpoints.evaluation import evaluate, latest_per_model
from babylon_console.core.checkpoints.holdout import set_holdout
from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.errors import InvalidInput, Refused
from babylon_console.core.game.windows import WindowFigures, WindowState, assess, held_out
from babylon_console.core.names import offline_name
from babylon_console.core.sim.actions import FEATURE_DIM
from babylon_console.core.sim.policy import LinearSoftmaxPolicy
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.backends.factory import checkpoint_root
from babylon_console.core.training.backends.offline import OfflineBackend

NOW = datetime(2026, 11, 24, 12, 0)


def test_the_hold_out_rule_is_deterministic_and_reserves_about_its_share() -> None:
    ids = [f"2026-{m:02d}-{d:02d}T{h:02d}:00" for m in (1, 2, 3) for d in range(1, 29) for h in range(24)]
    share = sum(held_out(w, 0.2) for w in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [held_out(w, 0.2) for w in ids[:50]] == [held_out(w, 0.2) for w in ids[:50]]
    assert not any(held_out(w, 0.0) for w in ids)
    assert all(held_out(w, 0.1) <= held_out(w, 0.2) for w in ids)  # a larger share only adds windows


def test_a_held_out_window_is_never_ready() -> None:
    window = next(f"2026-11-20T{h:02d}:00" for h in range(24) if held_out(f"2026-11-20T{h:02d}:00", 0.5))
    figures = WindowFigures(window_id=window, trajectories=8, agents=8, qualified_agents=8, steps=40)
    readiness = assess(figures, ReadinessCriteria(holdout_share=0.5), NOW)
    assert readiness.state is WindowState.HELD_OUT and not readiness.ready
    assert "held out for evaluation" in readiness.reasons[0]
    assert assess(figures, ReadinessCriteria(), NOW).ready  # no hold-out: the same window is ready


async def _checkpoints(pool: asyncpg.Pool, data_dir: Path) -> tuple[str, str]:
    """Step 0 (uniform) and a step 1 with other weights, registered as the registry knows them."""
    backend = OfflineBackend(checkpoint_root(data_dir, "offline"))
    project, run = "babylon-console", "eval-test"
    for step, weights in ((0, np.zeros(FEATURE_DIM)), (1, np.random.default_rng(3).normal(0, 2, FEATURE_DIM))):
        path = backend.run_dir(project, run) / "checkpoints" / f"{step:04d}" / "policy.json"
        LinearSoftmaxPolicy(weights, name=f"{run}:step{step}").save(path)
        await pool.execute(
            'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
            '"createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
            f"m-step{step}", f"step-{step}", "offline/linear-softmax-policy", f"batch-{step}", "registered",
            offline_name(project, run, step))
    return "m-step0", "m-step1"


async def test_evaluate_replays_held_out_windows_for_both_models_and_stores_the_result(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    base, trained = await _checkpoints(pool, tmp_path)
    done: list[int] = []
    result = await evaluate(pool, tmp_path, trained, against="base", windows=6,
                            progress=lambda i, n: done.append(i))
    assert result.n == 6 and done == [1, 2, 3, 4, 5, 6]
    assert all(held_out(w, 0.3) for w in result.windows)
    assert result.against_storage_path.endswith(":step0") and result.ci_low is not None
    assert abs(result.mean_diff - (result.mean_a - result.mean_b)) < 1e-6
    again = await evaluate(pool, tmp_path, trained, against=base, windows=6)
    assert again.mean_diff == pytest.approx(result.mean_diff)  # same seeds, same windows: the same figures
    assert (await latest_per_model(pool))[trained].id == again.id


async def test_bad_evaluations_say_why_and_record_nothing(pool: asyncpg.Pool, tmp_path: Path,
                                                          database_url: str) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 6, NOW)
    base, trained = await _checkpoints(pool, tmp_path)
    with pytest.raises(InvalidInput, match="no checkpoint with model id 'nope'"):
        await evaluate(pool, tmp_path, "nope")
    with pytest.raises(InvalidInput, match="this database has no hold-out; set one with `babylon-console holdout"):
        await evaluate(pool, tmp_path, trained, against="base")  # no record: nothing is held out
    await set_holdout(pool, 0.01, operator="tester", reason=None)
    with pytest.raises(InvalidInput, match="held-out simulated window"):
        await evaluate(pool, tmp_path, trained, against="base")  # too few held out
    await set_holdout(pool, 0.3, operator="tester", reason="more windows")
    await pool.execute("""UPDATE trained_models SET status = 'failed' WHERE "modelId" = $1""", base)
    with pytest.raises(Refused, match="status is 'failed'"):
        await evaluate(pool, tmp_path, base, against=trained)
    await pool.execute("""UPDATE trained_models SET "storagePath" = 'wandb-artifact:///e/p/m:step1'
                          WHERE "modelId" = $1""", trained)
    await pool.execute("""UPDATE trained_models SET status = 'registered' WHERE "modelId" = $1""", base)
    with pytest.raises(Refused, match=r"m-step1 \(wandb-artifact\) and m-step0 \(offline\) cannot be compared"):
        await evaluate(pool, tmp_path, trained, against=base)
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations") == 0
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path), "models", "eval", "nope", "--json"],
        catch_exceptions=False)
    assert result.exit_code == 2 and result.output.startswith("error: no checkpoint with model id 'nope'")


async def test_models_eval_prints_json(pool: asyncpg.Pool, tmp_path: Path, database_url: str) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    _, trained = await _checkpoints(pool, tmp_path)
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path), "models", "eval", trained, "--against", "base",
        "--windows", "4", "--json"], env={"BABYLON_HOLDOUT_SHARE": "0.3"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    assert shown["n"] == 4 and shown["model_id"] == trained and shown["against_model_id"] is None


class _Clock:
    def now(self) -> datetime:
        return NOW


async def test_the_engine_never_trains_held_out_windows_and_evaluates_each_kth_checkpoint(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig

    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), 24, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = EngineConfig(iterations=2, windows_per_iteration=3, min_agents=5, min_steps=4, lookback_hours=48,
                          max_per_group=6, holdout_share=0.3, eval_every=2, force=True)
    summary = await Engine(pool, config, settings=settings, clock=_Clock()).run()
    assert summary.steps == [1, 2] and summary.windows_trained
    assert not any(held_out(w, 0.3) for w in summary.windows_trained)
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM console_events ORDER BY id")]
    assert kinds.count("checkpoint_evaluated") == 1  # step 2 only (every 2nd)
    evaluated = await latest_per_model(pool)
    assert list(evaluated) == [summary.checkpoints[1]] and evaluated[summary.checkpoints[1]].against == "base"


async def test_promoting_against_held_out_evidence_needs_a_reason(pool: asyncpg.Pool, tmp_path: Path,
                                                                  database_url: str) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    _, trained = await _checkpoints(pool, tmp_path)
    result = await evaluate(pool, tmp_path, trained, against="base", windows=6)
    await pool.execute("UPDATE console_evaluations SET result = jsonb_set(jsonb_set(jsonb_set(jsonb_set(result, "
                       "'{ci_high}', '-1'), '{ci_low}', '-5'), '{cs_high}', '-0.5'), '{cs_low}', '-9')")
    # as if the evaluation had come out below zero (the verdict reads the anytime-valid bound, cs_*)
    base = ["--database-url", database_url, "--data-dir", str(tmp_path), "models", "promote", trained, "--yes"]
    refused = await asyncio.to_thread(CliRunner().invoke, app, base, catch_exceptions=False)
    assert refused.exit_code == 1 and "against the evidence" in refused.output and "--reason" in refused.output
    assert await pool.fetchval("SELECT count(*) FROM console_promotions") == 0
    done = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--reason", "operator judgement"],
                                   catch_exceptions=False)
    assert done.exit_code == 0, done.output
    note, evidence = await pool.fetchrow("SELECT note, evidence FROM console_promotions")
    assert "against the evidence" in note and note.endswith("operator judgement")
    recorded = orjson.loads(evidence)["evaluation"]
    assert recorded["mean_diff"] == pytest.approx(result.mean_diff) and recorded["ci_high"] == -1


async def test_garbage_metadata_is_skipped_not_fatal(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A held-out window whose rows carry broken metadata (not JSON, no seed) is left out of the
    evaluation; the rest is evaluated."""
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    _, trained = await _checkpoints(pool, tmp_path)
    victim = next(w for (w,) in await pool.fetch('SELECT DISTINCT "windowId" FROM trajectories ORDER BY 1 DESC')
                  if held_out(w, 0.3))
    await pool.execute("""UPDATE trajectories SET "metadataJson" = '{"simulated":true, seed: oops'
                          WHERE "windowId" = $1""", victim)
    result = await evaluate(pool, tmp_path, trained, against="base", windows=4)
    assert result.n == 4 and victim not in result.windows


async def test_a_slow_evaluation_never_fails_the_step_it_evaluates(pool: asyncpg.Pool, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation runs after the registration and outside its deadline: an evaluation longer
    than BABYLON_REGISTER_TIMEOUT_S leaves the step registered and its batch completed."""
    from babylon_console.core.checkpoints import evaluation
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig

    real = evaluation.evaluate

    async def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(1.5)
        return await real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", slow)
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), 24, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = EngineConfig(iterations=1, windows_per_iteration=3, min_agents=5, min_steps=4, lookback_hours=48,
                          max_per_group=6, holdout_share=0.3, eval_every=1, register_timeout_s=0.5, force=True)
    summary = await Engine(pool, config, settings=settings, clock=_Clock()).run()
    assert summary.steps == [1]
    statuses = [r["status"] for r in await pool.fetch("SELECT status FROM training_batches")]
    assert statuses == ["completed"], statuses
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM console_events ORDER BY id")]
    assert kinds.count("checkpoint_evaluated") == 1 and "batch_failed" not in kinds


async def test_an_evaluation_that_breaks_is_a_warning_never_a_failed_engine(pool: asyncpg.Pool, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from babylon_console.core.checkpoints import evaluation
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("Expecting value: line 1 column 1 (char 0)")  # e.g. an endpoint's body that is not JSON

    monkeypatch.setattr(evaluation, "evaluate", broken)
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), 24, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"))  # type: ignore[call-arg]
    config = EngineConfig(iterations=1, windows_per_iteration=3, min_agents=5, min_steps=4, lookback_hours=48,
                          max_per_group=6, holdout_share=0.3, eval_every=1, force=True)
    summary = await Engine(pool, config, settings=settings, clock=_Clock()).run()
    assert summary.steps == [1]
    warnings = [orjson.loads(p)["message"] for (p,) in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'warning'")]
    assert any("not evaluated: " in w and "Expecting value" in w for w in warnings), warnings


async def test_an_evaluation_past_its_deadline_is_cut_off_with_a_warning(pool: asyncpg.Pool, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from babylon_console.core.checkpoints import evaluation
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig

    async def endless(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)

    monkeypatch.setattr(evaluation, "evaluate", endless)
    await seed_history(pool, Simulation(seed=5, n_agents=7, steps_per_window=6), 24, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path / "data"), BABYLON_EVAL_DEADLINE_S=0.5)  # type: ignore[call-arg]
    config = EngineConfig(iterations=1, windows_per_iteration=3, min_agents=5, min_steps=4, lookback_hours=48,
                          max_per_group=6, holdout_share=0.3, eval_every=1, force=True)
    summary = await asyncio.wait_for(Engine(pool, config, settings=settings, clock=_Clock()).run(), 60)
    assert summary.steps == [1]
    warnings = [orjson.loads(p)["message"] for (p,) in await pool.fetch(
        "SELECT payload FROM console_events WHERE kind = 'warning'")]
    assert any("did not finish within 0.5 s (BABYLON_EVAL_DEADLINE_S)" in w for w in warnings), warnings


async def test_offline_checkpoints_can_be_evaluated_on_recorded_prompts_too(pool: asyncpg.Pool, tmp_path: Path,
                                                                           database_url: str) -> None:
    """`--method prompts` on the offline path: the same held-out prompts, judge and statistics as for
    a served checkpoint, the policies answering in process; the same figures twice."""
    await seed_history(pool, Simulation(seed=3, n_agents=4, steps_per_window=3), 40, NOW)
    await set_holdout(pool, 0.3, operator="tester", reason=None)
    _, trained = await _checkpoints(pool, tmp_path)
    result = await evaluate(pool, tmp_path, trained, against="base", windows=4, prompts=3, method="prompts")
    assert (result.method, result.judge, result.n, result.prompts) == ("prompts", "outcome", 4, 12)
    assert result.unusable_a == result.unusable_b == 0  # the policy always answers a valid action
    assert result.endpoint_a is not None and "in process" in result.endpoint_a
    again = await evaluate(pool, tmp_path, trained, against="base", windows=4, prompts=3, method="prompts")
    assert again.window_diffs == result.window_diffs and again.windows == result.windows
    cli = await asyncio.to_thread(CliRunner().invoke, app, [
        "--database-url", database_url, "--data-dir", str(tmp_path), "models", "eval", trained, "--against", "base",
        "--windows", "3", "--prompts", "2", "--method", "prompts", "--json"],
        env={"BABYLON_HOLDOUT_SHARE": "0.3"}, catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    assert orjson.loads(cli.stdout)["method"] == "prompts"
    await pool.execute("""UPDATE trained_models SET "storagePath" = 'wandb-artifact:///e/p/m:step1'
                          WHERE "modelId" = $1""", trained)
    with pytest.raises(Refused, match="the simulator runs offline checkpoints only"):
        await evaluate(pool, tmp_path, trained, against="base", windows=4, method="simulator")
