"""Operator actions from the keyboard: promote (with confirm), refusals, read-only, rollback, engine
control, quit during a run."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from textual.widgets import DataTable, RadioSet

from babylon_console.tui.dialogs.confirm import ConfirmDialog
from babylon_console.tui.dialogs.engine import EngineSettingsDialog
from babylon_console.tui.dialogs.promote import PromoteDialog
from babylon_console.tui.runners.engine import EngineOverrides
from babylon_console.tui.widgets.checkpoints import CheckpointsPane
from babylon_console.tui.widgets.training import TrainingPane

from .conftest import SIZE, FixedClock, insert_model, plain, wait_for


async def live_model(pool: Any) -> str | None:
    return await pool.fetchval("""SELECT "modelId" FROM trained_models WHERE status = 'deployed'""")


async def open_checkpoints(app: Any, pilot: Any, count: int) -> CheckpointsPane:
    await wait_for(lambda: app.db_ready, what="connection")
    await pilot.press("4")
    await wait_for(lambda: app.main.query_one("#checkpoints-table", DataTable).row_count == count, what="models")
    return app.main.pane(CheckpointsPane)


async def test_promote_to_100_percent_asks_to_confirm_then_makes_it_live(seeded, make_app) -> None:
    pool = seeded
    await insert_model(pool, 1)
    newest = await insert_model(pool, 2, avg_reward=0.61)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints(app, pilot, 2)
        assert pane.selected_id == newest  # newest first, selected
        await pilot.press("P")
        assert isinstance(app.screen, PromoteDialog)
        radio = app.screen.query_one(RadioSet)
        assert radio.has_focus
        assert app.screen.chosen() == 1.0  # nothing is live: an A/B share could not run, 100% is the default
        await pilot.press("tab", "enter")  # Continue
        assert isinstance(app.screen, ConfirmDialog)
        assert await live_model(pool) is None  # nothing happens before the confirmation
        await pilot.press("y")
        await wait_for(lambda: any(t.startswith("Promoted:") for t in app.toasts), what="promotion toast")
        assert await live_model(pool) == newest
        await wait_for(lambda: app.main.query_one("#checkpoints-audit", DataTable).row_count == 1, what="audit row")
        assert str(app.main.query_one("#checkpoints-audit", DataTable).get_row_at(0)[2]) == "tester"
        await wait_for(lambda: pane.selected() is not None and pane.selected().role == "live", what="live role")
        # the live model itself cannot be promoted again: the key says why
        await pilot.press("P")
        assert not isinstance(app.screen, PromoteDialog)
        assert any("already live" in t for t in app.toasts)


async def test_ab_rollout_then_rollback_with_confirm(seeded, make_app) -> None:
    pool = seeded
    first = await insert_model(pool, 1)
    second = await insert_model(pool, 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 2)
        await app.data.promote(first, 1.0)  # a live model to roll out next to
        app.main.mark_stale("checkpoints")
        pane = app.main.pane(CheckpointsPane)
        await wait_for(lambda: pane.view is not None and pane.view.live is not None, what="live model")
        assert pane.selected_id == second
        await pilot.press("P", "enter")  # default choice: A/B 10%
        assert isinstance(app.screen, PromoteDialog)
        await pilot.press("tab")
        await pilot.press("enter")  # Continue
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_for(lambda: pane.view is not None and pane.view.rollout is not None, what="rollout")
        assert pane.view.rollout.candidate_model_id == second
        assert abs(pane.view.rollout.candidate_share - 0.10) < 1e-9

        await pilot.press("R")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # cancelled: nothing changes
        assert not isinstance(app.screen, ConfirmDialog)
        assert (await app.data.checkpoints()).rollout is not None
        await pilot.press("R", "y")
        await wait_for(lambda: any(t.startswith("Rolled back") for t in app.toasts), what="rollback toast")
        assert (await app.data.checkpoints()).rollout is None
        assert await live_model(pool) == first


async def test_promote_is_refused_when_the_checkpoint_is_not_eligible(seeded, make_app) -> None:
    pool = seeded
    failed = await insert_model(pool, 3, status="failed")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints(app, pilot, 1)
        assert pane.selected_id == failed
        assert pane.check_action("promote", ()) is None  # disabled (dimmed in the footer)
        await pilot.press("P")
        assert not isinstance(app.screen, PromoteDialog)
        assert any("cannot be promoted" in t and "failed" in t for t in app.toasts)
        assert await live_model(pool) is None
        await pilot.press("R")  # nothing is live: nothing to roll back
        assert any("nothing to roll back" in t for t in app.toasts)


async def test_read_only_refuses_every_action_with_a_reason(seeded, make_app) -> None:
    pool = seeded
    await insert_model(pool, 1)
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_checkpoints(app, pilot, 1)
        assert "READ-ONLY" in app.main.pane_bar.mode
        for key in ("P", "R", "E", "X", "space"):
            await pilot.press(key)
            assert app.screen is app.main, key
        read_only_toasts = [t for t in app.toasts if "read-only" in t]
        assert len(read_only_toasts) >= 5
        assert await live_model(pool) is None
        assert app.engine is None
        # the data layer refuses too (defence in depth)
        import pytest

        from babylon_console.tui.data import RegistryError

        with pytest.raises(RegistryError, match="read-only"):
            await app.data.promote("babylon-agent-step0001", 1.0)


class StubEngine:
    """Stands in for EngineRunner where a real engine would only slow the test down."""

    def __init__(self) -> None:
        self.state = "running"
        self.run_id = "run-stub"
        self.error = None
        self.calls: list[str] = []
        self.overrides = EngineOverrides()

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "paused", "stopping")

    def pause(self) -> None:
        self.calls.append("pause")
        self.state = "paused"

    def resume(self) -> None:
        self.calls.append("resume")
        self.state = "running"

    def stop(self) -> None:
        self.calls.append("stop")
        self.state = "stopped"


async def test_quit_asks_first_while_a_run_is_active(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        stub = StubEngine()
        app.engine = stub  # type: ignore[assignment]
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert app.screen is app.main and app.is_running
        assert stub.calls == []
        await pilot.press("q", "y")
        await wait_for(lambda: not app.is_running, what="exit")
        assert stub.calls == ["stop"]


async def test_quit_without_a_run_does_not_ask(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_for(lambda: not app.is_running, what="exit")


async def test_pause_resume_and_stop_keys_steer_the_engine(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready)
        stub = StubEngine()
        app.engine = stub  # type: ignore[assignment]
        await pilot.press("space")
        assert stub.calls == ["pause"]
        await pilot.press("space")
        assert stub.calls == ["pause", "resume"]
        await pilot.press("E")  # already running: refused with a reason
        assert not isinstance(app.screen, EngineSettingsDialog)
        assert any("already running" in t for t in app.toasts)
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        assert stub.calls[-1] == "stop"
        await pilot.press("space")  # nothing runs any more
        assert any("no engine is running" in t for t in app.toasts)


async def test_attached_console_does_not_control_the_engine(make_app) -> None:
    app = make_app(attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready)
        await pilot.press("E")
        assert not isinstance(app.screen, EngineSettingsDialog)
        assert any("attached to a headless engine" in t for t in app.toasts)


async def test_engine_started_from_the_settings_dialog_trains_and_reports(seeded, make_app) -> None:
    app = make_app(follow_events=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready)
        await pilot.press("E")
        dialog = app.screen
        assert isinstance(dialog, EngineSettingsDialog)
        dialog.query_one("#engine-iterations").value = "1"
        dialog.query_one("#engine-min_agents").value = "3"
        dialog.query_one("#engine-settle_seconds").value = "0"
        dialog.query_one("#engine-windows_per_iteration").value = "2"
        dialog.query_one("#engine-lookback_hours").value = "100000"
        await pilot.click("#start")
        assert app.screen is app.main
        assert app.engine is not None
        assert app.readiness_criteria()[0].min_agents == 3
        await pilot.press("3")
        training = app.main.pane(TrainingPane)
        await wait_for(lambda: training.state.step == 1, limit_s=60, what="a trained step")
        await wait_for(lambda: not app.engine.active, limit_s=30, what="engine end")
        assert app.engine.state == "stopped"
        assert len(training.state.series["loss/train"]) == 1
        assert {row.status for row in training.state.judging.values()} == {"trained"}
        await wait_for(lambda: any(t.startswith("Engine: Engine stopped") for t in app.toasts), what="toast")
        await pilot.press("4")
        await wait_for(lambda: app.main.query_one("#checkpoints-table", DataTable).row_count == 1, what="model")


async def test_attached_console_pauses_resumes_and_stops_an_engine_elsewhere(make_app, pool, settings) -> None:
    """An engine this console did not start (here: on the same loop, through its own pool) is
    controlled through the database: command row + NOTIFY, acknowledged, operator recorded."""
    import asyncio

    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig
    from babylon_console.core.engine.run_state import EngineState

    engine = Engine(pool, EngineConfig(iterations=None, poll_seconds=0.2, heartbeat_s=0.3), settings=settings,
                    clock=FixedClock())
    run = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.state is EngineState.RUNNING, what="the engine running")
    app = make_app(attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.remote_run is not None and app.remote_run.active, what="the remote run")
        await pilot.press("space")
        await wait_for(lambda: engine.state is EngineState.PAUSED, what="paused")
        await wait_for(lambda: any("pause acknowledged" in t for t in app.toasts), what="the acknowledgement")
        await wait_for(lambda: app.remote_run.state == "paused", what="the console seeing it paused")
        await pilot.press("space")
        await wait_for(lambda: engine.state is EngineState.RUNNING, what="resumed")
        await pilot.press("X")
        await pilot.press("y")
        summary = await asyncio.wait_for(run, 20)
        assert summary.state is EngineState.STOPPED
        commands = await pool.fetch("SELECT command, operator, result FROM console_engine_commands ORDER BY id")
        assert [c["command"] for c in commands] == ["pause", "resume", "stop"]
        assert {c["operator"] for c in commands} == {"tester"} and all(c["result"] for c in commands)


async def test_an_engine_that_does_not_answer_is_reported(make_app, pool) -> None:
    await pool.execute(
        "INSERT INTO console_runs (id, model_name, backend, judge, state, host, pid, heartbeat_at, heartbeat_s) "
        "VALUES ('run-deaf', 'babylon-agent', 'offline', 'outcome', 'running', 'trainer-2', 7, now(), 600)")
    app = make_app(attach=True)
    app.command_timeout_s = 0.5
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.remote_run is not None and app.remote_run.active, what="the remote run")
        await pilot.press("space")
        await wait_for(lambda: any("did not answer within 0.5 s" in t for t in app.toasts), what="no answer")
    assert await pool.fetchval("SELECT count(*) FROM console_engine_commands WHERE acked_at IS NULL") == 1


async def _bad_evaluation(pool: Any, model_id: str) -> None:
    """A stored held-out evaluation whose CI is below zero (as `models eval` would store it)."""
    import orjson

    result = {"model_id": model_id, "against": "base", "against_model_id": None, "storage_path": "offline://x:1",
              "against_storage_path": "offline://x:0", "windows": ["w1", "w2", "w3"], "n": 3, "mean_a": -9.0,
              "mean_b": 1.0, "mean_diff": -10.0, "ci_low": -14.0, "ci_high": -6.0, "win_rate": 0.0,
              "cs_low": -20.0, "cs_high": -1.0, "cs_alpha": 0.05}
    await pool.execute("INSERT INTO console_evaluations (model_id, against, result) VALUES ($1, 'base', $2::jsonb)",
                       model_id, orjson.dumps(result).decode())


async def test_promoting_against_the_evidence_needs_the_typed_id_and_a_reason(seeded, make_app) -> None:
    from textual.widgets import Button, Input

    from babylon_console.core.checkpoints.promotion import promote_on_evidence
    from babylon_console.tui.dialogs.confirm import TypedConfirmDialog

    pool = seeded
    model = await insert_model(pool, 1)
    await promote_on_evidence(pool, await insert_model(pool, 0), share=1.0, operator="op")  # an A/B share needs it
    await _bad_evaluation(pool, model)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints(app, pilot, 2)
        await wait_for(lambda: pane.selected() is not None and pane.selected().evaluation is not None, what="eval")
        await pilot.press("P")
        await pilot.press("down", "up", "enter")  # 10%, then Continue
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, TypedConfirmDialog), what="typed confirmation")
        dialog = app.screen
        assert "below zero" in str(dialog.query_one(".dialog-body").render())
        await pilot.press(*"wrong-id", "tab", *"because")
        assert dialog.query_one("#confirm", Button).disabled  # the id does not match
        dialog.query_one("#typed-model", Input).value = model
        await pilot.pause()
        assert not dialog.query_one("#confirm", Button).disabled
        await pilot.click("#confirm")
        await wait_for(lambda: any(t.startswith("A/B rollout:") for t in app.toasts), what="rollout toast")
    note, evidence = await pool.fetchrow("SELECT note, evidence FROM console_promotions ORDER BY id DESC LIMIT 1")
    assert note.startswith("against the evidence (held-out evaluation") and note.endswith(": because")
    assert "evaluation" in evidence


async def test_v_evaluates_the_selected_checkpoint_on_held_out_windows(seeded, settings, make_app) -> None:
    from babylon_console.core.checkpoints.holdout import set_holdout
    from babylon_console.tui.data import ConsoleData

    from ..checkpoints.test_evaluation import _checkpoints

    pool = seeded
    _, trained = await _checkpoints(pool, settings.data_dir)
    await set_holdout(pool, 0.6, operator="tester", reason=None)  # the database's hold-out, not a setting
    app = make_app(data=ConsoleData(settings, clock=FixedClock(), label="test database", operator="tester"))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_checkpoints(app, pilot, 2)
        await wait_for(lambda: pane.selected_id == trained, what="newest selected")
        await pilot.press("V")
        await wait_for(lambda: any(t.startswith("Evaluated:") for t in app.toasts), limit_s=30, what="evaluation")
        await wait_for(lambda: pane.selected() is not None and pane.selected().evaluation is not None, what="shown")
        assert "vs base" in pane.selected().evaluation_text
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations WHERE model_id = $1", trained) == 1


async def test_v_evaluates_a_serverless_checkpoint_at_its_endpoint_and_names_one_that_does_not_answer(
        seeded, settings, make_app, tokenizer_dir) -> None:
    from babylon_console.core.checkpoints.holdout import set_holdout
    from babylon_console.core.sim.actions import HOLD, format_response
    from babylon_console.core.training.tokenization import load_tokenizer
    from babylon_console.tui.data import ConsoleData
    from babylon_console.tui.dialogs.confirm import ErrorDialog

    from ..fake_wandb_training import FakeWandbTraining

    pool = seeded
    run = "wandb-artifact:///acme/babylon-console/babylon-agent"
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
        "served-step2", "OpenPipe/Qwen3-14B-Instruct", "batch-2", "registered", f"{run}:step2")
    await insert_model(pool, 1, status="deployed")  # an offline live model: not comparable, so V takes the base
    async with FakeWandbTraining(load_tokenizer(str(tokenizer_dir))) as fake:
        fake.add_model("acme", "babylon-console", "babylon-agent", [0, 2])
        # the checkpoint holds (0.5 a prompt); the base answers nothing usable (0)
        fake.answer = lambda name, _: format_response(HOLD, "wait") if name.endswith(":step2") else "no idea"
        await set_holdout(pool, 0.6, operator="tester", reason=None)
        held = settings.model_copy(update={"wandb_api_key": SecretStr("k" * 40),
                                           "serverless_base_url": fake.base_url, "eval_timeout_s": 2.0})
        app = make_app(data=ConsoleData(held, clock=FixedClock(), label="test database", operator="tester"))
        async with app.run_test(size=SIZE) as pilot:
            pane = await open_checkpoints(app, pilot, 2)
            await wait_for(lambda: pane.selected_id == "served-step2" and pane.view.live is not None, what="live")
            await pilot.press("V")
            await wait_for(lambda: any(t.startswith("Evaluated:") for t in app.toasts), limit_s=30, what="evaluation")
            assert any("+0.50 outcome score per answer" in t for t in app.toasts)
            await wait_for(lambda: pane.selected() is not None and pane.selected().evaluation is not None,
                           what="shown")
            assert pane.selected().evaluation_text.startswith("score +0.50") and "vs base" in pane.selected(
                ).evaluation_text
            await wait_for(lambda: "recorded prompts" in plain(app.main.query_one("#checkpoints-detail")),
                           what="detail line")
            assert "not a valid action: 0 vs" in plain(app.main.query_one("#checkpoints-detail"))
            await fake.__aexit__(None, None, None)  # the service goes away
            await pilot.press("V")
            await wait_for(lambda: isinstance(app.screen, ErrorDialog) and bool(app.screen.query(".dialog-body")),
                           limit_s=30, what="error dialog")
            shown = str(app.screen.query_one(".dialog-body").render())
            assert "does not answer" in shown and fake.base_url in shown
            assert app.health.outage is None and app.db_ready  # not taken for a database outage
    assert await pool.fetchval("SELECT count(*) FROM console_evaluations") == 1
