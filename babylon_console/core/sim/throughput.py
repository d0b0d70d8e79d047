"""Throughput check for row generation: `python -m babylon_console.core.sim.throughput [N] [AGENTS]`.

Generates N trajectories (default 20,000) with the default scripted population on one core, the
way a writer consumes them (`iter_window`: rows are dropped once counted), and prints
trajectories/s, steps/s and the text volume produced. Row tuples, JSON strings and llm call rows
are all built. Not a unit test: the figure depends on the machine and its load.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta

from .simulation import Simulation


def measure(
    n_trajectories: int = 20_000, n_agents: int = 2_000, steps: int = 20, seed: int = 7
) -> dict[str, float]:
    sim = Simulation(seed=seed, n_agents=n_agents, steps_per_window=steps)
    start = datetime(2026, 1, 1)
    windows = max(1, n_trajectories // n_agents)
    n_traj = n_calls = n_bytes = 0
    t0 = time.perf_counter()
    for w in range(windows):
        outcomes, rows = sim.iter_window(start + timedelta(hours=w))
        n_bytes += sum(len(r[7] or "") for r in outcomes)
        for traj, calls, _stats in rows:
            n_traj += 1
            n_calls += len(calls)
            n_bytes += len(traj[11])
            n_bytes += sum(len(c[9]) + len(c[10]) + len(c[11] or "") + len(c[12]) for c in calls)
    dt = time.perf_counter() - t0
    return {
        "trajectories": n_traj,
        "seconds": dt,
        "trajectories_per_s": n_traj / dt,
        "steps_per_s": n_traj * steps / dt,
        "llm_calls": n_calls,
        "text_mb": n_bytes / 1e6,
    }


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 20_000
    agents = int(argv[2]) if len(argv) > 2 else 2_000
    r = measure(n, agents)
    print(
        f"{r['trajectories']:.0f} trajectories ({r['llm_calls']:.0f} llm calls) in {r['seconds']:.2f}s: "
        f"{r['trajectories_per_s']:.0f} trajectories/s, {r['steps_per_s']:.0f} steps/s, "
        f"{r['text_mb']:.0f} MB of text ({r['text_mb'] * 1e3 / max(1, r['trajectories']):.1f} kB/trajectory)"
    )


if __name__ == "__main__":
    main(sys.argv)
