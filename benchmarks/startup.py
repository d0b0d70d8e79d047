"""Console start-up, with a warm embedded database (goal: first paint <= 1 s, and no slower than W&B's
LEET on a run of its own).

1. CLI: launch -> the moment `babylon-console --read-only` starts importing the TUI (what the CLI
   itself costs, and that no subcommand module, numpy or the simulator is loaded by then).
2. Headless: each run is a fresh Python process that opens the console headless (the real code path:
   settings, embedded server, pool, migrations check) and prints a marker when the first frame is
   painted and when the Windows table has rows; timed from just before the launch. Also checks that
   the heavy modules (ART, the engine, judges, backends) are not imported by then.
3. Side by side in a terminal: `babylon-console --read-only` and `wandb leet` (on an offline W&B run
   written here, in a temporary directory; nothing contacts the network) are launched in turn in a
   160x48 tmux pane, alternating; the pane is polled every 10 ms until it shows the program's first
   meaningful text (ours: the pane bar; LEET: its run view) and its data (ours: a window's row).
4. What importing the TUI costs, by package (`-X importtime` of `babylon_console.tui.app`).

    python benchmarks/startup.py [--runs 7] [--no-tmux]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BENCH_DATA

DATA_DIR = BENCH_DATA / "tui-startup"
BIN = Path(sys.executable).parent

CHILD = textwrap.dedent(
    """
    import sys, time
    if sys.argv[1] == "cli":  # what `babylon-console` imports before it opens the console
        import babylon_console.cli
        import babylon_console.commands.console
    from babylon_console.core.config import Settings
    from babylon_console.tui.app import ConsoleApp
    from babylon_console.tui.data import ConsoleData

    HEAVY = ("art", "babylon_console.core.engine.loop", "babylon_console.core.training.judges",
             "babylon_console.core.training.backends.offline", "litellm", "wandb", "plotext", "asyncpg",
             "babylon_console.core.db.connections", "babylon_console.core.checkpoints.registry")

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

# `babylon-console --read-only` up to its first import of the TUI package, where it stops.
CLI_CHILD = textwrap.dedent(
    """
    import sys, time

    class StopAtTui:
        def find_spec(self, name, path=None, target=None):
            if name == "babylon_console.tui":
                commands = sorted(m for m in sys.modules if m.startswith("babylon_console.commands."))
                print(f"TUI {time.time():.6f} {len(sys.modules)} {'numpy' in sys.modules} {','.join(commands)}")
                raise SystemExit(0)

    sys.meta_path.insert(0, StopAtTui())
    sys.argv = ["babylon-console", "--read-only"]
    from babylon_console.cli import main
    main()
    """
)

WANDB_RUN = textwrap.dedent(
    """
    import math, sys, wandb
    run = wandb.init(dir=sys.argv[1], project="console-startup", name="offline-sample", config={"lr": 1e-5})
    for step in range(200):
        run.log({"loss/train": 1 / (step + 1), "reward": math.sin(step / 10), "grad_norm": 0.5 + step % 7 / 10})
    run.finish()
    print(run.dir)
    """
)

OURS_PAINT = re.compile(r"Babylon Console")
OURS_DATA = re.compile(r"\d{4}-\d\d-\d\dT\d\d:00\s+\w")  # a window's row in the Windows table
LEET_ANY = re.compile(r"\S")  # its splash
LEET_RUN = re.compile(r"Run Overview")


async def warm_up() -> None:
    """Start the embedded server (kept running by this process) and seed a little history."""
    from babylon_console.core.config import Settings
    from babylon_console.core.db.connections import open_pool
    from babylon_console.core.sim.simulation import Simulation
    from babylon_console.core.simgame.seeding import seed_history

    settings = Settings(_env_file=None, data_dir=DATA_DIR)  # type: ignore[call-arg]
    pool = await open_pool(settings)
    try:
        if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM trajectories)"):
            await seed_history(pool, Simulation(seed=5, n_agents=12, steps_per_window=12), 24,
                               datetime.now(UTC).replace(tzinfo=None))
    finally:
        await pool.close()


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples):6.0f} ms, max {max(samples):6.0f} ms"


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


