"""Console responsiveness under an event storm: key-to-render latency and memory.

An emitter in another process writes engine events into the database (as an engine in another
process would: `console_events` + NOTIFY) at a steady rate, `--steps` training steps in all (each
step: `step_trained` with ART's metric names; every 10th step also an iteration with a judged
window and a checkpoint). The console, headless in this process, follows them through LISTEN/NOTIFY
with the Training pane visible, while this script presses pane keys every ~100 ms and measures the
time from the key event to the first frame the compositor renders with the new pane (headless: the
frame is rendered, not written to a terminal).

Prints the latency percentiles (goal: p95 <= 100 ms), the event rate achieved, and the resident
memory growth from the first 1,000 steps to the end (chart and log buffers are capped).

    python benchmarks/responsiveness.py [--steps 10000] [--rate 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from textual import events as tevents

from babylon_console.core import events
from babylon_console.core.config import Settings
from babylon_console.core.events import EventKind
from babylon_console.tui.app import ConsoleApp
from babylon_console.tui.data import ConsoleData
from babylon_console.tui.widgets.training import TrainingPane
from benchmarks._common import bench_database, p50, p95


async def emit_storm(url: str, steps: int, rate: float, progress: dict[str, Any]) -> None:
    """Write the events at `rate` events per second (on the background loop)."""
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    try:
        started = time.perf_counter()
        sent = 0
        await events.emit(pool, EventKind.RUN_STARTED, {"message": "benchmark run", "config": {"iterations": None}},
                          run_id="run-bench")
        for step in range(1, steps + 1):
            batch: list[tuple[EventKind, dict[str, Any]]] = []
            if step % 10 == 1:
                window = f"2025-01-{1 + (step // 240) % 28:02d}T{(step // 10) % 24:02d}:00"
                batch += [(EventKind.ITERATION_STARTED, {"iteration": step // 10 + 1, "windows": [window]}),
                          (EventKind.WINDOW_JUDGED, {"window_id": window, "judge": "outcome", "n": 8, "mean": 0.6,
                                                     "std": 0.1})]
            metrics = {"loss/train": -0.05 + (step % 7) / 100, "loss/entropy": 3 - step / steps,
                       "loss/kl_div": step / steps, "loss/grad_norm": 0.25 + (step % 5) / 50,
                       "train/reward": 0.5 + step / (4 * steps), "train/reward_std_dev": 0.2}
            batch.append((EventKind.STEP_TRAINED, {"step": step, "windows": [], "metrics": metrics}))
            if step % 10 == 0:
                batch.append((EventKind.CHECKPOINT_REGISTERED, {"model_id": f"bench-step{step:05d}", "step": step}))
            for kind, payload in batch:
                await events.emit(pool, kind, payload, run_id="run-bench")
                sent += 1
            progress["steps"], progress["events"] = step, sent
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        progress["elapsed"] = time.perf_counter() - started
    finally:
        await pool.close()


def run_emitter(url: str, steps: int, rate: float, progress: dict[str, Any]) -> None:
    """The engine's side, in another process (as `babylon-console engine` would be)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--emit", url, "--steps", str(steps), "--rate", str(rate)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        progress.update(json.loads(line))
    proc.wait(30)


async def emitter_process(url: str, steps: int, rate: float) -> None:
    progress: dict[str, Any] = {"steps": 0, "events": 0}

    async def report() -> None:
        while True:
            await asyncio.sleep(0.5)
            print(json.dumps(progress), flush=True)

    reporter = asyncio.ensure_future(report())
    try:
        await emit_storm(url, steps, rate, progress)
    finally:
        reporter.cancel()
        print(json.dumps(progress), flush=True)


