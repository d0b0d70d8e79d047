"""One error vocabulary for the core, the CLI and the console.

Every error the project raises on purpose derives from `ConsoleError`, which carries its `kind`
(what the operator can do about it), a short `title`, and the process exit code the CLI uses.
The TUI reads the same fields: an outage becomes the banner, a refusal a warning toast, invalid
input and failures a dialog or an error toast. Errors from libraries (asyncpg, ART, litellm, OS)
are mapped to this vocabulary at the boundary with `as_console_error`.

Exit codes (the one place they are defined; the README's table is generated from the same facts):

    0  success
    1  failed: a check failed, an action was refused, the engine or every step it tried failed
    2  unavailable or invalid: the database cannot be reached, the configuration or the command
       line is wrong
    3  nothing to do: `train` found nothing ready to train
    4  busy: another engine already trains this model
  130  interrupted (Ctrl+C)
"""

from __future__ import annotations

import sys
from enum import StrEnum

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
EXIT_NOTHING_TO_DO = 3
EXIT_BUSY = 4
EXIT_INTERRUPTED = 130


class ErrorKind(StrEnum):
    OUTAGE = "outage"  # the database (or another service) cannot be reached: try again later
    REFUSED = "refused"  # the request is understood and not allowed now (read-only, a rule, a lock)
    INVALID_INPUT = "invalid input"  # what was given is wrong: fix the input
    FAILED = "failed"  # the work was attempted and did not succeed


DEFAULT_EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.OUTAGE: EXIT_UNAVAILABLE,
    ErrorKind.REFUSED: EXIT_FAILED,
    ErrorKind.INVALID_INPUT: EXIT_UNAVAILABLE,
    ErrorKind.FAILED: EXIT_FAILED,
}


class ConsoleError(Exception):
    """Base of every error the project raises on purpose.

    Subclasses set `kind` (and `exit_code` where it differs from the kind's default) and `title` as
    class attributes; an instance may override each of them."""

    kind: ErrorKind = ErrorKind.FAILED
    exit_code: int | None = None  # None: the kind's default
    title: str = "Failed"

    def __init__(self, message: str = "", *, kind: ErrorKind | None = None, exit_code: int | None = None,
                 title: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if exit_code is not None:
            self.exit_code = exit_code
        if title is not None:
            self.title = title

    @property
    def code(self) -> int:
        """The process exit code for this error."""
        return self.exit_code if self.exit_code is not None else DEFAULT_EXIT_CODES[self.kind]

    @property
    def message(self) -> str:
        return str(self) or type(self).__name__


class Outage(ConsoleError):
    kind = ErrorKind.OUTAGE
    title = "Unavailable"


class DatabaseUnavailable(Outage, RuntimeError):
    """The database could not be reached; str() is a one-line, secret-free explanation."""

    title = "Database unavailable"


class Refused(ConsoleError):
    kind = ErrorKind.REFUSED
    title = "Refused"


class InvalidInput(ConsoleError):
    kind = ErrorKind.INVALID_INPUT
    title = "Invalid input"


class Failed(ConsoleError):
    kind = ErrorKind.FAILED
    title = "Failed"


# -- the boundary: library errors in this vocabulary ------------------------------------------

_FILESYSTEM_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_SHORT = 200  # characters of a library's message kept (LLM APIs answer with whole JSON bodies)


def _first_line(exc: BaseException, limit: int = _SHORT) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _from_module(exc: BaseException, *roots: str) -> bool:
    """Whether `exc` is (a subclass of) a class defined in one of the `roots` packages: tells an LLM
    API's or ART's errors apart without importing those heavy packages."""
    return any(getattr(c, "__module__", "").split(".")[0] in roots for c in type(exc).__mro__)


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means "the database cannot be reached" (a restart, a network cut), not a bug.

    asyncpg is read from `sys.modules`: if it was never imported, none of its errors can be raised,
    and this module stays free of heavy imports (the console paints before asyncpg loads)."""
    if isinstance(exc, DatabaseUnavailable | OSError | TimeoutError | ConnectionError):
        return True
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return False
    if isinstance(exc, asyncpg.InternalClientError):
        # a pooled connection left mid-operation when the server went away ("cannot switch to state 15;
        # another operation (2) is in progress", seen across a restart): the outage, not a bug of ours
        return "another operation" in str(exc)
    return isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError
                      | asyncpg.exceptions.CannotConnectNowError | asyncpg.exceptions.AdminShutdownError)


def _validation_message(exc: BaseException) -> str:
    """'where: what' for each of the first errors of a pydantic ValidationError."""
    errors = exc.errors(include_url=False)  # type: ignore[attr-defined]
    parts = [f"{'.'.join(str(p) for p in e['loc']) or getattr(exc, 'title', 'input')}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _privilege_message(exc: BaseException) -> str:
    """A refusal by the server's privileges (SQLSTATE 42501). The guard on what is live says who may
    in its own words ("database role alice may not ..."); a refused grant names only the table, so the
    sentence points at the roles (the CLI, which knows the login, names the group: core/db/roles.py)."""
    words = _first_line(exc, 400)
    if words.startswith("database role "):
        return words
    return (f"the database refused this role: {words} (`babylon-console db roles list` shows which role may; "
            "an administrator grants it with `babylon-console db roles grant LOGIN ROLE`)")


def as_console_error(exc: BaseException) -> ConsoleError:
    """`exc` in the project's vocabulary: a ConsoleError unchanged, anything else mapped by what it
    means to an operator, with the original as `__cause__`."""
    if isinstance(exc, ConsoleError):
        return exc
    mapped: ConsoleError
    if isinstance(exc, KeyboardInterrupt):
        mapped = Failed("interrupted", exit_code=EXIT_INTERRUPTED, title="Interrupted")
    elif _from_module(exc, "litellm", "openai"):
        # Before the outage test: an LLM API's timeout is no database outage (the banner says so).
        mapped = Failed(f"LLM API {type(exc).__name__}: {_first_line(exc)}", title="LLM API error")
    elif _from_module(exc, "art"):
        mapped = Failed(f"ART {type(exc).__name__}: {_first_line(exc)}", title="Training backend error")
    elif isinstance(exc, _FILESYSTEM_ERRORS) and exc.filename is not None:
        # A path that is wrong is no outage; a socket's FileNotFoundError (the embedded server's
        # socket gone with its server) names no file and is one.
        mapped = Failed(_first_line(exc), title="File error")
    elif is_outage(exc):
        mapped = Outage(_first_line(exc))
    elif (pydantic := sys.modules.get("pydantic")) is not None and isinstance(exc, pydantic.ValidationError):
        mapped = InvalidInput(_validation_message(exc))
    elif (asyncpg := sys.modules.get("asyncpg")) is not None and isinstance(exc, asyncpg.InsufficientPrivilegeError):
        mapped = Refused(_privilege_message(exc), title="Not permitted by the database")
    elif asyncpg is not None and isinstance(exc, asyncpg.PostgresError):
        # Data and constraint errors (the connection ones are outages, above): the server's words.
        mapped = Failed(_first_line(exc), title="Database error")
    else:
        mapped = Failed(f"{type(exc).__name__}: {_first_line(exc)}", title="Unexpected error")
    mapped.__cause__ = exc
    return mapped
