"""What this connection's role may do, by the server's word, and how a client says what it may not:
the console and the CLI read it when they connect and act read-only on their own when it allows
nothing (`core.db.roles` makes the groups and their grants)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Refused
from .roles import GROUPS, NOT_OPERATORS, Kind, joined

if TYPE_CHECKING:
    import asyncpg


# How a client names the group a role acts as (`Permissions.standing`), the widest first: an operator
# and an engine are observers too, by membership.
_STANDING = {Kind.OPERATOR: "an operator", Kind.ENGINE: "an engine", Kind.GATEWAY: "a gateway",
             Kind.OBSERVER: "an observer"}


@dataclass(frozen=True, slots=True)
class Permissions:
    """What this connection's role may do, by the server's word: what a client follows (a console shows
    itself read-only when none of it is allowed)."""

    role: str  # current_user
    promote: bool  # promote and roll back (trained_models' status past the guard, the audit trail, the rollout)
    holdout: bool  # set the hold-out
    engine_commands: bool  # pause, resume, stop an engine elsewhere
    group: Kind | None = None  # the widest group it is a member of; None: none of them, or a superuser
    may_acknowledge: bool = False  # acknowledge training-health alarms (refused: `refusal("acknowledge alarms")`)

    @property
    def read_only(self) -> bool:
        return not (self.promote or self.holdout or self.engine_commands or self.may_acknowledge)

    @property
    def standing(self) -> str:
        """`database role alice is an observer`: who acts, by the server's word (a read-only badge says it)."""
        what = f"is {_STANDING[self.group]}" if self.group is not None else "is in none of the console's groups"
        return f"database role {self.role} {what}"

    def refusal(self, doing: str, needs: tuple[Kind, ...] = (Kind.OPERATOR,)) -> Refused:
        """Why this role may not do `doing` ("promote"), naming the groups that may: what a client says
        instead of asking the server, which would refuse it."""
        title = "Not permitted by the database"
        if self.group in needs:  # a member whose group lacks the grant here: the grants are out of date
            return Refused(f"database role {self.role} may not {doing}: {self.group.role_name} does not hold the "
                           "grant on this database (`babylon-console db roles create` grants it again)", title=title)
        return Refused(f"{self.standing} and may not {doing}: that needs {joined(k.role_name for k in needs)} "
                       f"(`babylon-console db roles grant {self.role} {needs[0].value}`)", title=title)


_PERMISSIONS_SQL = f"""
SELECT current_user AS role,
       has_column_privilege('public.trained_models', 'status', 'UPDATE')
         AND has_table_privilege('public.console_promotions', 'INSERT')
         AND has_table_privilege('public.console_rollout', 'INSERT')
         -- the guard's rule: a member of another group may not change what is live unless an operator
         AND (EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = '{Kind.OPERATOR.role_name}'
                      AND pg_has_role(current_user, g.oid, 'USAGE'))
              OR NOT EXISTS (SELECT 1 FROM pg_roles g
                             WHERE g.rolname IN ({NOT_OPERATORS})
                             AND pg_has_role(current_user, g.oid, 'MEMBER'))) AS promote,
       has_table_privilege('public.console_holdout', 'INSERT') AS holdout,
       has_table_privilege('public.console_engine_commands', 'INSERT') AS engine_commands,
       -- by oid: NULL (false) on a schema older than the alarms
       coalesce(has_column_privilege(to_regclass('public.console_alarms'), 'acknowledged_at', 'UPDATE')
                AND has_column_privilege(to_regclass('public.console_alarms'), 'acknowledged_by', 'UPDATE')
                AND has_column_privilege(to_regclass('public.console_alarms'), 'note', 'UPDATE'), false)
         AS may_acknowledge,
       -- a superuser is a member of every role: it is in none of the groups
       (SELECT g.rolname FROM pg_roles g JOIN unnest($1::text[]) WITH ORDINALITY AS o(name, n) ON o.name = g.rolname
        WHERE pg_has_role(current_user, g.oid, 'MEMBER')
          AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
        ORDER BY o.n LIMIT 1) AS group
"""


async def permissions(conn: asyncpg.Connection | asyncpg.Pool) -> Permissions:
    """What the connected role may do (the embedded superuser: everything)."""
    row = dict(await conn.fetchrow(_PERMISSIONS_SQL, [k.role_name for k in _STANDING]))
    group = row.pop("group")
    return Permissions(**row, group=next((k for k in GROUPS if k.role_name == group), None))
