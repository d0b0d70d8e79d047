"""Held-out evaluation: compare two checkpoints on the same held-out windows, before any agent is
served either.

Offline checkpoints (`offline://...`): each held-out window's market is replayed in the simulator
from the seed the rows record (prices and resolutions depend only on the seed and the hour, so the
replay is that window's market), once with every agent driven by each model, with the same seed for
both arms. Per window: the mean P&L of model A's agents minus model B's; the result is the mean of
those differences with a 95% CI paired by window (Student's t), and the share of windows A won.
Results are stored in `console_evaluations`.

Checkpoints of the other backends (`wandb-artifact://`, `local-lora://`) would be evaluated by
replaying the windows' recorded prompts through each model's endpoint and judging both answers
side by side; that path is not built yet, and asking for it is refused with that reason.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from .errors import InvalidInput, Refused
from .evidence import paired_difference
from .windows import held_out, parse_window_id

MIN_WINDOWS = 3


class EvalResult(BaseModel):
    id: int | None = None
    model_id: str
    against: str  # "live", "base" or a model id, as asked
    against_model_id: str | None  # None: the base policy (step 0 of the model's run)
    storage_path: str
    against_storage_path: str
    windows: list[str]
    n: int
    mean_a: float  # mean P&L per agent-window, model
    mean_b: float  # the same, the model it is compared with
    mean_diff: float
    ci_low: float | None
    ci_high: float | None
    win_rate: float
    created_at: datetime | None = None


class _Window(BaseModel):
    window_id: str
    seed: int
    agents: int
    steps: int


_HELD_OUT_SQL = r"""
SELECT "windowId" AS window_id, max(substring("metadataJson" from '"seed":\s*(-?[0-9]+)')) AS seed,
       count(DISTINCT "agentId") AS agents, max("episodeLength") AS steps
FROM trajectories
WHERE "windowId" IS NOT NULL AND "metadataJson" LIKE '%"simulated":true%'
GROUP BY "windowId" ORDER BY "windowId" DESC LIMIT $1
"""


async def _model(pool: asyncpg.Pool, model_id: str) -> asyncpg.Record:
    row = await pool.fetchrow('SELECT "modelId", status, "storagePath" FROM trained_models WHERE "modelId" = $1',
                              model_id)
    if row is None:
        raise InvalidInput(f"no checkpoint with model id {model_id!r} (see `babylon-console models list`)")
    if row["status"] in ("failed", "training"):
        raise Refused(f"{model_id} cannot be evaluated: its status is {row['status']!r}")
    return row


def _require_offline(model_id: str, storage: str) -> None:
    if not storage.startswith("offline://"):
        scheme = storage.split("://", 1)[0] if "://" in storage else "unknown"
        raise Refused(f"{model_id} is a {scheme} checkpoint: evaluating it replays the held-out windows' recorded "
                      "prompts through its endpoint, which this version does not do yet (offline checkpoints only)")


async def held_out_windows(pool: asyncpg.Pool, share: float, limit: int, lookback: int = 2000) -> list[_Window]:
    """The newest `limit` held-out windows recorded by the simulator (with the seed to replay them)."""
    if share <= 0:
        raise InvalidInput("no windows are held out: set BABYLON_HOLDOUT_SHARE (e.g. 0.1) so training leaves some "
                           "windows for evaluation")
    rows = await pool.fetch(_HELD_OUT_SQL, lookback)
    out = []
    for r in rows:
        if not held_out(r["window_id"], share) or r["seed"] is None or not str(r["seed"]).lstrip("-").isdigit():
            continue
        out.append(_Window(window_id=r["window_id"], seed=int(r["seed"]), agents=int(r["agents"]),
                           steps=max(1, int(r["steps"] or 1))))
        if len(out) == limit:
            break
    return out


def _replay(window: _Window, policy: Any) -> float:
    """Mean P&L per agent when every agent of the window's market is driven by `policy`."""
    from .sim.simulation import Simulation

    sim = Simulation(seed=window.seed, n_agents=window.agents, steps_per_window=window.steps, record_messages=False)
    for i in range(window.agents):
        sim.set_policy(i, policy)
    result = sim.simulate_window(parse_window_id(window.window_id))
    return statistics.fmean(s.final_pnl for s in result.stats)


