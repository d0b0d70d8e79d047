"""GPU smoke check (not run in CI): two real ART LocalBackend steps from simulated game rows.

On a CUDA machine with the GPU extra installed (see README, "The local backend") and a local copy
of a small instruct model, this seeds a few simulated windows into a fresh embedded PostgreSQL,
runs the engine with the `local` backend and the `outcome` judge for two steps, and prints for
each step the trainable assistant tokens ART reported, the registered checkpoint's served name
(its LoRA directory), then one completion from the newest checkpoint through ART's vLLM server.

    .venv/bin/python scripts/gpu_smoke.py --base-model /models/Qwen2.5-0.5B-Instruct

It exits non-zero when a step trained nothing, no checkpoint was registered, or the completion
failed. The first start installs ART's vLLM runtime with uv (several GB, once).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.config import Settings
from babylon_console.core.db.connections import open_database
from babylon_console.core.engine import Engine, EngineConfig, EngineState
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.backends.factory import check_local, checkpoint_root


class Clock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True, help="A local model directory (or a Hugging Face id).")
    parser.add_argument("--data-dir", type=Path, default=None, help="Default: a fresh temporary directory.")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--agents", type=int, default=6)
    args = parser.parse_args()
    check_local()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="babylon-gpu-smoke-"))
    settings = Settings(BABYLON_DATA_DIR=str(data_dir), BABYLON_BACKEND="local",  # type: ignore[call-arg]
                        BABYLON_BASE_MODEL=args.base_model, BABYLON_SETTLE_SECONDS=0)
    now = datetime(2026, 1, 2, 0, 30)
    _, pool = await open_database(settings)
    try:
        await seed_history(pool, Simulation(seed=1, n_agents=args.agents, steps_per_window=6), args.windows, now=now)
        from art.local import LocalBackend

        backend = LocalBackend(path=str(checkpoint_root(data_dir, "local")))
        config = EngineConfig.from_settings(settings, iterations=2, windows_per_iteration=max(1, args.windows // 2),
                                            min_agents=2, min_steps=1, lookback_hours=48)
        engine = Engine(pool, config, settings=settings, backend=backend, clock=Clock(now))
        started = time.perf_counter()
        summary = await engine.run()
        print(f"engine: {summary.state.value} in {time.perf_counter() - started:.0f} s, steps {summary.steps}")
        rows = await pool.fetch('SELECT "modelId", "storagePath", "evalMetrics" FROM trained_models '
                                'ORDER BY "createdAt"')
        import orjson

        for row in rows:
            metrics = orjson.loads(row["evalMetrics"])
            print(f"{row['modelId']}: trainable assistant tokens (ART) "
                  f"{metrics.get('data/step_trainable_assistant_tokens'):.0f}, "
                  f"(engine's count) {metrics.get('babylon/trainable_assistant_tokens'):.0f}; "
                  f"checkpoint {row['storagePath']}")
        ok = summary.state is EngineState.STOPPED and len(summary.steps) == 2 and len(rows) == 2
        if ok:
            model = engine._model  # registered with the backend, which is still open
            client = model.openai_client()
            reply = await client.chat.completions.create(
                model=model.get_inference_name(summary.steps[-1]), max_tokens=64,
                messages=[{"role": "system", "content": "You are a Babylon trading agent."},
                          {"role": "user", "content": "MARKET_STATE: BBLN 101.2 (+1.1%). Your action as JSON?"}])
            print("completion from the new checkpoint:", reply.choices[0].message.content)
        await backend.close()
        return 0 if ok else 1
    finally:
        await pool.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
