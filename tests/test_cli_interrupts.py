"""Ctrl+C in `train` at start-up and mid-run: "stopping…" at once, exit 130 within 2 s, the run
recorded as stopped, nothing half-registered (an abandoned batch is repaired by the next start); a
second Ctrl+C exits at once. Output that is not a terminal is one plain line per event, without
W&B's banner."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import asyncpg

from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history

BOUND_S = 2.0  # the documented bound between Ctrl+C and the exit
START_UP_S = 240.0  # loading the training libraries is slow on a busy machine


class Train:
    """`babylon-console train` as a subprocess whose output (pipes: not a terminal) is read as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "babylon_console", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[bytes]) -> None:  # type: ignore[no-untyped-def]
        for line in iter(stream.readline, b""):
            into.append(line)

    def text(self) -> str:
        return b"".join(self.stdout + self.stderr).decode(errors="replace")

    async def wait_for(self, pattern: str) -> None:
        deadline = time.monotonic() + START_UP_S
        while not re.search(pattern, self.text()):
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {pattern!r}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {START_UP_S:g} s:\n{self.text()}"
            await asyncio.sleep(0.02)

    async def interrupt(self) -> tuple[int, float]:
        """SIGINT; the exit code and the seconds from the signal to the exit."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(self.proc.wait, 30)
        took = time.monotonic() - sent
        for reader in self.readers:
            reader.join(5)
        return code, took


def _env(database_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "BABYLON_DATA_DIR": str(tmp_path / "data"),
            "BABYLON_SETTLE_SECONDS": "0", "BABYLON_MIN_AGENTS": "3", **more}


async def _seed(pool: asyncpg.Pool, windows: int) -> None:
    await seed_history(pool, Simulation(seed=9, n_agents=5, steps_per_window=4), windows=windows, now=datetime.now())


async def _consistent(pool: asyncpg.Pool) -> None:
    """Nothing half-registered: every checkpoint has its completed batch and back, only trajectories
    of completed batches are marked used, no run of the model still looks alive."""
    completed = {r[0] for r in await pool.fetch("SELECT \"batchId\" FROM training_batches WHERE status = 'completed'")}
    models = {r[0] for r in await pool.fetch('SELECT "trainingBatch" FROM trained_models')}
    assert models == completed
    used = {r[0] for r in await pool.fetch('SELECT DISTINCT "trainedInBatch" FROM trajectories WHERE "usedInTraining"')}
    assert used <= completed
    states = [r[0] for r in await pool.fetch("SELECT state FROM console_runs")]
    assert states and all(s == "stopped" for s in states), states


async def test_ctrl_c_during_start_up_stops_at_once(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await _seed(pool, 2)
    env = _env(database_url, tmp_path)
    # while the training libraries load (seconds of imports after the run started)
    train = Train(env, "train", "--iterations", "2")
    await train.wait_for(r"engine started")
    code, took = await train.interrupt()
    assert code == 130, train.text()
    assert took < BOUND_S, f"{took:.2f} s\n{train.text()}"
    assert "stopping…" in b"".join(train.stderr).decode()
    assert "interrupted during stage starting" in train.text()
    await _consistent(pool)
    # before anything started: on screen at once, and it stops at once too
    early = Train(env, "train", "--iterations", "2")
    await early.wait_for(r"starting: model babylon-agent, offline backend")
    code, took = await early.interrupt()
    assert code == 130 and took < BOUND_S, (code, took, early.text())
    assert "stopping…" in early.text()


async def test_a_second_ctrl_c_exits_at_once(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    await _seed(pool, 2)
    train = Train(_env(database_url, tmp_path), "train", "--iterations", "2")
    await train.wait_for(r"engine started")
    train.proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.05)  # the first is still stopping the run (its final events take longer)
    code, took = await train.interrupt()
    assert code == 130 and took < 0.5, (code, took, train.text())
    assert "interrupted again: exiting now" in train.text()
    assert "interrupted: run" not in train.text()  # it did not wait for the orderly stop


async def test_ctrl_c_mid_run_abandons_the_stage_safely(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    windows = 4
    await _seed(pool, windows)
    env = _env(database_url, tmp_path, WANDB_MODE="offline")  # W&B runs (offline): its banner must not show
    train = Train(env, "train", "--iterations", str(windows), "--windows-per-iteration", "1")
    await train.wait_for(r"checkpoint \S+ registered")
    code, took = await train.interrupt()
    assert code == 130, train.text()
    assert took < BOUND_S, f"{took:.2f} s\n{train.text()}"
    assert "stopping…" in b"".join(train.stderr).decode()

    # not a terminal: plain lines, one per event, each ending in a newline; no live frame, no W&B banner
    out = b"".join(train.stdout).decode()
    assert out.endswith("\n") and "\r" not in out and "\x1b" not in out
    events = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert events[0].endswith("engine started: offline backend, outcome judge"), out
    assert any(re.search(r"checkpoint \S+ registered \(step 1\)$", line) for line in events), out
    assert "wandb:" not in train.text()

    await _consistent(pool)
    assert await pool.fetchval("SELECT count(*) FROM training_batches WHERE status = 'training'") <= 1
    # the next start repairs whatever stage was abandoned: every window trained once, none lost
    final = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "babylon_console", "train", "--iterations", str(windows),
                         "--windows-per-iteration", "1", "--quiet", "--json"],
        env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode in (0, 3), final.stderr[-2000:]
    await _consistent(pool)
    assert await pool.fetchval("SELECT count(*) FROM training_batches WHERE status = 'training'") == 0
    trained = [r[0] for r in await pool.fetch("SELECT window_id FROM console_trained_windows")]
    assert len(trained) == len(set(trained)) == windows
