"""Who may act, enforced by the database: four group roles and their grants.

`--read-only` is a flag a client sets on itself; these roles are the server's word. Each group role
(NOLOGIN) holds the least privileges one kind of client needs on the console's tables and the game's;
login roles are made members of one (`grant`):

- observer: reads what the console shows (LISTEN needs no grant); writes nothing.
- operator: observer, plus promote and roll back, start and end A/B rollouts, set the hold-out, send
  engine commands, record evaluations and acknowledge alarms; no write to the game's trajectory tables
  or to training tables.
- engine: observer, plus what training writes (batches, checkpoints, judgments, events, runs, the
  trained marks on trajectories, health and alarms) and the end of an A/B rollout the gate rolls back;
  never promotes.
- gateway: reads the routing (the registry and the rollout) and writes its own call log and heartbeat.

Grants cannot tell a promotion from the engine registering a checkpoint (both write trained_models), so
`create` also installs a guard trigger on trained_models: a row may become 'deployed' (or stop being
it) only for an operator, a superuser, or a role in none of the groups (the game's own roles).

Roles are cluster-wide, grants per database. `create_statements` returns every statement `create`
runs, in one transaction (`db roles create --print` shows them): it revokes what the groups hold on
these tables and grants the list below again, so a rerun after new migrations (or a newer version)
leaves exactly this list. Default privileges are not used: on a shared game database they cannot be
limited to the console's tables.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import InvalidInput, Refused

if TYPE_CHECKING:
    import asyncpg


class Kind(StrEnum):
    """The four kinds of client; each is one group role (`role_name`)."""

    OBSERVER = "observer"
    OPERATOR = "operator"
    ENGINE = "engine"
    GATEWAY = "gateway"

    @property
    def role_name(self) -> str:
        return f"babylon_{self.value}"


GROUPS = tuple(Kind)
# Operators and engines see what an observer sees: their reads are the observer's, by membership.
INCLUDES: dict[Kind, Kind] = {Kind.OPERATOR: Kind.OBSERVER, Kind.ENGINE: Kind.OBSERVER}

GAME_TABLES = ("User", "trajectories", "llm_call_logs", "market_outcomes", "training_batches", "trained_models")
CONSOLE_TABLES = (
    "console_schema_migrations", "console_events", "console_runs", "console_judgments", "console_trained_windows",
    "console_promotions", "console_rollout", "console_rollouts", "console_sim_clock", "console_window_verdicts",
    "console_engine_tokens", "console_engine_commands", "console_evaluations", "console_holdout",
    "console_gateway_calls", "console_gateways", "console_step_health", "console_alarms",
)
VIEWS = ("console_serving",)
RELATIONS = (*GAME_TABLES, *CONSOLE_TABLES, *VIEWS)
# Tables with a BIGSERIAL id: an INSERT needs USAGE on its sequence.
SERIAL_TABLES = frozenset({
    "console_events", "console_judgments", "console_promotions", "console_engine_commands", "console_evaluations",
    "console_holdout", "console_rollouts", "console_gateway_calls", "console_alarms",
})
WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True, slots=True)
class Grant:
    """Privileges of one group on one table; `columns` limits them to those columns."""

    table: str
    privileges: tuple[str, ...]
    does: str  # what it lets the group do, said when the server refuses someone else
    columns: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        return any(p in WRITES for p in self.privileges)


_REGISTRY = "promote, roll back"
GRANTS: dict[Kind, tuple[Grant, ...]] = {
    Kind.OBSERVER: tuple(Grant(t, ("SELECT",), "read it") for t in RELATIONS),
    Kind.OPERATOR: (
        Grant("trained_models", ("UPDATE",), _REGISTRY, ("status", "deployedAt", "archivedAt", "updatedAt")),
        Grant("console_promotions", ("INSERT",), _REGISTRY),
        Grant("console_rollout", ("INSERT", "UPDATE", "DELETE"), "start and end A/B rollouts"),
        Grant("console_rollouts", ("INSERT",), "start A/B rollouts"),
        Grant("console_rollouts", ("UPDATE",), "end A/B rollouts", ("ended_at", "end_reason")),
        Grant("console_events", ("INSERT",), "announce what it did"),
        Grant("console_holdout", ("INSERT",), "set the hold-out"),
        Grant("console_engine_commands", ("INSERT",), "send engine commands"),
        Grant("console_evaluations", ("INSERT",), "record evaluations"),
        # the acknowledgement only: an operator never raises an alarm nor rewrites its figures; the
        # acknowledging database role is written by migration 0019's trigger
        Grant("console_alarms", ("UPDATE",), "acknowledge alarms", ("acknowledged_at", "acknowledged_by", "note")),
    ),
    Kind.ENGINE: (
        Grant("training_batches", ("INSERT", "UPDATE"), "record training batches"),
        Grant("trained_models", ("INSERT",), "register checkpoints"),
        # the registry locks the live row (SELECT ... FOR UPDATE) when the gate rolls a rollout back,
        # which needs UPDATE on one column; the status is not among them
        Grant("trained_models", ("UPDATE",), "end an A/B rollout the gate rolls back", ("updatedAt",)),
        Grant("trajectories", ("UPDATE",), "mark trajectories trained", ("usedInTraining", "trainedInBatch",
                                                                          "updatedAt")),
        Grant("console_runs", ("INSERT", "UPDATE"), "record engine runs"),
        Grant("console_engine_tokens", ("INSERT", "UPDATE"), "hold a model's engine lock"),
        Grant("console_engine_commands", ("UPDATE",), "acknowledge engine commands", ("acked_at", "result")),
        Grant("console_events", ("INSERT",), "write events"),
        Grant("console_judgments", ("INSERT",), "record judgments"),
        Grant("console_trained_windows", ("INSERT",), "mark windows trained"),
        Grant("console_window_verdicts", ("INSERT", "UPDATE"), "mark windows unusable"),
        Grant("console_evaluations", ("INSERT",), "record evaluations"),
        Grant("console_rollout", ("DELETE",), "end an A/B rollout the gate rolls back"),
        Grant("console_rollouts", ("UPDATE",), "end an A/B rollout the gate rolls back", ("ended_at", "end_reason")),
        Grant("console_promotions", ("INSERT",), "record the gate's rollback"),
        # UPDATE: a step trained again (recovered) overwrites its health
        Grant("console_step_health", ("INSERT", "UPDATE"), "record training health"),
        Grant("console_alarms", ("INSERT",), "raise alarms"),
    ),
    Kind.GATEWAY: (
        *(Grant(t, ("SELECT",), "read the routing") for t in ("trained_models", "console_rollout", "console_rollouts",
                                                               "console_serving", "console_schema_migrations")),
        Grant("console_gateway_calls", ("SELECT", "INSERT", "DELETE"), "write its call log"),
        Grant("console_gateways", ("SELECT", "INSERT", "UPDATE"), "write its heartbeat"),
    ),
}

GUARD_FUNCTION = "console_guard_live_model"
GUARD_TRIGGER = "console_guard_live_model"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _relation(name: str) -> str:
    return quote_ident(name) if name != name.lower() else name


def _qualified() -> list[str]:
    """Every relation the grants name, schema-qualified, as to_regclass reads them."""
    return [f"public.{_relation(t)}" for t in RELATIONS]


def _create_role(kind: Kind, comment: str) -> list[str]:
    role = kind.role_name
    return [
        # DO: CREATE ROLE has no IF NOT EXISTS; duplicate_object: another administrator created it just now
        f"DO $$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(role)}) THEN\n"
        f"    CREATE ROLE {role} NOLOGIN;\n  END IF;\nEXCEPTION WHEN duplicate_object THEN NULL;\nEND $$",
        f"COMMENT ON ROLE {role} IS {_literal(comment)}",
    ]


_COMMENTS = {
    Kind.OBSERVER: "Babylon Console observer: reads what the console shows; writes nothing",
    Kind.OPERATOR: "Babylon Console operator: observer, plus promote, roll back, hold-out, engine commands",
    Kind.ENGINE: "Babylon Console engine: observer, plus what training writes; never promotes",
    Kind.GATEWAY: "Babylon Console gateway: reads the routing, writes its call log",
}


def _grant_sql(grants: tuple[Grant, ...], role: str) -> list[str]:
    """One GRANT per privilege list (tables granted the same whole-table privileges share it), then
    the sequences its inserts draw ids from."""
    by_privileges: dict[str, list[str]] = {}
    for grant in grants:
        columns = f" ({', '.join(quote_ident(c) for c in grant.columns)})" if grant.columns else ""
        by_privileges.setdefault(", ".join(f"{p}{columns}" for p in grant.privileges), []).append(
            _relation(grant.table))
    statements = [f"GRANT {privileges} ON {', '.join(tables)} TO {role}"
                  for privileges, tables in by_privileges.items()]
    sequences = sorted({f"{g.table}_id_seq" for g in grants if "INSERT" in g.privileges and g.table in SERIAL_TABLES})
    if sequences:
        statements.append(f"GRANT USAGE ON SEQUENCE {', '.join(sequences)} TO {role}")
    return statements


# The groups whose members the guard stops from changing what is live (unless also operators).
NOT_OPERATORS = ", ".join(_literal(k.role_name) for k in GROUPS if k is not Kind.OPERATOR)


def _guard_statements() -> list[str]:
    operator = _literal(Kind.OPERATOR.role_name)
    others = NOT_OPERATORS
    return [
        f"""CREATE OR REPLACE FUNCTION {GUARD_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  -- only a change of what is live: a row becoming 'deployed', or the live row leaving it
  IF (TG_OP = 'INSERT' AND NEW.status = 'deployed')
     OR (TG_OP = 'UPDATE' AND (NEW.status = 'deployed') IS DISTINCT FROM (OLD.status = 'deployed')) THEN
    -- an operator (or a superuser, a member of every role) may; a role in none of the groups (the
    -- game's own) is not ours to limit; a member of any other group may not
    IF NOT EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = {operator} AND pg_has_role(current_user, g.oid, 'USAGE'))
       AND EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname IN ({others})
                   AND pg_has_role(current_user, g.oid, 'MEMBER')) THEN
      RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('database role %s may not change which checkpoint is live ({_REGISTRY}): that needs '
                         '{Kind.OPERATOR.role_name} (`babylon-console db roles grant %s operator`)',
                         current_user, session_user);
    END IF;
  END IF;
  RETURN NEW;
