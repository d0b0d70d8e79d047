"""Training health and alarms in the console: the Training pane's Health strip shows the stored figures
of the newest step (a missing one as — with its reason), an alarm is a toast and a badge seen from every
pane, the acknowledge key records who acknowledged it and clears the badge, and a read-only console
refuses it with the sentence every refused action says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from textual.widgets import DataTable

from babylon_console.core import events
from babylon_console.core.config import Settings
from babylon_console.core.events import Event, EventKind
from babylon_console.core.stats import Figure
from babylon_console.core.training.alarms import AlarmRule, RaisedAlarm
from babylon_console.core.training.health import StepHealth
from babylon_console.core.training.health_store import AlarmRecord, record_alarm, save_health
from babylon_console.tui.data import ConsoleData
from babylon_console.tui.state import EngineView
from babylon_console.tui.widgets.health import HealthStrip
from babylon_console.tui.widgets.training import TrainingPane

from ..role_logins import logins
from .conftest import SIZE, FixedClock, plain, training_events, wait_for
from .test_snapshots import _run_on_fixture_loop, _training_drawn

KEY = "offline:babylon-agent"  # the training key of the console's default settings


def stored_health(step: int = 12) -> StepHealth:
    return StepHealth(
        model_name=KEY, step=step, run_id="run-fixed", groups=4, zero_spread_share=Figure.of(0.25),
        reward_mean=Figure.of(0.612), reward_std=Figure.of(0.14),
        kl=Figure.lacking("the backend reported no loss/kl_div"), entropy=Figure.of(2.8),
        tokens_per_call=Figure.of(182), action_mix={"buy": 9, "sell": 5, "hold": 6}, action_entropy=Figure.of(1.52),
        rank_correlation=Figure.of(0.43), rank_correlation_rolling=Figure.of(0.38), judge_trend=Figure.of(0.012),
        pnl_trend=Figure.of(1.3), holdout_trend=Figure.lacking("fewer than 2 held-out evaluations"))


async def raise_alarm(pool: asyncpg.Pool, rule: AlarmRule = AlarmRule.entropy_collapse, step: int = 12,
                      paused: bool = False) -> tuple[AlarmRecord, Event]:
    """An alarm as the engine raises it: stored, then announced."""
    alarm = RaisedAlarm(rule=rule, step=step, figures={"entropy": 0.31, "median": 2.8}, threshold=0.5,
                        message=f"entropy fell to 0.31 at step {step}, below 0.50 of its median 2.80")
    record = await record_alarm(pool, alarm, model_name=KEY, run_id="run-fixed")
    event = await events.emit(pool, record.event(paused=paused), run_id="run-fixed")
    return record, event


def strip(app: Any) -> str:
    return " ".join(plain(app.main.query_one(HealthStrip), 160).split())


async def open_training(app: Any, pilot: Any) -> TrainingPane:
    await wait_for(lambda: app.db_ready, what="connection")
    await pilot.press("3")
    pane = app.main.pane(TrainingPane)
    await wait_for(lambda: pane.health_view is not None, what="health read")
    return pane


async def test_the_strip_shows_the_newest_steps_figures_and_why_one_is_missing(pool: asyncpg.Pool,
                                                                               make_app: Any) -> None:
    await save_health(pool, stored_health(11).model_copy(update={"kl": Figure.of(0.5)}))
    await save_health(pool, stored_health(12))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_training(app, pilot)
        await wait_for(lambda: "step 12" in strip(app), what="the newest step")
        text = strip(app)
        for shown in ("no spread 25%", "reward 0.612 ± 0.140", "KL —", "entropy 2.80", "tokens/call 182",
                      "actions 1.52 bits, top buy 45%", "judge~P&L ρ +0.43 (rolling +0.38)",
                      "judge +0.012 · P&L +1.30 · held-out —"):
            assert shown in text, (shown, text)
        assert "0.5000" not in text  # step 11's KL: the newest step only
        # why each missing figure is missing: in a line of its own, and in full in the tooltip
        assert "why: KL: the backend reported no loss/kl_div" in text
        tooltip = str(app.main.query_one(HealthStrip).tooltip)
        assert "KL: — (the backend reported no loss/kl_div)" in tooltip
        assert "held-out trend: — (fewer than 2 held-out evaluations)" in tooltip
        assert not app.main.query_one("#training-alarms", DataTable).display  # no alarm: no list


async def test_the_strip_says_when_nothing_is_stored(pool: asyncpg.Pool, make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_training(app, pilot)
        assert "Health: no figures yet" in strip(app)
        assert app.main.pane(TrainingPane).why_refused("acknowledge_alarm") == "no open alarm to acknowledge"


async def test_an_alarm_is_a_toast_and_a_badge_on_every_pane(pool: asyncpg.Pool, make_app: Any) -> None:
    await save_health(pool, stored_health(12))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_training(app, pilot)
        await pilot.press("1")  # another pane: the badge is seen from there too
        record, event = await raise_alarm(pool)
        app.add_events([event])
        said = f"Alarm: entropy_collapse: alarm entropy_collapse at step 12: {record.message}"
        await wait_for(lambda: said in app.toasts, what="the alarm's toast")
        await wait_for(lambda: "alarms" in app.main.status.parts and app.main.status.parts["alarms"].plain,
                       what="the badge")
        assert app.main.status.parts["alarms"].plain == "⚠ 1 open alarm (3 Training)"
        assert app.main.pane_bar.badges["training"] == "⚠1"
        await pilot.press("3")  # the Training pane: the alarm listed, its figure marked
        await wait_for(lambda: pane.health_view is not None and pane.health_view.alarms, what="the alarm list")
        table = app.main.query_one("#training-alarms", DataTable)
        assert table.display and table.row_count == 1
        row = [str(c) for c in table.get_row_at(0)]
        assert row[:4] == ["entropy_collapse", "open", "step 12", record.message]
        assert "⚠ entropy 2.80" in strip(app)


async def test_the_key_acknowledges_as_the_operator_and_clears_the_badge(pool: asyncpg.Pool, make_app: Any) -> None:
    await save_health(pool, stored_health(12))
    older, _ = await raise_alarm(pool, AlarmRule.kl_spike, step=11)
    newest, _ = await raise_alarm(pool, AlarmRule.entropy_collapse, step=12)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_training(app, pilot)
        await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠2", what="two open")
        await pilot.press("a")  # the newest open alarm
        await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠1", what="one open")
        row = await pool.fetchrow("SELECT acknowledged_by, acknowledged_db_role, acknowledged_at FROM console_alarms "
                                  "WHERE id = $1", newest.id)
        assert row["acknowledged_by"] == "tester" and row["acknowledged_db_role"] and row["acknowledged_at"]
        assert any(t.startswith(f"Alarm acknowledged: Alarm {newest.id} (entropy_collapse, step 12) acknowledged "
                                "by tester") for t in app.toasts), app.toasts
        listed = app.main.query_one("#training-alarms", DataTable)
        await wait_for(lambda: str(listed.get_row_at(0)[1]).startswith("ack tester "), what="the list says who")
        assert str(listed.get_row_at(0)[5]).startswith("acknowledged by tester (db ")
        await pilot.press("a")  # then the older one
        await wait_for(lambda: not app.main.pane_bar.badges.get("training"), what="no open alarm")
        assert not app.main.status.parts["alarms"].plain
        assert await pool.fetchval("SELECT acknowledged_by FROM console_alarms WHERE id = $1", older.id) == "tester"
        await wait_for(lambda: pane.why_refused("acknowledge_alarm") == "no open alarm to acknowledge",
                       what="nothing left to acknowledge")


async def test_the_highlighted_alarm_is_the_one_acknowledged(pool: asyncpg.Pool, make_app: Any) -> None:
    older, _ = await raise_alarm(pool, AlarmRule.kl_spike, step=11)
    newest, _ = await raise_alarm(pool, AlarmRule.entropy_collapse, step=12)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_training(app, pilot)
        await wait_for(lambda: pane.health_view.alarms, what="alarms")
        table = app.main.query_one("#training-alarms", DataTable)
        table.focus()
        await pilot.press("j")  # the older alarm, second row
        await pilot.press("a")
        await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠1", what="one open")
        assert await pool.fetchval("SELECT acknowledged_by FROM console_alarms WHERE id = $1", older.id) == "tester"
        assert await pool.fetchval("SELECT acknowledged_at FROM console_alarms WHERE id = $1", newest.id) is None
        await wait_for(lambda: str(table.get_row_at(1)[1]).startswith("ack tester"), what="the list follows")
        await pilot.press("a")  # highlighted and acknowledged: the key says so, nothing changes
        assert pane.why_refused("acknowledge_alarm").startswith(f"alarm {older.id} (kl_spike) is already "
                                                                "acknowledged by tester")


async def test_a_read_only_console_refuses_to_acknowledge(pool: asyncpg.Pool, make_app: Any) -> None:
    record, _ = await raise_alarm(pool)
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_training(app, pilot)
        await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠1", what="the badge")
        await pilot.press("a")
        said = "Acknowledge alarm: read-only console: acknowledge alarm is refused (started with --read-only)"
        await wait_for(lambda: said in app.toasts, what="the refusal")
        assert await pool.fetchval("SELECT acknowledged_at FROM console_alarms WHERE id = $1", record.id) is None
        assert app.main.pane_bar.badges.get("training") == "⚠1"


def _as_login(url: str, tmp_path: Path) -> ConsoleData:
    settings = Settings(database_url=url, data_dir=tmp_path / "data")  # type: ignore[arg-type]
    return ConsoleData(settings, clock=FixedClock(), label="test database", operator="tester")


async def test_the_servers_roles_decide_who_may_acknowledge(pool: asyncpg.Pool, database_url: str, make_app: Any,
                                                            tmp_path: Path) -> None:
    record, _ = await raise_alarm(pool)
    async with logins(database_url) as login:
        observer = await login("observer")
        app = make_app(data=_as_login(observer, tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await open_training(app, pilot)
            await pilot.press("a")  # refused before anything is written, naming the group that may
            said = (f"Acknowledge alarm: read-only: database role {urlsplit(observer).username} is an observer and "
                    "may not acknowledge alarms: that needs babylon_operator")
            await wait_for(lambda: any(t.startswith(said) for t in app.toasts), what="the refusal")
        assert await pool.fetchval("SELECT acknowledged_at FROM console_alarms WHERE id = $1", record.id) is None
        operator = await login("operator")
        app = make_app(data=_as_login(operator, tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await open_training(app, pilot)
            await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠1", what="the badge")
            await pilot.press("a")
            await wait_for(lambda: not app.main.pane_bar.badges.get("training"), what="acknowledged")
    row = await pool.fetchrow("SELECT acknowledged_by, acknowledged_db_role FROM console_alarms WHERE id = $1",
                              record.id)
    assert row["acknowledged_by"] == "tester" and row["acknowledged_db_role"] == urlsplit(operator).username


async def test_the_acknowledge_key_acts_only_on_the_training_pane(pool: asyncpg.Pool, make_app: Any) -> None:
    record, _ = await raise_alarm(pool)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.db_ready, what="connection")
        await wait_for(lambda: app.main.pane_bar.badges.get("training") == "⚠1", what="the badge")
        await pilot.press("a")  # the Windows pane: nothing happens
        await pilot.pause(0.3)
        assert await pool.fetchval("SELECT acknowledged_at FROM console_alarms WHERE id = $1", record.id) is None


async def test_the_state_line_says_the_engine_paused_itself_on_an_alarm(pool: asyncpg.Pool, make_app: Any) -> None:
    _, alarm = await raise_alarm(pool, paused=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_training(app, pilot)
        pane.wall_clock = False
        base = datetime(2025, 11, 24, 12, 0, tzinfo=UTC)
        paused = Event(id=10_000, run_id="run-fixed", kind=EventKind.RUN_PAUSED, created_at=base,
                       payload={"operator": "alarm", "message": "paused by alarm entropy_collapse"})
        app.add_events([*training_events(2), alarm, paused])
        app.main.engine = EngineView(here=True, state="paused", run_id="run-fixed")
        status = app.main.query_one("#training-status")
        await wait_for(lambda: "paused itself on an alarm: entropy_collapse at step 12" in plain(status, 160),
                       what="the state line")
        resumed = Event(id=10_001, run_id="run-fixed", kind=EventKind.RUN_RESUMED, created_at=base,
                        payload={"operator": "tester"})
        app.add_events([resumed])
        app.main.engine = EngineView(here=True, state="running", run_id="run-fixed")
        await wait_for(lambda: "paused itself" not in plain(status, 160), what="resumed")


# -- the look: the Training pane with its Health strip and alarm list ----------------------------------

_FIXED_ALARMS = """
INSERT INTO console_alarms (run_id, model_name, rule, step, figures, threshold, message, created_at)
VALUES ('run-fixed', $1, 'kl_spike', 9, '{"kl": 0.31}', 4.0,
        'KL 0.3100 at step 9 is 5.2 robust SDs above its recent median 0.1200 (alarm at 4.0)',
        '2025-11-24 11:01:35+00'),
       ('run-fixed', $1, 'entropy_collapse', 12, '{"entropy": 0.31}', 0.5,
        'entropy fell to 0.31 at step 12, below 0.50 of its median 2.80', '2025-11-24 11:02:05+00')
