from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.core.clock import SystemClock
from babylon_console.core.db.migrations import load_migrations
from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.windows import window_id_for
from tests.factories import trajectory_row, user_row

runner = CliRunner()
SECRET = "pw-that-must-not-leak"


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    "command", [[], ["db"], ["db", "migrate"], ["db", "status"], ["windows"], ["doctor"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


async def test_db_commands(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}
    status = await asyncio.to_thread(invoke, "db", "status", "--json", env=env)
    assert status.exit_code == 1 and orjson.loads(status.output)["pending"] == len(load_migrations())
    migrated = await asyncio.to_thread(invoke, "db", "migrate", env=env)
    assert migrated.exit_code == 0 and "applied 0001_game_tables" in migrated.output
    again = await asyncio.to_thread(invoke, "db", "migrate", "--json", env=env)
    assert orjson.loads(again.output)["applied"] == []
    status = await asyncio.to_thread(invoke, "db", "status", env=env)
    assert status.exit_code == 0 and "Schema up to date." in status.output


async def test_windows_table_json_and_verdict(pool: asyncpg.Pool, database_url: str) -> None:
    now = SystemClock().now()
    closed = window_id_for(now - timedelta(hours=3))
    current = window_id_for(now)
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row(f"a{i}") for i in range(6)])
        await copy_rows(
            conn,
            "trajectories",
            [trajectory_row(closed, f"a{i}", steps=4) for i in range(6)]
            + [trajectory_row(current, f"a{i}", steps=4) for i in range(2)],
        )
    env = {"DATABASE_URL": database_url}
    result = await asyncio.to_thread(invoke, "windows", "--min-agents", "5", "--json", env=env)
    assert result.exit_code == 0
    data = orjson.loads(result.output)
    assert data["ready"] == 1 and data["total"] == 2
    states = {w["window_id"]: w["state"] for w in data["windows"]}
    assert states == {closed: "ready", current: "open"}
    table = await asyncio.to_thread(invoke, "windows", "--min-agents", "5", env=env)
    assert "1 of 2 windows ready for training" in table.output
    strict = await asyncio.to_thread(invoke, "windows", "--min-agents", "7", "--ready", env=env)
    assert "No window ready of 2" in strict.output and "too few agents" in strict.output
    bad = await asyncio.to_thread(invoke, "windows", "--min-agents", "0", env=env)
    assert bad.exit_code == 2


async def test_doctor_reports_without_leaking_secrets(database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url,
        "WANDB_API_KEY": SECRET,
        "OPENAI_API_KEY": SECRET,
        "BABYLON_JUDGE": "ruler",
    }
    result = await asyncio.to_thread(invoke, "doctor", "--json", env=env)
    assert SECRET not in result.output
    data = orjson.loads(result.output)
    checks = {c["name"]: c["verdict"] for c in data["checks"]}
    assert checks["database"] == "ok" and checks["migrations"] == "ok" and checks["judge"] == "ok"
    assert data["ok"] is True and result.exit_code == 0
    missing_key = await asyncio.to_thread(
        invoke, "doctor", "--json", env={"DATABASE_URL": database_url, "BABYLON_BACKEND": "serverless"}
    )
    backend = next(c for c in orjson.loads(missing_key.output)["checks"] if c["name"] == "backend")
    assert missing_key.exit_code == 1 and backend["verdict"] == "fail" and "needs WANDB_API_KEY" in backend["detail"]


async def test_doctor_says_whether_the_tokenizer_loads(database_url: str, tokenizer_dir: Path) -> None:
    env = {"DATABASE_URL": database_url, "BABYLON_TOKENIZER": str(tokenizer_dir)}
    ok = orjson.loads((await asyncio.to_thread(invoke, "doctor", "--json", env=env)).output)
    tokenizer = next(c for c in ok["checks"] if c["name"] == "tokenizer")
    assert tokenizer["verdict"] == "ok" and "loads" in tokenizer["detail"] and "<|eot_id|>" in tokenizer["detail"]
    bad = await asyncio.to_thread(invoke, "doctor", "--json", env={**env, "BABYLON_TOKENIZER": "/nowhere/tok"})
    checks = {c["name"]: c for c in orjson.loads(bad.output)["checks"]}
    assert bad.exit_code == 1 and checks["tokenizer"]["verdict"] == "fail"
    assert "/nowhere/tok" in checks["tokenizer"]["detail"]


def test_unreachable_database_is_one_line_exit_2_without_traceback() -> None:
    env_url = f"postgresql://game:{SECRET}@127.0.0.1:9/gamedb"
    result = subprocess.run(
        [sys.executable, "-m", "babylon_console", "windows"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"DATABASE_URL": env_url, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:9" in lines[0] and "'gamedb'" in lines[0] and SECRET not in result.stderr


def test_bad_configuration_is_exit_2() -> None:
    result = invoke("windows", env={"DATABASE_URL": "mysql://nope"})
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output and "postgresql://" in result.output
    missing = invoke("--env-file", "/no/such/file", "windows")
    assert missing.exit_code == 2 and "no such file" in missing.output
