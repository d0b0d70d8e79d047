"""Fixtures for Pilot tests of the console: a seeded database, a fixed clock, a factory of apps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from babylon_console.core.config import Settings
from babylon_console.core.events import Event, EventKind
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.tui.app import ConsoleApp
from babylon_console.tui.data import ConsoleData

FIXED_NOW = datetime(2025, 11, 24, 12, 30)
SIZE = (160, 48)


class FixedClock:
    def now(self) -> datetime:
        return FIXED_NOW


async def wait_for(predicate: Callable[[], Any], limit_s: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` (on the app's loop) until it is truthy."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    """Six closed windows of six agents, four steps each (deterministic)."""
    await seed_history(pool, Simulation(seed=11, n_agents=6, steps_per_window=4), 6, FIXED_NOW)
    return pool


async def insert_model(pool: asyncpg.Pool, step: int, status: str = "registered", avg_reward: float = 0.5,
                       model_name: str = "babylon-agent") -> str:
    model_id = f"{model_name}-step{step:04d}"
    metrics = {"loss/train": -0.01 * step, "loss/kl_div": 0.1 * step, "loss/entropy": 3.0 - 0.1 * step,
               "loss/grad_norm": 0.25, "train/reward": avg_reward}
    created = datetime(2025, 11, 24, 10, step)
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"avgReward", "evalMetrics", "createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, $7, $8::jsonb, '
        "$9, $9)",
        model_id, f"step-{step}", "offline/linear-softmax-policy", f"batch-{step}", status,
        f"offline://babylon-console/{model_name}:step{step}", avg_reward, orjson.dumps(metrics).decode(), created,
    )
    return model_id


def training_events(steps: int = 12, run_id: str = "run-fixed") -> list[Event]:
    """A deterministic run: started, iterations with judged windows and trained steps."""
    base = datetime(2025, 11, 24, 11, 0, tzinfo=UTC)
    out: list[Event] = []
    n = 0

    def add(kind: EventKind, payload: dict[str, Any], seconds: float) -> None:
        nonlocal n
        n += 1
        from datetime import timedelta

        out.append(Event(id=n, run_id=run_id, kind=kind, payload=payload, created_at=base + timedelta(seconds=seconds)))

    add(EventKind.RUN_STARTED, {"message": "engine started: offline backend, outcome judge",
                                "config": {"iterations": steps + 3}}, 0)
    for step in range(1, steps + 1):
        t = step * 10.0
        window = f"2025-11-24T{(step % 12):02d}:00"
        add(EventKind.ITERATION_STARTED, {"iteration": step, "windows": [window],
                                          "message": f"iteration {step}: 1 window(s)"}, t)
        add(EventKind.WINDOW_SELECTED, {"window_id": window, "trajectories": 6, "available": 6,
                                        "message": f"window {window}: 6 of 6 trajectories"}, t + 1)
        add(EventKind.WINDOW_JUDGED, {"window_id": window, "judge": "outcome", "n": 6, "mean": 0.5 + step / 100,
                                      "std": 0.2 - step / 200}, t + 2)
        metrics = {"loss/train": -0.1 + 0.01 * ((step * 7) % 5), "loss/entropy": 3.4 - 0.05 * step,
                   "loss/kl_div": 0.02 * step * step / 10, "loss/grad_norm": 0.25 + 0.01 * (step % 4),
                   "train/reward": 0.55 + 0.01 * step, "train/reward_std_dev": 0.2 - 0.005 * step}
        add(EventKind.STEP_TRAINED, {"step": step, "iteration": step, "windows": [window], "metrics": metrics}, t + 4)
        add(EventKind.CHECKPOINT_REGISTERED, {"model_id": f"babylon-agent-step{step:04d}", "step": step}, t + 4)
    add(EventKind.WARNING, {"message": "window 2025-11-24T03:00: 1 unusable trajectories skipped"}, steps * 10 + 5)
    return out


class RecordingApp(ConsoleApp):
    """Remembers every toast (title: message), so tests can assert on them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.toasts: list[str] = []

    def notify(self, message: Any, *, title: str = "", **kwargs: Any) -> None:  # type: ignore[override]
        self.toasts.append(f"{title}: {message}")
        super().notify(message, title=title, **kwargs)


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., RecordingApp]:
    def factory(*, read_only: bool = False, attach: bool = False, data: ConsoleData | None = None,
                follow_events: bool = False, **kwargs: Any) -> ConsoleApp:
        data = data or ConsoleData(settings, clock=FixedClock(), read_only=read_only, label="test database",
                                   operator="tester")
        return RecordingApp(data, read_only=read_only, attach=attach, follow_events=follow_events,
                          health_interval=kwargs.pop("health_interval", 0.3), **kwargs)

    return factory


async def rows(app: ConsoleApp, selector: str) -> int:
    from textual.widgets import DataTable

    return app.main.query_one(selector, DataTable).row_count


Waiter = Callable[..., Awaitable[Any]]


def plain(widget: Any, width: int = 140) -> str:
    """What a Static shows, as plain text (Rich renderables included)."""
    import io

    from rich.console import Console

    content = getattr(widget, "content", widget)
    if isinstance(content, str):
        return content
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


async def open_checkpoints_pane(app: Any, pilot: Any) -> Any:
    """Connected, the Checkpoints pane shown; the pane."""
    from babylon_console.tui.widgets.checkpoints import CheckpointsPane

    await wait_for(lambda: app.db_ready, what="connection")
    await pilot.press("4")
    return app.main.pane(CheckpointsPane)


def summary_text(pane: Any) -> str:
    """The Checkpoints pane's summary lines as one line of plain text."""
    return " ".join(plain(pane.query_one("#checkpoints-summary")).split())