def cli_run(env: dict[str, str]) -> tuple[float, str]:
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", CLI_CHILD], env=env, capture_output=True, text=True, timeout=120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("TUI ")), None)
    if line is None:
        raise SystemExit(f"CLI run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    _, at, modules, numpy, commands = [*line.split(), ""][:5]
    return float(at) - started, f"{modules} modules, numpy {'loaded' if numpy == 'True' else 'not loaded'}, " \
                                f"command modules: {commands or 'none'}"


def cli_startup(env: dict[str, str], runs: int) -> None:
    cli_run(env)  # unmeasured: bytecode and file caches
    samples, what = [], ""
    for _ in range(runs):
        took, what = cli_run(env)
        samples.append(took * 1000)
    print("CLI: launch -> `babylon-console --read-only` starts importing the TUI")
    print(f"  {ms(samples)}; {what}")


def headless_startup(env: dict[str, str], runs: int) -> None:
    paths = {"app": "console modules only", "cli": "through the babylon-console CLI"}
    for path in paths:
        one_run(env, path)  # unmeasured: fills the OS file cache and Python's bytecode cache
    paints: dict[str, list[float]] = {p: [] for p in paths}
    datas: dict[str, list[float]] = {p: [] for p in paths}
    heavy: dict[str, str] = {}
    for _ in range(runs):  # alternating, so that a change in the machine's load weighs on both alike
        for path in paths:
            paint, data, heavy[path] = one_run(env, path)
            paints[path].append(paint * 1000)
            datas[path].append(data * 1000)
    for path, label in paths.items():
        print(f"headless, {label}:")
        print(f"  launch -> first paint : {ms(paints[path])}   (goal <= 1000 ms)")
        print(f"  launch -> windows data: {ms(datas[path])}")
        print(f"  heavy modules loaded at first paint: {heavy[path] if heavy[path] != '-' else 'none'}")


class Tmux:
    """A private tmux server (its own socket) whose panes stay open when their program exits, so a
    failed launch shows its output."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"startup-bench-{os.getpid()}"
        self.env = env
        self("new-session", "-d", "-s", "idle")
        self("set-option", "-g", "remain-on-exit", "on")

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout

    def time_to(self, command: list[str], env: dict[str, str], markers: dict[str, re.Pattern[str]],
                timeout_s: float = 30.0) -> dict[str, float]:
        """Milliseconds from launching `command` in a fresh 160x48 pane to each marker's first sight."""
        session = f"run{time.monotonic_ns()}"
        setenv = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        started = time.perf_counter()
        self("new-session", "-d", "-s", session, "-x", "160", "-y", "48", *setenv, "--", *command)
        seen: dict[str, float] = {}
        try:
            while len(seen) < len(markers):
                text = self("capture-pane", "-p", "-t", session)
                elapsed = (time.perf_counter() - started) * 1000
                seen.update({k: elapsed for k, p in markers.items() if k not in seen and p.search(text)})
                if elapsed > timeout_s * 1000:
                    missing = ", ".join(k for k in markers if k not in seen)
                    raise SystemExit(f"{command[0]}: no {missing} after {timeout_s:g} s; the pane shows:\n{text}")
                time.sleep(0.01)
        finally:
            self("kill-session", "-t", session)
        return seen

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True)


