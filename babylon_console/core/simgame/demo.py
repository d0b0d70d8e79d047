"""Where the demo lives: an embedded PostgreSQL cluster of its own under `<data dir>/demo/`, with
its offline checkpoints beside it, never DATABASE_URL nor the operator's embedded database.

Why a cluster of its own rather than a second database on the operator's embedded server: the demo's
whole world (database, offline checkpoints, stand-in tokenizer, offline W&B files) then lives under
one data directory, so every command reaches it as it reaches any data dir
(`babylon-console --data-dir <data dir>/demo windows`) and finds the checkpoints its registry names;
the operator's server is never started by the demo; and `demo --reset` has one place to clear. The
demo's simulated clock is published in its database only (`core.game.market_clock`): the operator's database
keeps the wall clock.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import Refused

DEMO_FOLDER = "demo"
_KEPT = {"pgdata"}  # the cluster itself: `--reset` drops and recreates its database instead


def demo_settings(settings: Settings) -> Settings:
    """The settings the demo runs with: everything the operator configured, but the embedded server
    and the checkpoints under `<data dir>/demo/` (DATABASE_URL is ignored), and no hold-out of the
    operator's (BABYLON_HOLDOUT_SHARE is checked against the operator's database; the demo's database
    records a hold-out of its own)."""
    return settings.model_copy(update={"database_url": None, "data_dir": settings.data_dir / DEMO_FOLDER,
                                       "holdout_share": None})


def is_demo(settings: Settings) -> bool:
    """Whether `settings` are the demo's (an embedded server in a data dir named `demo`)."""
    return settings.database_url is None and settings.data_dir.name == DEMO_FOLDER


def where(settings: Settings) -> str:
    """`database babylon in /home/me/.local/share/babylon-console/demo`: for the demo's start line."""
    return f"database {settings.embedded_database} in {_short(settings.data_dir)}"


def _short(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


class DemoInUse(Refused, RuntimeError):
    """Another process (an open demo console, a `--data-dir` command) is connected to the demo's database."""

    title = "Demo in use"


@dataclass(slots=True)
class DemoReset:
    database: str
    data_dir: Path
    dropped: bool = False  # False: the demo had no database yet
    trajectories: int = 0  # rows the dropped database held
    checkpoints: int = 0
    removed: list[str] = field(default_factory=list)  # entries removed from the demo's data dir

    @property
    def summary(self) -> str:
        removed = ", ".join(self.removed) if self.removed else "no files"
        dropped = (f"dropped database {self.database} ({self.trajectories:,} trajectories, {self.checkpoints} "
                   "checkpoint(s)) and recreated it empty" if self.dropped
                   else f"created database {self.database} (there was none)")
        return f"demo reset: {dropped}; removed {removed} from {_short(self.data_dir)}"


async def _counts(dsn: str) -> tuple[int, int]:
    import asyncpg

    from ..game.store import row_counts

    conn = await asyncpg.connect(dsn)
    try:
        counts = await row_counts(conn, ("trajectories", "trained_models"))
        return counts["trajectories"], counts["trained_models"]
    finally:
        await conn.close()


async def reset_demo(demo: Settings) -> DemoReset:
    """Drop the demo's database and recreate it migrated and empty, and remove its data dir's files
    (checkpoints, tokenizer, W&B files). Refused while anything is connected to it."""
    if not is_demo(demo):
        raise ValueError(f"not the demo's settings: {demo.data_dir}")  # a bug, never the operator's database
    import asyncpg  # the console imports this module on its paint path: the database layer only here

    from ..db.connections import (
        DatabaseTarget,
        connect,
        create_migrated_database,
        database_exists,
        drop_database,
        other_sessions,
        resolve_target,
        with_database,
    )

    target = await asyncio.to_thread(resolve_target, demo)  # starts the demo's server if needed
    database = demo.embedded_database
    report = DemoReset(database, demo.data_dir)
    in_use = DemoInUse(f"the demo's {where(demo)} is in use (a demo console still open?); quit it, then reset")
    admin = await connect(DatabaseTarget(with_database(target.dsn, "postgres"), embedded=True))
    try:
        if await other_sessions(admin, database):
            raise in_use
        if await database_exists(admin, database):
            report.trajectories, report.checkpoints = await _counts(target.dsn)
            try:
                await drop_database(admin, database)  # never WITH (FORCE): a running demo is refused
                report.dropped = True
            except asyncpg.ObjectInUseError:
                raise in_use from None
    finally:
        await admin.close()
    await create_migrated_database(target.dsn, database)
    for entry in sorted(demo.data_dir.iterdir()):
        if entry.name in _KEPT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            await asyncio.to_thread(shutil.rmtree, entry)
            report.removed.append(entry.name + "/")
        else:
            entry.unlink()
            report.removed.append(entry.name)
    return report