async def evaluate(pool: asyncpg.Pool, data_dir: Path, holdout_share: float, model_id: str, against: str = "live",
                   windows: int = 24, progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Compare `model_id` with `against` ("live", "base" or a model id) on held-out windows; stored."""
    from .backends.factory import checkpoint_root
    from .backends.offline import OfflineBackend, inference_name, parse_inference_name

    if windows < MIN_WINDOWS:
        raise InvalidInput(f"--windows must be at least {MIN_WINDOWS}, got {windows}")
    model = await _model(pool, model_id)
    _require_offline(model_id, model["storagePath"])
    if against == "live":
        live = await pool.fetchval("""SELECT "modelId" FROM trained_models WHERE status = 'deployed'""")
        if live is None:
            raise InvalidInput("no live model to compare with: use --against base or --against MODEL_ID")
        other = await _model(pool, live)
        against_id, against_storage = live, other["storagePath"]
    elif against == "base":
        project, run, _ = parse_inference_name(model["storagePath"])
        against_id, against_storage = None, inference_name(project, run, 0)
    else:
        other = await _model(pool, against)
        against_id, against_storage = against, other["storagePath"]
    if against_storage == model["storagePath"]:
        raise InvalidInput(f"{model_id} would be compared with itself")
    _require_offline(against_id or "the base policy", against_storage)
    backend = OfflineBackend(checkpoint_root(data_dir, "offline"))
    try:
        policy_a = backend.load_policy(model["storagePath"])
        policy_b = backend.load_policy(against_storage)
    except Exception as exc:  # a checkpoint missing or unreadable on disk: say which, record nothing
        raise Refused(f"cannot load the checkpoints to evaluate: {exc}") from exc
    chosen = await held_out_windows(pool, holdout_share, windows)
    if len(chosen) < MIN_WINDOWS:
        raise InvalidInput(f"only {len(chosen)} held-out simulated window(s) in the database, at least "
                           f"{MIN_WINDOWS} needed (more history, or a larger BABYLON_HOLDOUT_SHARE)")
    a, b = [], []
    for i, window in enumerate(chosen):
        a.append(await asyncio.to_thread(_replay, window, policy_a))
        b.append(await asyncio.to_thread(_replay, window, policy_b))
        if progress is not None:
            progress(i + 1, len(chosen))
    diff = paired_difference([x - y for x, y in zip(a, b, strict=True)])
    assert diff is not None
    result = EvalResult(
        model_id=model_id, against=against, against_model_id=against_id, storage_path=model["storagePath"],
        against_storage_path=against_storage, windows=[w.window_id for w in chosen], n=len(chosen),
        mean_a=statistics.fmean(a), mean_b=statistics.fmean(b), mean_diff=diff.mean, ci_low=diff.ci_low,
        ci_high=diff.ci_high, win_rate=diff.win_rate,
    )
    row = await pool.fetchrow(
        "INSERT INTO console_evaluations (model_id, against, against_model_id, result) VALUES ($1, $2, $3, $4::jsonb) "
        "RETURNING id, created_at", model_id, against, against_id, result.model_dump_json())
    return result.model_copy(update={"id": row["id"], "created_at": row["created_at"]})


async def latest_per_model(pool: asyncpg.Pool) -> dict[str, EvalResult]:
    """The newest evaluation of each model."""
    rows = await pool.fetch("SELECT DISTINCT ON (model_id) id, result, created_at FROM console_evaluations "
                            "ORDER BY model_id, id DESC")
    out = {}
    for r in rows:
        result = EvalResult.model_validate(orjson.loads(r["result"]) if isinstance(r["result"], str) else r["result"])
        out[result.model_id] = result.model_copy(update={"id": r["id"], "created_at": r["created_at"]})
    return out
