"""What the engine's parts share about a run: its state, its summary, and the shape of the event
emitter they are handed."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import asyncpg
from pydantic import BaseModel, Field

from ..events import Event, EventData


class Emit(Protocol):
    """Writes one event of this run: inside the caller's transaction when given its connection."""

    async def __call__(self, event: EventData, conn: asyncpg.Connection | None = None, /) -> Event: ...


class EngineState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class RunSummary(BaseModel):
    run_id: str
    state: EngineState
    iterations: int = 0
    steps: list[int] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    windows_trained: list[str] = Field(default_factory=list)
    windows_failed: list[str] = Field(default_factory=list)
    windows_skipped: list[str] = Field(default_factory=list)
    recovered_batches: list[str] = Field(default_factory=list)
    outages: int = 0  # database outages ridden out
    error: str | None = None