def offline_wandb_run(directory: Path, env: dict[str, str]) -> Path:
    proc = subprocess.run([sys.executable, "-c", WANDB_RUN, str(directory)], capture_output=True, text=True,
                          timeout=300, env={**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    if proc.returncode:
        raise SystemExit(f"could not write the offline W&B run:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]).parent  # run.dir is <run>/files


def side_by_side(env: dict[str, str], runs: int) -> None:
    wandb_cli = BIN / "wandb"
    if shutil.which("tmux") is None or not wandb_cli.exists():
        print("side by side with W&B LEET: skipped (needs tmux and the wandb CLI)")
        return
    with tempfile.TemporaryDirectory(prefix="leet-") as tmp:
        run_dir = offline_wandb_run(Path(tmp), env)
        ours: tuple[list[str], dict[str, str], dict[str, re.Pattern[str]]] = (
            [str(BIN / "babylon-console"), "--read-only"],
            {"BABYLON_DATA_DIR": str(DATA_DIR), "WANDB_MODE": "disabled"},
            {"paint": OURS_PAINT, "data": OURS_DATA},
        )
        leet = ([str(wandb_cli), "leet", "run", str(run_dir)], {"WANDB_MODE": "offline"},
                {"splash": LEET_ANY, "paint": LEET_RUN})
        tmux = Tmux({k: v for k, v in env.items() if not k.startswith("TMUX")})
        try:
            tmux.time_to(*ours)  # unmeasured: file and bytecode caches
            tmux.time_to(*leet)
            samples: dict[str, list[dict[str, float]]] = {"ours": [], "leet": []}
            for _ in range(runs):
                samples["ours"].append(tmux.time_to(*ours))
                samples["leet"].append(tmux.time_to(*leet))
        finally:
            tmux.close()

    def column(who: str, marker: str) -> list[float]:
        return [s[marker] for s in samples[who]]

    def line(label: str, values: list[float]) -> str:
        return f"  {label:<34} median {statistics.median(values):6.0f} ms  [{' '.join(f'{v:.0f}' for v in values)}]"

    print(f"side by side in a 160x48 tmux pane, alternating, {runs} runs each (launch -> text on screen):")
    print(line("babylon-console --read-only: paint", column("ours", "paint")))
    print(line("babylon-console: a window's row", column("ours", "data")))
    print(line("wandb leet: splash", column("leet", "splash")))
    print(line("wandb leet: run view", column("leet", "paint")))
    ratio = statistics.median(column("ours", "paint")) / statistics.median(column("leet", "paint"))
    print(f"  first meaningful text, ours / LEET's: {ratio:.2f} (goal <= 1.00)")


def import_profile(env: dict[str, str], top: int = 12) -> None:
    """Where importing the TUI spends its time: the modules' own import times, summed by package (our
    own by subpackage), so nothing is counted twice."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import babylon_console.tui.app"], env=env,
                          capture_output=True, text=True, timeout=120)
    by_package: dict[str, int] = {}
    total = 0
    for row in proc.stderr.splitlines():
        parts = row.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        name = parts[2].strip()
        depth = 2 if name.startswith("babylon_console.") else 1
        package = ".".join(name.split(".")[:depth])
        by_package[package] = by_package.get(package, 0) + int(parts[0])
        if name == "babylon_console.tui.app":
            total = int(parts[1])
    print(f"importing babylon_console.tui.app: {total / 1000:.0f} ms; own import time by package:")
    for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:<28} {us / 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-tmux", action="store_true", help="Skip the side-by-side run with W&B LEET.")
    args = parser.parse_args()
    # No DATABASE_URL: the embedded server. Bytecode is written, as for anyone who runs the console.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONDONTWRITEBYTECODE")}
    env.update(BABYLON_DATA_DIR=str(DATA_DIR), WANDB_MODE="disabled")
    os.environ.update(BABYLON_DATA_DIR=str(DATA_DIR))
    asyncio.run(warm_up())
    print(f"console start-up, warm embedded database, {args.runs} runs per path (fresh process each)")
    cli_startup(env, args.runs)
    headless_startup(env, args.runs)
    if not args.no_tmux:
        side_by_side(env, args.runs)
    import_profile(env)


if __name__ == "__main__":
    main()
