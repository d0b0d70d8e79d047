"""After each registered step: its training health, stored, checked against the alarm rules; every
alarm stored and announced, and, with `pause_on_alarm`, the engine paused with the alarm named.

An alarm is raised when its rule starts firing: while the rule keeps firing at the following steps
the alarm already raised stands (open, or acknowledged by an operator) and no new one is raised, so
a condition that persists pauses the engine once, not again after every resume. A rule that was
quiet for a step raises anew when it fires again, once its earlier alarm has been acknowledged: a
figure hovering at its threshold is one open alarm until an operator has seen it.

The health of a step is a side channel: anything that goes wrong here is a warning, never a failed
step (the checkpoint is registered already).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from ..config import AlarmSettings
from ..names import checkpoint_id
from ..training import health_store
from ..training.alarms import AlarmRule, RaisedAlarm, check
from ..training.groups import WindowGroup
from ..training.health import StepHealth, rolling, step_health
from .guard import RunGuard
from .run_config import EngineConfig
from .run_state import Emit

HISTORY = 200  # recent steps read for the rules (trends, medians, rolling correlation)
Pause = Callable[[str, str], None]  # (who, why): the engine's pause


async def holdout_points(pool: asyncpg.Pool, config: EngineConfig, steps: Sequence[int]) -> list[tuple[int, float]]:
    """(step, held-out mean difference) of this model's evaluated checkpoints among `steps`."""
    from ..checkpoints.evaluation import latest_per_model

    ids = {checkpoint_id(config.backend, config.model_name, s): s for s in steps}
    return sorted((ids[m], r.mean_diff) for m, r in (await latest_per_model(pool)).items() if m in ids)


class HealthWatch:
    """Computes, stores and checks the health of one run's steps."""

    def __init__(self, pool: asyncpg.Pool, config: EngineConfig, settings: AlarmSettings, *, run_id: str,
                 guard: RunGuard, emit: Emit, pause: Pause) -> None:
        self.pool = pool
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.guard = guard
        self._emit = emit
        self._pause = pause

    async def after_step(self, step: int, groups: list[WindowGroup], metrics: dict[str, float], *,
                         trainable_tokens: int | None, unspread_groups: int = 0) -> list[RaisedAlarm]:
        """Health of a registered step, stored; its alarms, stored and announced."""
        key = self.config.training_key
        history = await self.history_before(step)
        health = step_health(key, step, groups, metrics, trainable_tokens=trainable_tokens,
                             unspread_groups=unspread_groups, run_id=self.run_id)
        s = self.settings
        holdout = await holdout_points(self.pool, self.config, [*(h.step for h in history), step])
        health = rolling(history, health, windows=s.rolling_windows, min_windows=s.min_rolling_windows,
                         trend_steps=s.trend_steps, holdout=holdout)
        # the rules that already fired at the previous step, and those with an alarm still open (a figure
        # hovering at its threshold would raise one every other step): their alarm stands
        standing = {a.rule for a in check(history, s)} if history and history[-1].step == step - 1 else set()
        standing |= {a.rule for a in await health_store.alarms(self.pool, key, open_only=True)}
        raised = [a for a in check([*history, health], s) if a.rule not in standing]
        pause = self.config.pause_on_alarm and bool(raised)
        async with self.guard.write() as conn:
            await health_store.save_health(conn, health)
            for alarm in raised:
                record = await health_store.record_alarm(conn, alarm, model_name=key, run_id=self.run_id)
                await self._emit(record.event(paused=pause), conn)
        if pause:
            self._pause("alarm", pause_reason(raised))
        return raised

    async def history_before(self, step: int) -> list[StepHealth]:
        """The stored health of the steps before `step` the rules read: the newest `HISTORY`, and in a
        longer run its first steps too (entropy's early level must not follow the entropy down)."""
        key = self.config.training_key
        history = [h for h in await health_store.health_history(self.pool, key, limit=HISTORY) if h.step < step]
        if len(history) >= HISTORY - 1:
            seen = {h.step for h in history}
            history = [h for h in await health_store.first_steps(self.pool, key, self.settings.min_history)
                       if h.step < step and h.step not in seen] + history
        return history

    async def nothing_to_train(self, iteration: int, windows: Sequence[str]) -> RaisedAlarm | None:
        """Every group judged in an iteration had no reward spread, so no step was trained and no step's
        health will say so: the no-spread alarm is raised here, for the iteration's first window, unless
        one stands open for this model already (a flat judge would otherwise raise one per iteration)."""
        s, key = self.settings, self.config.training_key
        if not windows or any(a.rule == AlarmRule.zero_spread
                              for a in await health_store.alarms(self.pool, key, open_only=True)):
            return None
        alarm = RaisedAlarm(
            rule=AlarmRule.zero_spread, step=None, window_id=windows[0], threshold=s.zero_spread_share,
            figures={"share": 1.0, "groups": float(len(windows))},
            message=f"100% of the {len(windows)} groups judged in iteration {iteration} ({', '.join(windows)}) "
                    f"have no reward spread: nothing was trained (alarm at {s.zero_spread_share:.0%})")
        pause = self.config.pause_on_alarm
        async with self.guard.write() as conn:
            record = await health_store.record_alarm(conn, alarm, model_name=key, run_id=self.run_id)
            await self._emit(record.event(paused=pause), conn)
        if pause:
            self._pause("alarm", pause_reason([alarm]))
        return alarm


def pause_reason(raised: Sequence[RaisedAlarm]) -> str:
    """'paused by alarm judge_disagrees: <its sentence>' (and how many more fired)."""
    first = raised[0]
    more = f" (and {len(raised) - 1} more: {', '.join(a.rule.value for a in raised[1:])})" if len(raised) > 1 else ""
    return f"paused by alarm {first.rule.value}: {first.message}{more}"
