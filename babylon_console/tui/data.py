"""The console's data layer: its door to the core for reads and operator actions.

Everything here is async and returns core models or small plain records; nothing here knows about
widgets. `ConsoleData` reads and acts on the main event loop through one small asyncpg pool
(readiness, outcomes, trajectories, checkpoints, promote/rollback, events); every call is short.
The work that is not short (the training engine, the demo's simulated market) runs off the
console's loop, in `runners/`.

Heavy modules (backends, evaluation, evidence) are imported inside the functions that need
them, never at import of this module: the console paints first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only what the first frame needs is imported with this module (the panes' event models, the error
# vocabulary, settings and clocks); the rest of the core is imported where it is used, after paint.
from ..core import events as events  # the typed event models, for the panes that fold them
from ..core.clock import Clock
from ..core.config import Settings
from ..core.errors import ConsoleError, ErrorKind, Refused, as_console_error
from ..core.events import Event, EventKind
from ..core.jsonvalue import json_object

if TYPE_CHECKING:
    import asyncpg

    from ..core.checkpoints.registry import ActionResult, AuditEntry, Rollout
    from ..core.config import ReadinessCriteria
    from ..core.db.connections import DatabaseTarget
    from ..core.db.permissions import Permissions
    from ..core.engine import control as core_control
    from ..core.engine.runs import RunRow
    from ..core.game.rows import TrainedModel, WindowGroundTruth
    from ..core.game.store import WindowTrajectories
    from ..core.game.windows import WindowReadiness
    from ..core.training.health import StepHealth
    from ..core.training.health_store import AlarmRecord

# names this module offers without importing their core module until first use (PEP 562)
_LAZY = {
    "ActionResult": "babylon_console.core.checkpoints.registry",
    "RegistryError": "babylon_console.core.checkpoints.registry",
    "DatabaseUnavailable": "babylon_console.core.errors",
    "ReadinessCriteria": "babylon_console.core.config",
    "WindowReadiness": "babylon_console.core.game.windows",
    "WindowGroundTruth": "babylon_console.core.game.rows",
    "WindowTrajectories": "babylon_console.core.game.store",
    "RunRow": "babylon_console.core.engine.runs",
    "held_out": "babylon_console.core.game.windows",
    "headlines": "babylon_console.core.training.judges.base",
    "StepHealth": "babylon_console.core.training.health",
    "AlarmRecord": "babylon_console.core.training.health_store",
    "training_key": "babylon_console.core.names",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def evidence_against(model_id: str, evaluation: Any, readout: Any) -> tuple[str, dict[str, Any]] | None:
    """What speaks against promoting `model_id`, from evidence already loaded
    (`core.checkpoints.promotion.contrary`)."""
    from ..core.checkpoints.promotion import contrary

    return contrary(model_id, evaluation, readout)


def no_evidence(model_id: str, evaluation: Any, readout: Any) -> str | None:
    """The sentence saying a promotion would rest on no evidence at all (`core.checkpoints.promotion.no_evidence`)."""
    from ..core.checkpoints.promotion import no_evidence as nothing

    return nothing(model_id, evaluation, readout)


def share_refusal(model_id: str, live_id: str | None, share: float) -> str | None:
    """Why `model_id` cannot be served at `share` now (`core.checkpoints.registry.share_refusal`): an A/B share
    needs a live model."""
    from ..core.checkpoints.registry import refusal_message
    from ..core.checkpoints.registry import share_refusal as rule

    reason = rule(live_id, share)
    return None if reason is None else refusal_message(model_id, share, reason)


def is_offline(storage_path: str) -> bool:
    """An offline checkpoint's served name (`core.names.is_offline`)."""
    from ..core.names import is_offline as offline

    return offline(storage_path)


