"""`babylon-console health` and `health ack`: stored health and alarms shown per training key, a missing
figure with its reason, JSON for scripts, and an acknowledgement refused for a login that may not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.errors import EXIT_FAILED, EXIT_UNAVAILABLE
from babylon_console.core.stats import Figure
from babylon_console.core.training import health_store
from babylon_console.core.training.alarms import AlarmRule, RaisedAlarm
from babylon_console.core.training.health import StepHealth, WindowHealth

from .role_logins import Login, logins

runner = CliRunner()


def invoke(*args: str, url: str, columns: int = 200):
    return runner.invoke(app, list(args), env={"DATABASE_URL": url, "COLUMNS": str(columns)}, catch_exceptions=False)


def _health(step: int, key: str = "offline:agent") -> StepHealth:
    window = WindowHealth(window_id=f"w{step}", agents=6, rank_correlation=Figure.of(-0.3), judge_mean=Figure.of(0.5),
                          pnl_mean=Figure.of(2.0))
    return StepHealth(model_name=key, step=step, run_id="r1", groups=4, zero_spread_share=Figure.of(0.25),
                      reward_mean=Figure.of(0.5), reward_std=Figure.of(0.125), kl=Figure.lacking("no KL metric"),
                      entropy=Figure.of(1.25), tokens_per_call=Figure.of(42.0), action_mix={"hold": 3, "buy": 1},
                      action_entropy=Figure.of(0.81), windows=[window], rank_correlation=Figure.of(-0.3),
                      rank_correlation_rolling=Figure.of(-0.25) if step > 1 else Figure.lacking("one window so far"),
                      judge_trend=Figure.of(0.02), pnl_trend=Figure.of(-1.5),
                      holdout_trend=Figure.lacking("no held-out evaluation"))


ALARM = RaisedAlarm(rule=AlarmRule.judge_disagrees, step=2, window_id=None, figures={"rank_correlation_rolling": -0.25},
                    threshold=0.0, message="the judge disagrees with realised P&L: rolling rank correlation -0.25 < 0")


@pytest.fixture
async def stored(pool: asyncpg.Pool) -> list[int]:
    """Two steps of offline:agent, one of serverless:agent; two alarms, the older acknowledged."""
    for step in (1, 2):
        await health_store.save_health(pool, _health(step))
    await health_store.save_health(pool, _health(7, "serverless:agent"))
    first = await health_store.record_alarm(pool, ALARM.model_copy(update={"step": 1}), model_name="offline:agent",
                                            run_id="r1")
    second = await health_store.record_alarm(pool, ALARM, model_name="offline:agent", run_id="r1")
    await health_store.acknowledge(pool, first.id, operator="ana", note="judge swapped")
    return [first.id, second.id]


async def test_health_shows_each_step_and_the_alarms(database_url: str, stored: list[int]) -> None:
    shown = await asyncio.to_thread(invoke, "health", "--model", "offline:agent", url=database_url)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "offline:agent: health of the newest 2 step(s)" in text and "serverless:agent" not in text
    for cell in ("25%", "0.500 ± 0.125", "1.25", "42", "0.81 bits, hold 75%", "-0.30", "-0.25", "+0.02/step",
                 "-1.5/step"):
        assert cell in text, cell
    assert "— [1]" in text and "[1] no KL metric" in text  # a missing figure says why, once per reason
    assert "one window so far" in text and "no held-out evaluation" in text
    first, second = stored
    lines = text.splitlines()
    assert any(line.strip().startswith(f"{second}  judge_disagrees  step 2: the judge disagrees") and
               line.endswith("(open)") for line in lines), text
    assert any(line.strip().startswith(f"{first}  judge_disagrees  step 1:") and "acknowledged by ana (db " in line
               and line.endswith(": judge swapped)") for line in lines), text
    assert "Alarms (newest 2, newest first; 1 open):" in text


async def test_a_model_name_covers_every_backend_and_narrow_terminals_get_the_newest_trends(
        database_url: str, stored: list[int]) -> None:
    shown = await asyncio.to_thread(invoke, "health", "--model", "agent", "--limit", "1", url=database_url, columns=100)
    assert shown.exit_code == 0, shown.output
    assert "offline:agent: health of the newest 1 step(s) (of at most 1)" in shown.output
    assert "serverless:agent: health of the newest 1 step(s)" in shown.output
    assert "trends at step 2: judge score +0.02/step; realised P&L -1.5/step; held-out difference — [" in shown.output
    assert "Alarms (newest 1, newest first; 1 open):" in shown.output  # --limit caps the alarms too
    other = await asyncio.to_thread(invoke, "health", "--model", "someone-else", url=database_url)
    assert other.exit_code == 0 and "No training health or alarms recorded for model someone-else" in other.output


async def test_health_json(database_url: str, stored: list[int]) -> None:
    shown = await asyncio.to_thread(invoke, "health", "--json", url=database_url)
    assert shown.exit_code == 0, shown.output
    data = orjson.loads(shown.output)
    assert (data["model"], data["limit"]) == (None, 20)
    keys = {k["training_key"]: k for k in data["training_keys"]}
    assert list(keys) == ["offline:agent", "serverless:agent"]
    offline = keys["offline:agent"]
    assert [s["step"] for s in offline["steps"]] == [1, 2] and offline["open_alarms"] == 1
    assert offline["steps"][0]["kl"] == {"value": None, "missing": "no KL metric"}
    assert StepHealth.model_validate(offline["steps"][1]).model_dump(exclude={"created_at"}) == \
        _health(2).model_dump(exclude={"created_at"})
    newest = offline["alarms"][0]
    assert newest["id"] == stored[1] and newest["rule"] == "judge_disagrees" and newest["acknowledged_at"] is None
    assert offline["alarms"][1]["acknowledged_by"] == "ana" and offline["alarms"][1]["acknowledged_db_role"]
    assert keys["serverless:agent"]["alarms"] == [] and keys["serverless:agent"]["open_alarms"] == 0


async def test_an_empty_database_says_how_health_gets_there(database_url: str) -> None:
    shown = await asyncio.to_thread(invoke, "health", url=database_url)
    assert shown.exit_code == 0
    assert "No training health or alarms recorded yet: the engine stores each trained step's health" in shown.output
    as_json = await asyncio.to_thread(invoke, "health", "--json", url=database_url)
    assert orjson.loads(as_json.output)["training_keys"] == []


async def test_ack_records_once_and_a_bad_id_is_an_input_error(database_url: str, stored: list[int]) -> None:
    _, second = stored
    done = await asyncio.to_thread(invoke, "health", "ack", str(second), "--note", "lr lowered", "--operator", "bo",
                                   url=database_url)
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"Alarm {second} (judge_disagrees, step 2) acknowledged by bo (db ")
    assert done.output.rstrip().endswith(": lr lowered.")
    again = await asyncio.to_thread(invoke, "health", "ack", str(second), url=database_url)
    assert again.exit_code == EXIT_FAILED
    assert again.output.startswith(f"error: alarm {second} was already acknowledged by bo (db ")
    assert "nothing changed" in again.output and "Traceback" not in again.output
    unknown = await asyncio.to_thread(invoke, "health", "ack", "999", url=database_url)
    assert unknown.exit_code == EXIT_UNAVAILABLE
    assert unknown.output.splitlines() == ["error: no alarm with id 999 (see `babylon-console health`)"]
    as_json = await asyncio.to_thread(invoke, "health", "ack", "abc", url=database_url)
    assert as_json.exit_code == 2  # not a number: a usage error


@pytest.fixture
async def login(database_url: str) -> AsyncIterator[Login]:
    async with logins(database_url) as make:
        yield make


async def test_ack_is_refused_for_a_login_that_may_not(database_url: str, stored: list[int], login: Login,
                                                       pool: asyncpg.Pool) -> None:
    _, second = stored
    observer = await login("observer")
    shown = await asyncio.to_thread(invoke, "health", url=observer)  # reading is an observer's
    assert shown.exit_code == 0 and "offline:agent" in shown.output
    refused = await asyncio.to_thread(invoke, "health", "ack", str(second), url=observer)
    assert refused.exit_code == EXIT_FAILED
    name = urlsplit(observer).username
    assert refused.output.splitlines() == [
        f"error: database role {name} is an observer and may not acknowledge alarms: that needs babylon_operator "
        f"(`babylon-console db roles grant {name} operator`)"], refused.output
    assert not (await health_store.alarms(pool, "offline:agent"))[0].acknowledged
    operator = await login("operator")
    done = await asyncio.to_thread(invoke, "health", "ack", str(second), "--json", url=operator)
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.output)["acknowledged_db_role"] == urlsplit(operator).username