async def run(steps: int, rate: float, trace: bool = False) -> None:
    url = await bench_database("bench_tui", fresh=True)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    settings = Settings(_env_file=None, database_url=url, data_dir=data_dir)  # type: ignore[call-arg]
    app = ConsoleApp(ConsoleData(settings, label="bench"), follow_events=True)
    renders: list[tuple[float, str | None]] = []
    original_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            try:
                current = app.main.switcher.current
            except Exception:
                current = None
            renders.append((time.perf_counter(), current))
            del renders[:-50]
        original_display(screen, renderable)

    app._display = display  # type: ignore[method-assign]
    process = psutil.Process()
    latencies: list[float] = []
    per_pane: dict[str, list[float]] = {}
    progress: dict[str, Any] = {"steps": 0, "events": 0}
    rss_warm = rss_mid = rss_end = 0
    snapshot_warm: Any = None

    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + 20
        while not app.db_ready and time.monotonic() < deadline:  # noqa: ASYNC110 - polls app state
            await asyncio.sleep(0.05)
        await pilot.press("3")
        storm = asyncio.ensure_future(asyncio.to_thread(run_emitter, url, steps, rate, progress))
        keys = ["1", "3", "4", "3", "2", "3"]
        target = {"1": "windows", "2": "outcomes", "3": "training", "4": "checkpoints"}
        i = 0
        while not storm.done():
            key = keys[i % len(keys)]
            i += 1
            want = target[key]
            if app.main.switcher.current == want:
                continue
            t0 = time.perf_counter()
            app.post_message(tevents.Key(key, key))
            while True:
                hit = next((t for t, cur in renders if t > t0 and cur == want), None)
                if hit is not None:
                    latencies.append((hit - t0) * 1000)
                    per_pane.setdefault(want, []).append((hit - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 5:
                    latencies.append(5000.0)
                    break
                await asyncio.sleep(0.001)
            if progress["steps"] >= steps // 2 and not rss_mid:
                rss_mid = process.memory_info().rss
            if progress["steps"] >= 1000 and not rss_warm:
                rss_warm = process.memory_info().rss
                if trace:
                    import tracemalloc

                    snapshot_warm = tracemalloc.take_snapshot()
            await asyncio.sleep(0.1)
        await storm
        await asyncio.sleep(1.0)  # let the console fold the last events
        rss_end = process.memory_info().rss
        if trace and rss_warm:
            import tracemalloc

            stats = tracemalloc.take_snapshot().compare_to(snapshot_warm, "lineno")
            print("  largest allocation growth since 1,000 steps:")
            for stat in stats[:12]:
                print(f"    {stat}")
        training = app.main.pane(TrainingPane)
        folded_step = training.state.step
        points = len(training.state.series["loss/train"])
        tail = len(training.state.tail)

    elapsed = progress.get("elapsed", 1.0)
    print(f"console under an event storm: {progress['steps']:,} steps, {progress['events']:,} events in "
          f"{elapsed:.1f} s ({progress['events'] / elapsed:.0f} events/s), Training pane visible")
    print(f"  key -> rendered frame ({len(latencies)} pane switches): p50 {p50(latencies):.1f} ms, "
          f"p95 {p95(latencies):.1f} ms, max {max(latencies):.1f} ms   (goal p95 <= 100 ms)")
    print("  by pane shown: " + ", ".join(f"{name} p50 {p50(v):.0f} / p95 {p95(v):.0f} ms"
                                         for name, v in sorted(per_pane.items())))
    print(f"  RSS after 1,000 steps {rss_warm / 2**20:.1f} MiB, after {steps // 2:,} {rss_mid / 2**20:.1f} MiB, "
          f"after {progress['steps']:,} {rss_end / 2**20:.1f} MiB: growth {(rss_end - rss_warm) / 2**20:+.1f} MiB "
          f"(second half {(rss_end - rss_mid) / 2**20:+.1f} MiB)")
    print(f"  console folded step {folded_step:,}; chart points kept {points:,} (cap), event tail {tail} lines (cap)")
    if statistics.fmean(latencies) > 1000:
        print("  warning: the console looked stalled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=250.0, help="events per second (>= 100)")
    parser.add_argument("--tracemalloc", action="store_true", help="also show where memory grew (slower)")
    parser.add_argument("--emit", metavar="URL", help=argparse.SUPPRESS)  # the emitter process
    args = parser.parse_args()
    if args.emit:
        asyncio.run(emitter_process(args.emit, args.steps, args.rate))
        return
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(10)
    asyncio.run(run(args.steps, args.rate, args.tracemalloc))


if __name__ == "__main__":
    main()