def one_line(exc: BaseException) -> str:
    """An error's first line (its type's name when it says nothing), for banners and toasts."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_outage(exc: BaseException) -> bool:
    """The database (or the network to it) is gone (`core.errors.is_outage`)."""
    from ..core.errors import is_outage as outage

    return outage(exc)


log = logging.getLogger(__name__)

__all__ = [  # and, imported on first use: the names of `_LAZY`
    "CheckpointRow",
    "CheckpointsView",
    "ConsoleData",
    "ConsoleError",
    "ErrorKind",
    "Event",
    "EventKind",
    "Refused",
    "as_console_error",
    "close_pool",
    "events",
    "evidence_against",
    "is_outage",
    "no_evidence",
    "one_line",
    "share_refusal",
]

PING_TIMEOUT_S = 2.0
FOLLOW_COALESCE_S = 0.1  # a burst of events is read in one query, at most ~10 times a second
COMMAND_TIMEOUT_S = 10.0  # how long the console waits for an engine elsewhere to acknowledge

# What the server's roles must allow for a key's action: the `permissions.Permissions` field that says so
# (None: no field does; only a login that may do none of the console's actions is refused it), the
# words of the refusal, and the groups that may.
_ROLE_RULES: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "promote": ("promote", "promote", ("operator",)),
    "rollback": ("promote", "roll back", ("operator",)),
    "toggle_pause": ("engine_commands", "pause or resume an engine", ("operator",)),
    "stop_engine": ("engine_commands", "stop an engine", ("operator",)),
    "evaluate": (None, "evaluate", ("operator", "engine")),
    "start_engine": (None, "start an engine", ("engine",)),
    "acknowledge_alarm": ("may_acknowledge", "acknowledge alarms", ("operator",)),
}





# -- records the panes show ------------------------------------------------------------------------


@dataclass(slots=True)
class CheckpointRow:
    model: TrainedModel
    step: int | None
    metrics: dict[str, float]
    role: str  # live, candidate, or the row's status
    share: float | None
    refusal: str | None  # why it cannot be promoted; None when it can
    evaluation: Any = None  # the newest held-out evaluation (core.checkpoints.evaluation.EvalResult), if any

    @property
    def evaluation_text(self) -> str:
        """`P&L +12.3 [+2.1,+22.5] n=12 vs base` (or "–"): the difference, its 95% CI, windows, against
        what; in P&L for offline checkpoints, in answer score (`score +0.12 [...]`) for served ones."""
        e = self.evaluation
        if e is None:
            return "–"
        spec = "+.1f" if e.method == "simulator" else "+.2f"  # one place fewer than `e.spec`: a table cell
        ci = "" if e.ci_low is None else f" [{e.ci_low:{spec}},{e.ci_high:{spec}}]"
        against = "base" if e.against_model_id is None else ("step" + e.against_model_id.rsplit("step", 1)[-1]
                                                              if "step" in e.against_model_id else e.against_model_id)
        return f"{e.short_unit} {e.mean_diff:{spec}}{ci} n={e.n} vs {against}"

    @property
    def evaluation_summary(self) -> str | None:
        """One sentence on the newest evaluation for the detail line (None: never evaluated)."""
        e = self.evaluation
        if e is None:
            return None
        spec = e.spec
        on = f" ({e.prompts} recorded prompts)" if e.method == "prompts" else ""
        text = (f"Held-out vs {e.against_model_id or 'the base model'}: {e.mean_diff:{spec}} {e.unit}, "
                f"{e.bounds_text(spec)} over {e.n} windows{on}, ahead in {e.win_rate:.0%}")
        if e.method == "prompts":
            text += f"; not a valid action: {e.unusable_a} vs {e.unusable_b}"
        if getattr(e, "left_out_text", None):
            text += f"; {e.left_out_text}"
        return text


@dataclass(slots=True)
class CheckpointsView:
    rows: list[CheckpointRow]
    live: TrainedModel | None
    rollout: Rollout | None
    audit: list[AuditEntry]
    ab: Any = None  # core.checkpoints.evidence.ABReadout while a rollout runs
    holdout_share: float = 0.0  # the database's hold-out (V evaluates on it)
    game_serves: TrainedModel | None = None  # what the Prisma-era game's own query returns
    serving_warning: str | None = None  # set when that is not the live model
    gateways: Any = None  # core.checkpoints.evidence.GatewaysUp: the model gateways that are up


def _step_of(model: TrainedModel) -> int | None:
    for text in (model.version, model.model_id):
        digits = "".join(ch for ch in text.rsplit("step", 1)[-1] if ch.isdigit())
        if "step" in text and digits:
            return int(digits)
    return None


# -- the data layer --------------------------------------------------------------------------------


class ConsoleData:
    """Reads and actions for the console, through one pool on the console's event loop.

    `clock`: the "now" for readiness; None means the database's clock (`core.game.market_clock`: a simulated
    market's in a simulated database, such as the demo's; else the wall clock). Tests pass a fixed
    clock. `preferences_dir`: where the theme and keymap live (the demo keeps the operator's, though
    its data dir is its own).
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None, read_only: bool = False,
                 operator: str | None = None, pool_size: int = 4, label: str | None = None,
                 preferences_dir: Path | None = None) -> None:
        self.settings = settings
        self.label = label
        self.preferences_dir = preferences_dir or settings.data_dir
        self.clock = clock
        self.read_only = read_only
        self._operator = operator
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._target: DatabaseTarget | None = None
        self._connect_lock = asyncio.Lock()
        self._readouts: Any = None  # core.checkpoints.evidence.CachedReadout, made on the first rollout shown
        self.holdout: Any = None  # the database's hold-out record (core.checkpoints.holdout), as last read; None: none
        self.permissions: Permissions | None = None  # what this login may do, by the server's word (read at connect)

    @property
    def operator(self) -> str:
        """Who acts, for the audit trail (default: login@host; looked up when first needed)."""
        if self._operator is None:
            from ..core.engine.control import default_operator

            self._operator = default_operator()
        return self._operator

    # -- connection ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._pool is not None

    @property
    def dsn(self) -> str:
        if self._target is None:
            from ..core.errors import DatabaseUnavailable

            raise DatabaseUnavailable("not connected yet")
        return self._target.dsn

    def target(self) -> DatabaseTarget:
        """Where the console connected (resolved now if it has not connected yet)."""
        from ..core.db.connections import resolve_target

        return self._target or resolve_target(self.settings)

    @property
    def is_demo(self) -> bool:
        """The demo's own database (`core.simgame.demo`), not the operator's."""
        from ..core.simgame.demo import is_demo

        return is_demo(self.settings)

    @property
    def database_label(self) -> str:
        """The database's name and kind, for the header: `babylon (embedded)`, `babylon (demo, embedded
        in ~/.local/share/babylon-console/demo)`, `game on db.example:5432`."""
        if self.label:
            return self.label
        if self.settings.database_url is None:
            if self.is_demo:
                from ..core.simgame.demo import where

                return f"{self.settings.embedded_database} (demo, {where(self.settings).split(' in ', 1)[1]})"
            return f"{self.settings.embedded_database} (embedded)"
        return self.target_label

    @property
    def target_label(self) -> str:
        """Where the console is connected, without secrets (a socket path is shortened)."""
        if self.label:
            return self.label
        if self.settings.database_url is None:
            return "the demo's own embedded PostgreSQL" if self.is_demo else "embedded PostgreSQL"
        from ..core.config import describe_dsn

        host, database = describe_dsn(self.settings.database_url.get_secret_value())
        return f"{database} on {'local socket' if host.startswith('/') else host}"

    async def connect(self) -> None:
        """Open the pool (starting the embedded server and migrating if needed). Idempotent."""
        async with self._connect_lock:
            if self._pool is not None:
                return
            from ..core.db.connections import open_database

            target, pool = await open_database(self.settings, migrate=not self.read_only, max_size=self.pool_size)
            try:  # BABYLON_HOLDOUT_SHARE, if given, must agree with the database's record: refused otherwise
                from ..core.checkpoints.holdout import read_checked

                self.holdout = await read_checked(pool, self.settings.holdout_share)
                self.permissions = await _permissions(pool)
            except BaseException:
                await close_pool(pool)
                raise
            self._target, self._pool = target, pool

    @property
    def holdout_share(self) -> float:
        """The database's hold-out share, as last read (0: no hold-out)."""
        return self.holdout.share if self.holdout is not None else 0.0

    async def read_holdout(self) -> float:
        """Read the hold-out record again (`babylon-console holdout` may have changed it); its share."""
        from ..core.checkpoints.holdout import current_holdout

        self.holdout = await current_holdout(self.pool)
        return self.holdout_share

    # -- what the server's roles let this login do --------------------------------------------

    @property
    def role_badge(self) -> str | None:
        """`read-only: database role alice is an observer` when the server lets this login do none of the
        console's actions (the console then runs read-only by itself); None otherwise."""
        p = self.permissions
        return f"read-only: {p.standing}" if p is not None and p.read_only else None

    def role_refusal(self, action: str) -> str | None:
        """Why the server's roles refuse this login a key's `action` (promote, rollback, evaluate, ...),
        naming the groups that may; None when they allow it, or before the server was asked."""
        reason = self._role_reason(action)
        return f"read-only: {reason}" if reason and self.role_badge else reason

    def _role_reason(self, action: str) -> str | None:
        p, rule = self.permissions, _ROLE_RULES.get(action)
        if p is None or rule is None:
            return None
        field, doing, needs = rule
        if (getattr(p, field) if field is not None else not p.read_only):
            return None
        from ..core.db.roles import Kind

        kinds = tuple(Kind(k) for k in needs)
        if p.read_only and p.group in kinds:  # an engine's login: it trains where engines run, not here
            return (f"{p.standing}, which may not promote, set the hold-out or send engine commands: this console "
                    "only watches (engines run as `babylon-console engine`)")
        return p.refusal(doing, kinds).message

    @contextlib.asynccontextmanager
    async def _as_permitted(self, action: str) -> AsyncIterator[None]:
        """A refusal by the server's roles during `action` (privileges changed while the console runs):
        the privileges are read again, and the refusal becomes the sentence naming the groups that may."""
        import asyncpg

        try:
            yield
        except asyncpg.InsufficientPrivilegeError as exc:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.permissions = await _permissions(self.pool)
            reason = self._role_reason(action)
            if reason is not None:
                raise Refused(reason, title="Not permitted by the database") from exc
            from ..core.db.roles import login_role, refusal

            raise refusal(one_line(exc), login=login_role(self.dsn), action=_ROLE_RULES[action][1]) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            from ..core.errors import DatabaseUnavailable

            raise DatabaseUnavailable("the database is not connected")
        return self._pool

    async def ping(self, limit_s: float = PING_TIMEOUT_S) -> None:
        """Raise when the database does not answer within `limit_s` seconds (connects if needed)."""
        if self._pool is None:
            await asyncio.wait_for(self.connect(), limit_s * 8)
            return
        from ..core.db.connections import ping

        await ping(self.pool, limit_s)

    async def now(self) -> datetime:
        if self.clock is not None:
            return self.clock.now()
        from ..core.game.market_clock import current_clock

        return (await current_clock(self.pool)).now()

    # -- windows and outcomes ------------------------------------------------------------------

    async def readiness(self, criteria: ReadinessCriteria, lookback_hours: int | None) -> list[WindowReadiness]:
        from ..core.game.store import GameStore
        from ..core.names import training_key

        now = await self.now()
        key = training_key(self.settings.backend, self.settings.model_name)
        # the hold-out is the database's, whatever the criteria were built with
        criteria = criteria.model_copy(update={"holdout_share": await self.read_holdout()})
        return await GameStore(self.pool).window_readiness(criteria, now, lookback_hours, key)

    async def ground_truth(self, window_id: str) -> WindowGroundTruth:
        from ..core.game.store import GameStore

        return await GameStore(self.pool).ground_truth(window_id)

    async def window_trajectories(self, window_id: str) -> WindowTrajectories:
        """The window's trajectories with our judgments (the game's own judgment is on each row)."""
        from ..core.game.store import GameStore

        store = GameStore(self.pool)
        loaded = await store.window_trajectories(window_id)
        loaded.judgments = await store.window_judgments(window_id)
        return loaded

    async def window_calibration(self, window_id: str) -> Any:
        """The window's judge calibration (`core.training.calibration.WindowCalibration`) for the
        judge of its newest judgment."""
        from ..core.training.calibration import window_calibration

        return await window_calibration(self.pool, window_id)

    async def has_history(self) -> bool:
        from ..core.game.store import GameStore

        return await GameStore(self.pool).has_trajectories()

    # -- checkpoints ---------------------------------------------------------------------------

    async def checkpoints(self, limit: int = 200) -> CheckpointsView:
        from ..core.checkpoints.evaluation import latest_per_model
        from ..core.checkpoints.registry import Registry, eligibility, game_serves, serving_mismatch

        registry = Registry(self.pool)
        served = await game_serves(self.pool)
        evaluations = await latest_per_model(self.pool)
        models = await registry.models(limit)
        live = next((m for m in models if m.status == "deployed"), None) or await registry.live()
        rollout = await registry.rollout()
        audit = await registry.audit(50)
        holdout_share = await self.read_holdout()
        live_id = live.model_id if live else None
        rows = []
        for m in models:
            metrics = {k: float(v) for k, v in json_object(m.eval_metrics).items() if isinstance(v, int | float)}
            role, share = m.status, None
            if m.model_id == live_id:
                role = "live"
                share = 1.0 - (rollout.candidate_share if rollout else 0.0)
            elif rollout is not None and m.model_id == rollout.candidate_model_id:
                role, share = "candidate", rollout.candidate_share
            rows.append(CheckpointRow(m, _step_of(m), metrics, role, share, eligibility(m, live_id, rollout),
                                      evaluations.get(m.model_id)))
        ab = None
        if rollout is not None:
            if self._readouts is None:
                from ..core.checkpoints.evidence import CachedReadout

                self._readouts = CachedReadout(self.settings.gate())
            ab = await self._readouts.get(self.pool)
        else:  # no rollout: a rollback the gate decided is still evidence against promoting that candidate again
            from ..core.checkpoints.evidence import ABReadout, rolled_back

            previous = await rolled_back(self.pool)
            ab = ABReadout(live_model_id=live_id, rolled_back=previous) if previous else None
        from ..core.checkpoints.evidence import gateways_up

        gateways = await gateways_up(self.pool, fresh_s=max(15.0, 3 * self.settings.heartbeat_s))
        return CheckpointsView(rows, live, rollout, audit, ab, holdout_share, served, serving_mismatch(live, served),
                               gateways)

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            from ..core.checkpoints.registry import RegistryError

            raise RegistryError(f"read-only console: {what} refused")

    async def evaluate(self, model_id: str, against: str, progress: Callable[[int, int], None] | None = None) -> Any:
        """Held-out evaluation (`core.checkpoints.evaluation.evaluate`) on the database's hold-out, stored;
        its result."""
        from ..core.checkpoints.evaluation import evaluate

        if self.read_only:
            from ..core.checkpoints.registry import RegistryError

            raise RegistryError("read-only console: evaluate refused")
        async with self._as_permitted("evaluate"):
            return await evaluate(self.pool, self.settings.data_dir, model_id, against, progress=progress,
                                  settings=self.settings)

    async def contrary_evidence(self, model_id: str) -> tuple[str, dict[str, Any]] | None:
        """What speaks against promoting `model_id` (`core.checkpoints.promotion.contrary_evidence`)."""
        from ..core.checkpoints.promotion import contrary_evidence

        return await contrary_evidence(self.pool, model_id, self.settings.gate())

    async def promote(self, model_id: str, share: float, reason: str | None = None) -> ActionResult:
        """Promote; against the evidence only with a `reason`, recorded with the evidence."""
        from ..core.checkpoints.promotion import promote_on_evidence

        self._refuse_if_read_only("promote")
        async with self._as_permitted("promote"):
            return await promote_on_evidence(self.pool, model_id, share=share, operator=self.operator, reason=reason,
                                             gate=self.settings.gate())

    async def rollback(self) -> ActionResult:
        from ..core.checkpoints.registry import Registry

        self._refuse_if_read_only("rollback")
        async with self._as_permitted("rollback"):
            return await Registry(self.pool).rollback(operator=self.operator)

    # -- events and runs -----------------------------------------------------------------------

    async def recent_events(self, limit: int = 300) -> list[Event]:
        return await events.recent(self.pool, limit)

    async def training_history(self, limit: int = 2000) -> list[Event]:
        """The latest `step_trained` and `window_judged` events, oldest first (charts, judging)."""
        return await events.of_kinds(self.pool, [EventKind.STEP_TRAINED, EventKind.WINDOW_JUDGED], limit)

    async def last_event_id(self) -> int:
        return await events.last_event_id(self.pool)

    def follow_events(self, after_id: int | None, coalesce_s: float = FOLLOW_COALESCE_S
                      ) -> AsyncIterator[list[Event]]:
        """Batches of events with id > after_id, then new ones as any process announces them;
        a burst costs one query (`core.event_bus.EventBus.follow_batches`)."""
        from ..core.event_bus import EventBus

        return EventBus(self.dsn).follow_batches(after_id, coalesce_s=coalesce_s)

    async def send_command(self, run_id: str, command: core_control.Command, timeout_s: float = COMMAND_TIMEOUT_S
                           ) -> core_control.CommandRow | None:
        """Pause, resume or stop an engine elsewhere; its acknowledgement, or None after `timeout_s`."""
        from ..core.engine import control as core_control

        async with self._as_permitted("stop_engine" if command == "stop" else "toggle_pause"):
            command_id = await core_control.send(self.pool, run_id, command, self.operator)
        return await core_control.wait_ack(self.pool, command_id, timeout_s)

    async def latest_run(self) -> RunRow | None:
        """The newest run of this console's model, wherever it runs (`core.engine.runs.latest_of_model`)."""
        from ..core.engine import runs as core_runs

        return await core_runs.latest_of_model(self.pool, self.settings.model_name)

    # -- training health and alarms ------------------------------------------------------------

    async def health(self, model_name: str | None, limit: int = 1) -> list[StepHealth]:
        """The newest `limit` steps' health figures of a training key, oldest first
        (`core.training.health_store.health_history`)."""
        from ..core.training.health_store import health_history

        return await health_history(self.pool, model_name, limit=limit)

    async def alarms(self, model_name: str | None, *, open_only: bool = False, limit: int = 50) -> list[AlarmRecord]:
        """The newest alarms of a training key, newest first (`core.training.health_store.alarms`)."""
        from ..core.training.health_store import alarms

        return await alarms(self.pool, model_name, open_only=open_only, limit=limit)

    async def acknowledge_alarm(self, alarm_id: int, note: str | None = None) -> AlarmRecord:
        """Acknowledge an alarm as this console's operator (the server records its role beside the name)."""
        from ..core.training.health_store import acknowledge

        if self.read_only:
            raise Refused("read-only console: acknowledging an alarm is refused")
        async with self._as_permitted("acknowledge_alarm"):
            return await acknowledge(self.pool, alarm_id, operator=self.operator, note=note)


async def _permissions(pool: asyncpg.Pool) -> Permissions | None:
    """What this login may do (`core.db.permissions.permissions`); None on a schema without the tables it asks
    about (a read-only console does not migrate)."""
    import asyncpg

    from ..core.db.permissions import permissions

    try:
        return await permissions(pool)
    except asyncpg.UndefinedTableError:
        return None


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close a pool at shutdown: a database that is already gone (or slow) must not block quitting."""
    import asyncpg

    with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await asyncio.wait_for(pool.close(), 5)
