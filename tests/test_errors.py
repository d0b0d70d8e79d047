"""One error vocabulary: every public exception of the core is a ConsoleError with a documented kind
and exit code, and `as_console_error` maps library errors at the boundary."""

from __future__ import annotations

import ast
import builtins
import errno
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from pydantic import BaseModel, ValidationError

import babylon_console.core as core
from babylon_console.core.checkpoints.holdout import HoldoutMismatch, HoldoutReasonNeeded, InvalidHoldout
from babylon_console.core.checkpoints.prompt_eval import EndpointRefused, EndpointUnavailable
from babylon_console.core.checkpoints.registry import RegistryError, UnknownModel
from babylon_console.core.db.embedded import EmbeddedServerError
from babylon_console.core.engine.guard import EngineLocked, SideTaskFailed
from babylon_console.core.engine.runs import LockLost
from babylon_console.core.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    ConsoleError,
    DatabaseUnavailable,
    ErrorKind,
    Failed,
    InvalidInput,
    Outage,
    Refused,
    as_console_error,
)
from babylon_console.core.game.market_clock import MarketRunning
from babylon_console.core.game.parsing import RowProblem
from babylon_console.core.game.windows import InvalidWindowId
from babylon_console.core.gateway.upstreams import NoUpstream
from babylon_console.core.sim.policy import CheckpointError
from babylon_console.core.simgame.demo import DemoInUse
from babylon_console.core.training.backends.empty_step import NothingTrained
from babylon_console.core.training.backends.factory import BackendUnavailable
from babylon_console.core.training.batches import CheckpointConflict
from babylon_console.core.training.groups import DropoutError
from babylon_console.core.training.health_store import AlarmAlreadyAcknowledged, AlarmNotFound
from babylon_console.core.training.judges.base import JudgeError
from babylon_console.core.training.tokenization import TokenizerUnavailable

CORE = Path(core.__file__).parent

# The documented table: class -> (kind, exit code, the builtin base kept for older `except` clauses).
PUBLIC_ERRORS: dict[type[ConsoleError], tuple[ErrorKind, int, type[Exception]]] = {
    JudgeError: (ErrorKind.FAILED, EXIT_FAILED, RuntimeError),
    InvalidWindowId: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    DropoutError: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    RowProblem: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    CheckpointError: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    EngineLocked: (ErrorKind.REFUSED, EXIT_BUSY, RuntimeError),
    LockLost: (ErrorKind.FAILED, EXIT_BUSY, RuntimeError),
    SideTaskFailed: (ErrorKind.FAILED, EXIT_FAILED, RuntimeError),
    RegistryError: (ErrorKind.REFUSED, EXIT_FAILED, RuntimeError),
    UnknownModel: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, RuntimeError),
    EmbeddedServerError: (ErrorKind.OUTAGE, EXIT_UNAVAILABLE, RuntimeError),
    DatabaseUnavailable: (ErrorKind.OUTAGE, EXIT_UNAVAILABLE, RuntimeError),
    BackendUnavailable: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, RuntimeError),
    NothingTrained: (ErrorKind.FAILED, EXIT_FAILED, RuntimeError),
    CheckpointConflict: (ErrorKind.FAILED, EXIT_FAILED, RuntimeError),
    TokenizerUnavailable: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, RuntimeError),
    EndpointUnavailable: (ErrorKind.FAILED, EXIT_UNAVAILABLE, RuntimeError),
    EndpointRefused: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    HoldoutMismatch: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    InvalidHoldout: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, ValueError),
    HoldoutReasonNeeded: (ErrorKind.REFUSED, EXIT_FAILED, RuntimeError),
    DemoInUse: (ErrorKind.REFUSED, EXIT_FAILED, RuntimeError),
    MarketRunning: (ErrorKind.REFUSED, EXIT_FAILED, RuntimeError),
    NoUpstream: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, RuntimeError),
    AlarmNotFound: (ErrorKind.INVALID_INPUT, EXIT_UNAVAILABLE, LookupError),
    AlarmAlreadyAcknowledged: (ErrorKind.REFUSED, EXIT_FAILED, RuntimeError),
}
VOCABULARY = {ConsoleError, Outage, Refused, InvalidInput, Failed}
# Public classes whose names read like errors but are no exceptions.
NOT_EXCEPTIONS = {"TrainedModel", "StepTrained"}
ERROR_LIKE = ("Error", "Exception", "Unavailable", "Locked", "Lost", "Conflict", "Trained", "Problem", "Id")


def _instance(cls: type[ConsoleError]) -> ConsoleError:
    return cls("2025-11-24T10:00", "the judge timed out") if cls is JudgeError else cls("why it failed")  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", list(PUBLIC_ERRORS), ids=lambda c: c.__name__)
def test_public_errors_have_their_documented_kind_code_and_title(cls: type[ConsoleError]) -> None:
    kind, code, builtin = PUBLIC_ERRORS[cls]
    exc = _instance(cls)
    assert isinstance(exc, ConsoleError) and isinstance(exc, builtin)
    assert (exc.kind, exc.code) == (kind, code)
    assert "title" in cls.__dict__ and exc.title  # its own title, not the kind's generic one
    assert exc.message == str(exc)
    copy = pickle.loads(pickle.dumps(exc))  # judges and backends may raise them in other processes
    assert (type(copy), str(copy), copy.kind, copy.code) == (cls, str(exc), kind, code)


