"""Shared helpers for benchmarks: a dedicated database on the embedded server (or DATABASE_URL's
server), and percentile timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from babylon_console.core.db.connections import create_migrated_database
from babylon_console.core.db.embedded import start_embedded_server

BENCH_DATA = Path(os.environ.get("BABYLON_BENCH_DIR", Path(__file__).resolve().parent / ".data"))


async def bench_database(name: str, *, fresh: bool, server: str | None = None) -> str:
    """URL of database `name` (created, migrated) on `server` (default: DATABASE_URL's server or
    the benchmarks' embedded one); `fresh` drops it first."""
    server = server or os.environ.get("DATABASE_URL") or start_embedded_server(BENCH_DATA / "pgdata")
    return await create_migrated_database(server, name, fresh=fresh)


async def timed(fn: Callable[[], Awaitable[object]], repeat: int, warmup: int = 2) -> list[float]:
    """Wall times in milliseconds of `repeat` runs after `warmup` unmeasured ones."""
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p50(times: list[float]) -> float:
    return statistics.median(times)


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def fmt(label: str, times: list[float]) -> str:
    return f"{label:<44} p50 {p50(times):8.1f} ms   p95 {p95(times):8.1f} ms   (n={len(times)})"