END
$$""",
        f"DROP TRIGGER IF EXISTS {GUARD_TRIGGER} ON trained_models",
        f"CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OF status ON trained_models "
        f"FOR EACH ROW EXECUTE FUNCTION {GUARD_FUNCTION}()",
    ]


def create_statements() -> list[str]:
    """Every statement `create` runs, in order, in one transaction: the group roles (created when
    missing), their memberships, what they hold on the console's and the game's tables revoked and
    granted again from `GRANTS`, connection to this database and use of its schema, the guard trigger."""
    roles = ", ".join(k.role_name for k in GROUPS)
    statements: list[str] = []
    for kind in GROUPS:
        statements += _create_role(kind, _COMMENTS[kind])
    statements += [f"GRANT {INCLUDES[k].role_name} TO {k.role_name}" for k in GROUPS if k in INCLUDES]
    statements.append(
        "DO $$ BEGIN\n"
        f"  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {roles}', current_database());\n"
        "END $$")
    statements.append(f"GRANT USAGE ON SCHEMA public TO {roles}")
    statements.append(f"REVOKE ALL ON {', '.join(_relation(t) for t in RELATIONS)} FROM {roles}")
    sequences = ", ".join(f"{t}_id_seq" for t in sorted(SERIAL_TABLES))
    statements.append(f"REVOKE ALL ON SEQUENCE {sequences} FROM {roles}")
    for kind in GROUPS:
        statements += _grant_sql(GRANTS[kind], kind.role_name)
    statements += _guard_statements()
    return statements


def script() -> str:
    """`create_statements` as one SQL script, in a transaction (what `db roles create --print` shows)."""
    return "BEGIN;\n\n" + "".join(f"{s};\n\n" for s in create_statements()) + "COMMIT;\n"


# -- acting on a server --------------------------------------------------------------------------


async def create(conn: asyncpg.Connection) -> int:
    """Run `create_statements` in one transaction; returns how many ran. The schema must be migrated
    (the grants name every table of this version)."""
    from .migrations import status

    who = await conn.fetchrow("SELECT current_user AS name, rolsuper, rolcreaterole FROM pg_roles "
                              "WHERE rolname = current_user")
    if not (who["rolsuper"] or who["rolcreaterole"]):
        raise refusal("permission denied to create role", login=who["name"])
    if not who["rolsuper"]:  # a GRANT by a role that owns nothing only warns: say so before, not after
        foreign = [r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN unnest($1::text[]) AS r(relation) "
            "ON c.oid = to_regclass(r.relation) WHERE NOT pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1",
            _qualified())]
        if foreign:
            raise Refused(f"database role {who['name']} does not own {', '.join(foreign)}: the grants and the guard "
                          "need their owner or a superuser (or give them `babylon-console db roles create --print`)",
                          title="Not permitted by the database")
    pending = [f"{m.version:04d}_{m.name}" for m in await status(conn) if not m.applied]
    if pending:
        raise Refused(f"the schema is not up to date ({len(pending)} migrations pending, first {pending[0]}): "
                      "run `babylon-console db migrate` first", title="Schema not migrated")
    statements = create_statements()
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)
    return len(statements)


async def _missing_groups(conn: asyncpg.Connection) -> list[str]:
    names = [k.role_name for k in GROUPS]
    present = {r["rolname"] for r in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname = ANY($1)", names)}
    return [n for n in names if n not in present]


@dataclass(frozen=True, slots=True)
class Granted:
    login: str
    role: str
    already: bool  # it was a member before
    notes: tuple[str, ...] = ()  # what the administrator should know (a superuser, a role without LOGIN)


async def grant(conn: asyncpg.Connection, login: str, kind: Kind, *, revoke: bool = False) -> Granted:
    """Make `login` a member of `kind`'s group role (`revoke`: no longer one). The login role must
    exist: creating it (and its password) is the administrator's."""
    if login in {k.role_name for k in GROUPS}:
        raise InvalidInput(f"{login} is one of the group roles: name a login role", title="Not a login role")
    missing = await _missing_groups(conn)
    if missing:
        raise Refused(f"the group roles do not exist on this server ({', '.join(missing)}): run "
                      "`babylon-console db roles create` first", title="Roles not created")
    row = await conn.fetchrow("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1", login)
    if row is None:
        raise InvalidInput(f"no role {login!r} on this server: create it first, e.g. "
                           f"CREATE ROLE {quote_ident(login)} LOGIN PASSWORD '…'", title="Unknown role")
    role = kind.role_name
    already = bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = $1 AND u.rolname = $2)", role, login))
    if revoke:
        await conn.execute(f"REVOKE {role} FROM {quote_ident(login)}")
    else:
        await conn.execute(f"GRANT {role} TO {quote_ident(login)}")
    notes = []
    if row["rolsuper"]:
        notes.append(f"{login} is a superuser: the server lets it do anything, whatever its groups")
    if not row["rolcanlogin"]:
        notes.append(f"{login} cannot log in (NOLOGIN): ALTER ROLE {quote_ident(login)} LOGIN to use it")
    return Granted(login, role, already, tuple(notes))


