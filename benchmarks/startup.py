"""Console start-up: time from launching the process to the first painted frame, and to the first
data on screen, with a warm embedded database (goal: first paint <= 1 s).

Each run is a fresh Python process that opens the console headless (the real code path: settings,
embedded server, pool, migrations check) and prints a marker when the first frame is painted and
when the Windows table has rows; this script times them from just before the launch. It also
checks that the heavy modules (ART, the engine, judges, backends) are not imported by then.

    python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BENCH_DATA

DATA_DIR = BENCH_DATA / "tui-startup"

CHILD = textwrap.dedent(
    """
    import sys, time
    if sys.argv[1] == "cli":  # what `babylon-console` imports before it opens the console
        import babylon_console.cli
        import babylon_console.commands.console
    from babylon_console.core.config import Settings
    from babylon_console.tui.app import ConsoleApp
    from babylon_console.tui.data import ConsoleData

    HEAVY = ("art", "babylon_console.core.engine", "babylon_console.core.judges",
             "babylon_console.core.backends.offline", "litellm", "wandb", "plotext")

    class Timed(ConsoleApp):
        def on_first_paint(self):
            loaded = [m for m in HEAVY if m in sys.modules]
            print(f"PAINT {time.time():.6f} {','.join(loaded) or '-'}", flush=True)
            self.set_interval(0.01, self._check_rows)

        def _check_rows(self):
            if self.main.query_one("#windows-table").row_count:
                print(f"DATA {time.time():.6f}", flush=True)
                self.exit()

    Timed(ConsoleData(Settings()), follow_events=False).run(headless=True, size=(160, 48))
    """
)


async def warm_up() -> None:
    """Start the embedded server (kept running by this process) and seed a little history."""
    from babylon_console.core.config import Settings
    from babylon_console.core.database import open_pool
    from babylon_console.core.seeding import seed_history
    from babylon_console.core.sim.simulation import Simulation

    settings = Settings(_env_file=None, data_dir=DATA_DIR)  # type: ignore[call-arg]
    pool = await open_pool(settings)
    try:
        if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM trajectories)"):
            await seed_history(pool, Simulation(seed=5, n_agents=12, steps_per_window=12), 24,
                               datetime.now(UTC).replace(tzinfo=None))
    finally:
        await pool.close()


def one_run(env: dict[str, str], path: str) -> tuple[float, float, str]:
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, path], env=env, capture_output=True, text=True, timeout=120)
    paint = data = None
    heavy = "?"
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "PAINT":
            paint, heavy = float(parts[1]), parts[2]
        elif parts and parts[0] == "DATA":
            data = float(parts[1])
    if paint is None or data is None:
        raise SystemExit(f"run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return paint - started, data - started, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(BABYLON_DATA_DIR=str(DATA_DIR), WANDB_MODE="disabled")
    os.environ.update(BABYLON_DATA_DIR=str(DATA_DIR))
    asyncio.run(warm_up())
    print(f"console start-up, warm embedded database, {args.runs} runs per path (fresh process each)")
    for path, label in (("app", "console modules only"), ("cli", "through the babylon-console CLI")):
        one_run(env, path)  # unmeasured: fills the OS file cache and Python's bytecode cache
        paints, datas = [], []
        heavy = ""
        for _ in range(args.runs):
            paint, data, heavy = one_run(env, path)
            paints.append(paint * 1000)
            datas.append(data * 1000)
        print(f"{label}:")
        print(f"  launch -> first paint : median {statistics.median(paints):6.0f} ms, max {max(paints):6.0f} ms"
              f"   (goal <= 1000 ms)")
        print(f"  launch -> windows data: median {statistics.median(datas):6.0f} ms, max {max(datas):6.0f} ms")
        print(f"  heavy modules loaded at first paint: {heavy if heavy != '-' else 'none'}")


if __name__ == "__main__":
    main()