"""
# a fixed acknowledgement, as an operator's would read (the triggers, which write the acknowledging role by
# the server's word and refuse an alarm raised acknowledged, are set aside for this fixture's one update)
_FIXED_ACK = """
UPDATE console_alarms SET acknowledged_at = '2025-11-24 11:03:00+00', acknowledged_by = 'ana',
       acknowledged_db_role = 'babylon_operator' WHERE model_name = $1 AND rule = 'kl_spike'
"""


async def _insert_fixed_alarms(pool, key: str) -> None:
    await pool.execute(_FIXED_ALARMS, key)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(_FIXED_ACK, key)


def test_snapshot_training_health(pool, make_app, snap_compare) -> None:
    async def setup() -> None:
        await save_health(pool, stored_health(12))
        await _insert_fixed_alarms(pool, KEY)

    _run_on_fixture_loop(pool, setup())

    async def run_before(pilot: Any) -> None:
        await _training_drawn(pilot)
        pane = pilot.app.main.pane(TrainingPane)
        await wait_for(lambda: pane.health_view is not None and len(pane.health_view.alarms) == 2, what="alarms")
        await wait_for(lambda: pilot.app.main.pane_bar.badges.get("training") == "⚠1", what="the badge")
        # the alarm list narrows the event tail after its lines were written: settle its scroll at the end
        await pilot.pause(0.1)
        pane.query_one("#training-tail").scroll_end(animate=False, immediate=True)
        await pilot.pause(0.1)

    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=run_before)
