"""The training engine this console runs, on the background loop with a pool of its own, and the
engine settings the console may choose for it (`EngineOverrides`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ...core.config import BackendName, JudgeName
from ..data import close_pool

if TYPE_CHECKING:
    from ...core.clock import Clock
    from ..data import ConsoleData
    from .background import BackgroundLoop

ACTIVE_RUN_STATES = ("starting", "running", "paused", "stopping")


class EngineOverrides(BaseModel):
    """The engine settings the console sets for a run, by their `EngineConfig` field names: the
    settings dialog's and the demo's. A field left unset is the configured one
    (`EngineConfig.from_settings`); `iterations` set to None means continuous.

    Names and types are checked where the overrides are written (a misspelt field fails there); the
    bounds are `EngineConfig`'s, checked when the engine starts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    judge: JudgeName | None = None
    backend: BackendName | None = None
    iterations: int | None = None
    windows_per_iteration: int | None = None
    min_agents: int | None = None
    min_steps: int | None = None
    settle_seconds: int | None = None
    lookback_hours: int | None = None
    learning_rate: float | None = None
    eval_every: int | None = None
    auto_rollback: bool | None = None
    poll_seconds: float | None = None

    def given(self) -> dict[str, Any]:
        """The fields set, as `EngineConfig.from_settings` takes them."""
        return self.model_dump(exclude_unset=True)

    def merged(self, later: EngineOverrides) -> EngineOverrides:
        """These overrides with the fields `later` sets on top."""
        return EngineOverrides(**(self.given() | later.given()))


class EngineRunner:
    """One training engine on the background loop, with its own pool. Steer it from any thread."""

    def __init__(self, data: ConsoleData, background: BackgroundLoop, overrides: EngineOverrides,
                 clock: Clock | None = None, on_change: Callable[[], None] | None = None) -> None:
        """`on_change` is called (from the engine's thread) whenever the engine's state changes."""
        self.data = data
        self.on_change = on_change
        self.background = background
        self.overrides = overrides
        self._clock = clock
        self.state = "starting"
        self.run_id: str | None = None
        self.error: str | None = None
        self.locked = False  # refused: another engine (another process) already trains this model
        self._engine: Any = None
        self._stop_requested = False
        self._pause_requested = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_RUN_STATES

    @property
    def stage(self) -> str:
        """The engine's current stage (select, read, judge, train, register, waiting ...)."""
        return str(getattr(self._engine, "stage", "starting"))

    async def run(self) -> Any:
        """Run the engine to its end (awaited from the console's loop); returns its summary."""
        return await self.background.run(self._main())

    async def _main(self) -> Any:
        try:
            # imported here, not with this module: keeps the engine off the paint path
            from ...core.db.connections import create_pool
            from ...core.engine.loop import Engine
            from ...core.engine.run_config import EngineConfig

            pool = await create_pool(self.data.target(), max_size=6)
        except BaseException as exc:
            self.state, self.error = "failed", str(exc)
            raise
        try:
            config = EngineConfig.from_settings(self.data.settings, **self.overrides.given())
            engine = Engine(pool, config, settings=self.data.settings, clock=self._clock)  # None: the database's
            engine.on_state = self._state_changed
            self._engine, self.run_id = engine, engine.run_id
            if self._stop_requested:
                engine.stop()
            summary = await engine.run()
            self.state = engine.state.value
            self.error = summary.error
            return summary
        except BaseException as exc:
            from ...core.engine.guard import EngineLocked

            self.state = "failed" if not isinstance(exc, asyncio.CancelledError) else "stopped"
            self.error = str(exc) or type(exc).__name__
            self.locked = isinstance(exc, EngineLocked)
            raise
        finally:
            await close_pool(pool)

    def _state_changed(self, state: Any) -> None:
        self.state = state.value
        if self.on_change is not None:
            self.on_change()

    def pause(self) -> None:
        if self._engine is not None:
            self.background.call(self._engine.pause)

    def resume(self) -> None:
        if self._engine is not None:
            self.background.call(self._engine.resume)

    def stop(self) -> None:
        self._stop_requested = True
        if self._engine is not None:
            self.background.call(self._engine.stop)
        elif self.state == "starting":
            self.state = "stopping"
