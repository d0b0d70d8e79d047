"""`babylon-console db migrate|status|wall-clock`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..cli_support import load_settings, out, print_json, run_command
from ..core.db import migrations
from ..core.db.connections import connect_unmigrated
from ..core.errors import EXIT_FAILED

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked
db_app = typer.Typer(help="Database: apply and inspect migrations; return a simulated database to the wall clock.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Apply pending migrations (idempotent; never alters or drops the game's tables)."""
    settings = load_settings()

    async def body():
        target, conn = await connect_unmigrated(settings)
        try:
            applied = await migrations.migrate(conn)
            return target, applied
        finally:
            await conn.close()

    target, applied = run_command(body)
    if as_json:
        print_json({"database": target.display, "applied": [f"{m.version:04d}_{m.name}" for m in applied]})
        return
    if applied:
        for m in applied:
            out.print(f"[green]applied[/] {m.version:04d}_{m.name}")
    out.print(f"Schema up to date on {target.display} ({len(applied)} applied now).")


@db_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show which migrations are applied. Exits 1 when some are pending or were edited after applying."""
    settings = load_settings()

    async def body():
        target, conn = await connect_unmigrated(settings)
        try:
            return target, await migrations.status(conn)
        finally:
            await conn.close()

    target, rows = run_command(body)
    pending = [r for r in rows if not r.applied]
    drifted = [r for r in rows if not r.checksum_matches]
    if as_json:
        print_json(
            {
                "database": target.display,
                "migrations": [
                    {
                        "version": r.version,
                        "name": r.name,
                        "applied": r.applied,
                        "applied_at": r.applied_at,
                        "checksum_matches": r.checksum_matches,
                    }
                    for r in rows
                ],
                "pending": len(pending),
                "drifted": len(drifted),
            }
        )
    else:
        table = Table(title=f"Migrations on {target.display}", title_justify="left")
        for col in ("version", "name", "applied", "note"):
            table.add_column(col)
        for r in rows:
            note = "" if r.checksum_matches else "[yellow]file changed since it was applied[/]"
            table.add_row(f"{r.version:04d}", r.name, r.applied_at or "[yellow]pending[/]", note)
        out.print(table)
        verdict = (
            "up to date"
            if not pending and not drifted
            else (f"{len(pending)} pending, {len(drifted)} changed since applied")
        )
        out.print(f"Schema {verdict}.")
    if pending or drifted:
        raise typer.Exit(EXIT_FAILED)


@db_app.command("wall-clock")
def wall_clock_command(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Return this database to the wall clock: a simulated market (`seed --live`) made its clock this
    database's, and it stands still once the market stops. Refused while the market runs."""
    from ..core.db.connections import open_pool
    from ..core.game import market_clock

    settings = load_settings()
    if not yes and not typer.confirm("Every process on this database will read the wall clock from now on "
                                     "(windows dated after it show as open). Go on?", default=False):
        out.print("Nothing changed.")
        raise typer.Exit(EXIT_FAILED)

    async def body():
        pool = await open_pool(settings)
        try:
            return await market_clock.return_to_wall_clock(pool)
        finally:
            await pool.close()

    previous = run_command(body)
    if previous is None:
        out.print("This database already uses the wall clock.")
        return
    out.print(f"Wall clock restored; the simulated market's clock stood at {previous.now():%Y-%m-%d %H:%M} UTC.")