@dataclass(frozen=True, slots=True)
class GroupState:
    """One group role as the server has it: its members and what it may do on each table."""

    kind: Kind
    role: str
    exists: bool
    members: tuple[str, ...]  # login roles (and other roles) granted it directly, groups left out
    privileges: dict[str, tuple[str, ...]]  # table -> privileges it holds (its own or by membership)


_PRIVILEGES = ("SELECT", *WRITES)
# What a role may do on each relation that exists, its own grants or by membership (a column grant counts).
_PRIVILEGES_SQL = """
SELECT c.relname AS name,
       has_any_column_privilege($1, c.oid, 'SELECT') AS select,
       has_any_column_privilege($1, c.oid, 'INSERT') AS insert,
       has_any_column_privilege($1, c.oid, 'UPDATE') AS update,
       has_table_privilege($1, c.oid, 'DELETE') AS delete
FROM unnest($2::text[]) WITH ORDINALITY AS r(relation, n)
JOIN pg_class c ON c.oid = to_regclass(r.relation)
ORDER BY r.n
"""


async def groups(conn: asyncpg.Connection) -> tuple[list[GroupState], bool]:
    """Each group role with its members and privileges, by the server's word, and whether the guard
    trigger on trained_models is installed."""
    names = [k.role_name for k in GROUPS]
    relations = _qualified()
    existing = set(names) - set(await _missing_groups(conn))
    result = []
    for kind in GROUPS:
        role = kind.role_name
        if role not in existing:
            result.append(GroupState(kind, role, False, (), {}))
            continue
        members = tuple(r["rolname"] for r in await conn.fetch(
            "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = $1 AND NOT (u.rolname = ANY($2)) "
            "ORDER BY u.rolname", role, names))
        privileges = {r["name"]: tuple(p for p in _PRIVILEGES if r[p.lower()])
                      for r in await conn.fetch(_PRIVILEGES_SQL, role, relations)}
        privileges = {table: held for table, held in privileges.items() if held}
        result.append(GroupState(kind, role, True, members, privileges))
    guarded = bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass('public.trained_models'))",
        GUARD_TRIGGER))
    return result, guarded


