"""`babylon-console db migrate|status|wall-clock` and `db roles create|grant|revoke|list`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from ..cli_support import load_settings, out, print_json, run_command
from ..core.db import migrations
from ..core.db.connections import connect_unmigrated
from ..core.errors import EXIT_FAILED

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked
db_app = typer.Typer(help="Database: apply and inspect migrations; return a simulated database to the wall clock; "
                          "roles (who may act, enforced by the server).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
roles_app = typer.Typer(help="Who may act, enforced by the database: the group roles babylon_observer, "
                             "babylon_operator, babylon_engine and babylon_gateway, and their members.",
                        no_args_is_help=True)
db_app.add_typer(roles_app, name="roles")


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


RoleKind = Literal["observer", "operator", "engine", "gateway"]


@roles_app.command("create")
def roles_create_command(
    print_sql: Annotated[bool, typer.Option("--print", help="Print the SQL instead of running it (for a DBA; "
                                                            "no connection is made).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Create the four group roles (NOLOGIN) and grant each the least privileges it needs on the
    console's tables and the game's, with the guard that lets only an operator change what is live.
    Idempotent: rerun it after `db migrate` (the grants are set again to this version's list). Needs a
    superuser, or a role with CREATEROLE that owns the tables."""
    from ..core.db import roles

    if print_sql:
        out.print(roles.script(), markup=False, highlight=False, soft_wrap=True)
        return
    settings = load_settings()

    async def body():
        target, conn = await connect_unmigrated(settings)
        try:
            return target, await roles.create(conn)
        finally:
            await conn.close()

    target, count = run_command(body)
    names = [k.role_name for k in roles.GROUPS]
    if as_json:
        print_json({"database": target.display, "roles": names, "statements": count})
        return
    out.print(f"Roles {', '.join(names)} and their grants set on {target.display} ({count} statements).",
              markup=False, soft_wrap=True)
    out.print("Next: `babylon-console db roles grant LOGIN observer|operator|engine|gateway`.", markup=False)


def _grant(login: str, role: RoleKind, *, revoke: bool) -> None:
    from ..core.db import roles

    settings = load_settings()

    async def body():
        _, conn = await connect_unmigrated(settings)
        try:
            return await roles.grant(conn, login, roles.Kind(role), revoke=revoke)
        finally:
            await conn.close()

    done = run_command(body)
    if revoke:
        out.print(f"{login} is no longer a member of {done.role}" if done.already
                  else f"{login} was not a member of {done.role}: nothing changed", markup=False)
    else:
        out.print(f"{login} was already a member of {done.role}" if done.already
                  else f"{login} is now a member of {done.role}", markup=False)
    for note in done.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


@roles_app.command("grant")
def roles_grant_command(
    login: Annotated[str, typer.Argument(help="An existing login role (CREATE ROLE alice LOGIN PASSWORD '…').")],
    role: Annotated[RoleKind, typer.Argument(help="observer, operator, engine or gateway.")],
) -> None:
    """Make a login role a member of one group role (babylon_<ROLE>). The server applies it at once,
    to sessions already open too."""
    _grant(login, role, revoke=False)


@roles_app.command("revoke")
def roles_revoke_command(
    login: Annotated[str, typer.Argument(help="A login role.")],
    role: Annotated[RoleKind, typer.Argument(help="observer, operator, engine or gateway.")],
) -> None:
    """Remove a login role from one group role."""
    _grant(login, role, revoke=True)


_SHORT = {"SELECT": "r", "INSERT": "a", "UPDATE": "w", "DELETE": "d"}


@roles_app.command("list")
def roles_list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who has what, by the server's word: each group role, its members and what it may do on each
    table (r read, a insert, w update, d delete; a column grant counts)."""
    from ..core.db import roles

    settings = load_settings()

    async def body():
        target, conn = await connect_unmigrated(settings)
        try:
            return target, *(await roles.groups(conn))
        finally:
            await conn.close()

    target, groups, guarded = run_command(body)
    if as_json:
        print_json({"database": target.display, "guard": guarded, "roles": [
            {"kind": g.kind.value, "role": g.role, "exists": g.exists, "members": list(g.members),
             "privileges": {t: list(p) for t, p in g.privileges.items()}} for g in groups]})
        return
    if not any(g.exists for g in groups):
        out.print(f"No group roles on {target.display}: every login role has what the server grants it "
                  "(`babylon-console db roles create` makes them).", markup=False, soft_wrap=True)
        return
    table = Table(title=f"Roles on {target.display}", title_justify="left", header_style="bold")
    for col in ("role", "members", "writes"):
        table.add_column(col, overflow="fold")
    for g in groups:
        if not g.exists:
            table.add_row(g.role, "[yellow]missing[/]", "")
            continue
        writes = [f"{t} ({''.join(_SHORT[p] for p in held)})" for t, held in g.privileges.items()
                  if set(held) - {"SELECT"}]
        reads = sum(1 for held in g.privileges.values() if "SELECT" in held)
        table.add_row(g.role, escape(", ".join(g.members) or "-"),
                      escape(", ".join(writes) or "nothing") + f"; reads {reads} tables")
    out.print(table)
    out.print("Guard on what is live (trained_models): " + ("installed" if guarded else "[yellow]missing[/]"))
