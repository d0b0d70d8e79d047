from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from babylon_console.core.db.embedded import clear_stale_state


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


# Start (or join) the embedded server in argv[1], connect, print 42.
CONNECT_SCRIPT = (
    "import asyncio, asyncpg, sys\n"
    "from pathlib import Path\n"
    "from babylon_console.core.db.embedded import start_embedded_server\n"
    "url = start_embedded_server(Path(sys.argv[1]))\n"
    "async def main():\n"
    "    c = await asyncpg.connect(url); print(await c.fetchval('select 41 + 1')); await c.close()\n"
    "asyncio.run(main())\n"
)


def test_embedded_server_starts_reuses_and_recovers_from_a_crash(tmp_path: Path) -> None:
    """Start in one process, crash it (kill -9 the client), start again: the server is reused or restarted."""
    script = CONNECT_SCRIPT
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


def test_a_server_left_by_a_killed_starter_is_reused_then_stopped(tmp_path: Path) -> None:
    """kill -9 of the process that started the server leaves postgres running; the next start
    reuses it, and when that process exits, the server stops: never left running forever."""
    import os
    import signal
    import time

    import psutil

    pgdata = tmp_path / "pg"
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from babylon_console.core.db.embedded import start_embedded_server\n"
        "start_embedded_server(Path(sys.argv[1])); print('up', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(pgdata)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    assert psutil.pid_exists(postmaster)  # the crash left the server running
    reuse = subprocess.run([sys.executable, "-c", CONNECT_SCRIPT, str(pgdata)], capture_output=True, text=True,
                           timeout=120)
    assert reuse.returncode == 0 and reuse.stdout.strip() == "42", reuse.stderr
    deadline = time.monotonic() + 15
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(postmaster)  # reused, then stopped with its last holder