def test_an_instance_may_override_kind_code_and_title() -> None:
    exc = Failed("x", kind=ErrorKind.REFUSED, exit_code=7, title="T")
    assert (exc.kind, exc.code, exc.title) == (ErrorKind.REFUSED, 7, "T")
    assert Failed().message == "Failed"


def _core_classes() -> dict[str, tuple[str, list[str]]]:
    """Every class defined in the core: name -> (file, names of its bases)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
                found[node.name] = (str(path.relative_to(CORE)), bases)
    return found


def _closure(classes: dict[str, tuple[str, list[str]]], seeds: set[str]) -> set[str]:
    names = set(seeds)
    while True:
        more = {n for n, (_, bases) in classes.items() if n not in names and names.intersection(bases)}
        if not more:
            return names
        names |= more


def test_every_public_exception_class_in_the_core_is_a_documented_console_error() -> None:
    classes = _core_classes()
    builtin_errors = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                      and issubclass(getattr(builtins, n), BaseException)}
    library_errors = {b for _, bases in classes.values() for b in bases if b.endswith(("Error", "Exception"))}
    exceptions = _closure(classes, builtin_errors | library_errors) & classes.keys()
    console = _closure(classes, {"ConsoleError"}) & classes.keys()
    public = {n for n in exceptions if not n.startswith("_")}
    assert len(public) > 10  # the scan really found them
    assert sorted(public - console) == []  # derive each from ConsoleError (Outage, Refused, InvalidInput, Failed)
    assert public == {c.__name__ for c in PUBLIC_ERRORS | dict.fromkeys(VOCABULARY)}  # ...and document it above
    error_like = {n for n in classes if not n.startswith("_") and n.endswith(ERROR_LIKE)}
    assert sorted(error_like - exceptions - NOT_EXCEPTIONS) == []


def test_the_vocabulary_loads_nothing_but_the_standard_library() -> None:
    tree = ast.parse((CORE / "errors.py").read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top <= sys.stdlib_module_names | {"__future__"}
    code = ("import sys, babylon_console.core.errors\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'asyncpg', 'orjson')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- the boundary mapper -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_refused_database_connection_is_an_outage() -> None:
    with pytest.raises(Exception) as info:
        await asyncpg.connect(host="127.0.0.1", port=_closed_port(), user="u", database="d", timeout=5)
    mapped = as_console_error(info.value)
    assert type(mapped) is Outage and mapped.kind is ErrorKind.OUTAGE and mapped.code == EXIT_UNAVAILABLE
    assert mapped.__cause__ is info.value and mapped.message


async def test_a_data_error_of_the_database_is_a_failure_with_its_message(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        await pool.fetchval("SELECT 1 / 0")
    mapped = as_console_error(info.value)
    assert type(mapped) is Failed and "division by zero" in mapped.message and mapped.title == "Database error"


def test_a_validation_error_is_invalid_input_saying_where_and_what() -> None:
    class Inner(BaseModel):
        rate: float

    class Options(BaseModel):
        iterations: int
        inner: Inner

    with pytest.raises(ValidationError) as info:
        Options.model_validate({"iterations": "many", "inner": {"rate": "fast"}})
    mapped = as_console_error(info.value)
    assert type(mapped) is InvalidInput and mapped.code == EXIT_UNAVAILABLE
    assert mapped.message.startswith("iterations: Input should be a valid integer")
    assert "; inner.rate: Input should be a valid number" in mapped.message


def test_os_errors_network_ones_are_outages_file_ones_failures() -> None:
    reset = OSError(errno.ECONNRESET, "Connection reset by peer")
    assert type(as_console_error(reset)) is Outage
    assert type(as_console_error(TimeoutError())) is Outage
    missing = as_console_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope"))
    assert type(missing) is Failed and "/nope" in missing.message
    assert type(as_console_error(FileNotFoundError(errno.ENOENT, "No such file or directory"))) is Outage  # a socket


def test_llm_api_and_art_errors_are_failures_with_a_short_message() -> None:
    api_error = type("RateLimitError", (Exception,), {"__module__": "litellm.exceptions"})
    mapped = as_console_error(api_error("litellm.RateLimitError: " + "x" * 5000 + "\nbody"))
    assert type(mapped) is Failed and mapped.title == "LLM API error"
    assert mapped.message.startswith("LLM API RateLimitError: litellm.RateLimitError") and len(mapped.message) < 260
    # ART's own timeout is a TimeoutError: still no database outage.
    art_timeout = type("ArtVllmMetricsTimeoutError", (TimeoutError,), {"__module__": "art.errors"})
    assert type(as_console_error(art_timeout("vLLM metrics timed out"))) is Failed


def test_anything_else_is_a_failure_caused_by_the_original() -> None:
    original = ZeroDivisionError("division by zero")
    mapped = as_console_error(original)
    assert type(mapped) is Failed and mapped.code == EXIT_FAILED and mapped.__cause__ is original
    assert mapped.message == "ZeroDivisionError: division by zero"
    assert as_console_error(KeyboardInterrupt()).code == EXIT_INTERRUPTED
    refused = RegistryError("read-only console")
    assert as_console_error(refused) is refused