# -- refusals in words -----------------------------------------------------------------------------

_ON_RELATION = re.compile(r"permission denied for (?:table|view|sequence|materialized view|relation) (\S+)")
_SCHEMA = ("permission denied for schema", "must be owner of")
_ROLES = ("permission denied to create role", "permission denied to grant role", "permission denied to revoke role",
          "permission denied to alter role", "must have admin option")


def login_role(dsn: str) -> str:
    """The role a connection string logs in as, as libpq and asyncpg choose it: the URL's user, else
    its `user` parameter, else PGUSER, else the operating-system user."""
    parts = urlsplit(dsn)
    if parts.username:
        return unquote(parts.username)
    query = parse_qs(parts.query).get("user")
    if query:
        return query[0]
    return os.environ.get("PGUSER") or getpass.getuser()


def writers(table: str) -> dict[Kind, list[str]]:
    """The groups that may write `table`, each with what it does there (in `GROUPS` order)."""
    found: dict[Kind, list[str]] = {}
    for kind in GROUPS:
        for g in GRANTS[kind]:
            if g.table == table and g.writes and g.does not in found.get(kind, []):
                found.setdefault(kind, []).append(g.does)
    return found


def joined(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def refusal(server_words: str, *, login: str | None = None, action: str | None = None) -> Refused:
    """A privilege refusal of the server (SQLSTATE 42501) as a sentence that says which role may.

    `server_words`: the server's message; `login`: the login role (named in the advice when known);
    `action`: what was attempted ("promote"), said when known."""
    who = f"database role {login}" if login else "this database role"
    doing = action or "do this"
    title = "Not permitted by the database"
    if server_words.startswith("database role "):  # the guard trigger's own sentence
        return Refused(server_words, title=title)
    if any(server_words.startswith(s) for s in _ROLES):
        return Refused(f"{who} may not create or grant roles ({server_words}): that needs a superuser or a role "
                       "with CREATEROLE (and ADMIN on the group roles); give the administrator "
                       "`babylon-console db roles create --print`", title=title)
    if any(server_words.startswith(s) for s in _SCHEMA):
        return Refused(f"{who} may not {doing} ({server_words}): migrations, the grants and the guard run as the "
                       "owner of the console's tables or a superuser (`babylon-console db migrate`, "
                       "`babylon-console db roles create`)", title=title)
    match = _ON_RELATION.search(server_words)
    if match is None:
        return Refused(f"{who} may not {doing}: the server says {server_words!r} "
                       "(`babylon-console db roles list` shows who may do what)", title=title)
    refused = f"{who} may not {action}: the server refused it on" if action else f"{who} is refused by the server on"
    table = match.group(1).strip('"')
    if table.endswith("_id_seq"):
        table = table.removesuffix("_id_seq")
    may = writers(table)
    if not may:
        return Refused(f"{refused} {table}, which only the owner of the console's tables writes", title=title)
    first = next(iter(may))
    return Refused(
        f"{refused} {table}; writing it needs "
        + joined(f"{k.role_name} ({'; '.join(does)})" for k, does in may.items())
        + f" (`babylon-console db roles grant {login or 'LOGIN'} {first.value}`)", title=title)
