from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from babylon_console.core.embedded import clear_stale_state


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clears_stale_pid_file_and_dead_handle_holders(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{_dead_pid()}\n{pgdata}\n")
    (pgdata / ".handle_pids.json").write_text(json.dumps([_dead_pid(), 1]))
    cleared = clear_stale_state(pgdata)
    assert not (pgdata / "postmaster.pid").exists()
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [1]
    assert any("postmaster.pid" in c for c in cleared) and any("dead handle" in c for c in cleared)


def test_pid_file_of_a_live_non_postgres_process_is_stale(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text("1\n")  # pid 1 lives, but is not PostgreSQL
    (pgdata / ".handle_pids.json").write_text("not json")
    cleared = clear_stale_state(pgdata)
    assert not (pgdata / "postmaster.pid").exists()
    assert "garbled handle list" in cleared


def test_garbled_pid_file_is_cleared(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text("garbage")
    assert clear_stale_state(tmp_path) == ["stale postmaster.pid (pid -1)"]


def test_embedded_server_starts_reuses_and_recovers_from_a_crash(tmp_path: Path) -> None:
    """Start in one process, crash it (kill -9 the client), start again: the server is reused or restarted."""
    script = (
        "import asyncio, asyncpg, sys\n"
        "from pathlib import Path\n"
        "from babylon_console.core.embedded import start_embedded_server\n"
        "url = start_embedded_server(Path(sys.argv[1]))\n"
        "async def main():\n"
        "    c = await asyncpg.connect(url); print(await c.fetchval('select 41 + 1')); await c.close()\n"
        "asyncio.run(main())\n"
    )
    pgdata = tmp_path / "pg"
    first = subprocess.run(
        [sys.executable, "-c", script, str(pgdata)], capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0 and first.stdout.strip() == "42", first.stderr
    # Simulate a crashed holder: a dead pid left in the handle list, and a stale postmaster.pid.
    (pgdata / ".handle_pids.json").write_text(json.dumps([_dead_pid()]))
    if not (pgdata / "postmaster.pid").exists():
        (pgdata / "postmaster.pid").write_text(f"{_dead_pid()}\n")
    second = subprocess.run(
        [sys.executable, "-c", script, str(pgdata)], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0 and second.stdout.strip() == "42", second.stderr
    # The last holder exited: the server was stopped cleanly.
    assert not (pgdata / "postmaster.pid").exists()
