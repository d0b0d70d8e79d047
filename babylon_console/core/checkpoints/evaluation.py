"""Held-out evaluation: compare two checkpoints on the same held-out windows, before any agent is
served either.

Offline checkpoints (`offline://...`): each held-out window's market is replayed in the simulator
from the seed the rows record (prices and resolutions depend only on the seed and the hour, so the
replay is that window's market), once with every agent driven by each model, with the same seed for
both arms. Per window: the mean P&L of model A's agents minus model B's; the result is the mean of
those differences with the gate's anytime-valid bounds (`core.stats.anytime_bounds`, one-sided each,
the bound the verdict reads: evaluations are run again and again, every k-th checkpoint, and read
each time) and the plain 95% CI paired by window (Student's t, shown for reference), and the share of
windows A won. Results are stored in `console_evaluations`.

Checkpoints of the other backends (`wandb-artifact://`, `local-lora://`) are evaluated on the recorded
prompts of held-out windows instead (`core/checkpoints/prompt_eval.py`): both models answer the same prompts at
their OpenAI-compatible endpoints (`core/checkpoints/endpoints.py`) and the settings' judge scores the two
answers side by side with the window's ground truth; the per-window difference is of mean answer
scores (0 to 1), with the same paired CI and win rate. Two checkpoints of different kinds (an
offline one and a served one) are not comparable and are refused.

Which windows are held out is the database's record (`core/checkpoints/holdout.py`), never a setting. A held-out
window that either model learned from (the checkpoint, an earlier checkpoint of its model, or the model
it is compared with: `console_trained_windows`), for example one trained before the hold-out was set,
is never counted: it is left out, with why, in the result's `left_out`.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, model_validator

from ..config import GateSettings
from ..errors import InvalidInput, Refused
from ..game.store import GameStore
from ..game.windows import held_out, parse_window_id
from ..jsonvalue import decoded
from ..stats import anytime_bounds, paired_difference
from .holdout import NO_HOLDOUT
from .registry import CheckpointRow, checkpoint_row, live_model_id

MIN_WINDOWS = 3
LARGER = "more history, or a larger hold-out: `babylon-console holdout`"
BEFORE_HOLDOUT = "trained on before the hold-out was set"
WHILE_HELD_OUT = "trained on while held out"
BY_COMPARISON = "the model compared with was trained on it"


def left_out_summary(left_out: Mapping[str, str]) -> str | None:
    """'3 windows left out: trained on before the hold-out was set'; with several reasons, a count each."""
    if not left_out:
        return None
    counts = Counter(left_out.values())
    head = f"{len(left_out)} window{'s' if len(left_out) != 1 else ''} left out"
    if len(counts) == 1:
        return f"{head}: {next(iter(counts))}"
    return f"{head}: " + ", ".join(f"{k} {why}" for why, k in counts.most_common())


class EvalResult(BaseModel):
    """One comparison. `method` "simulator": `mean_a`/`mean_b` are P&L per agent-window (offline
    checkpoints); "prompts": mean answer scores in [0, 1] from `judge` over `prompts` recorded prompts."""

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
    ci_low: float | None  # plain 95% t interval: valid for one look, not under repeated looks
    ci_high: float | None
    win_rate: float
    # the anytime-valid interval the verdict reads (None: still unbounded, or stored before it was computed)
    cs_low: float | None = None
    cs_high: float | None = None
    cs_alpha: float = 0.05
    window_diffs: list[float] = []  # per window, in the order of `windows`: model minus the other
    method: Literal["simulator", "prompts"] = "simulator"
    judge: str | None = None
    prompts: int = 0  # recorded prompts both models answered (method "prompts")
    unusable_a: int = 0  # answers that were not a valid action, per model
    unusable_b: int = 0
    truncated_a: int = 0  # answers cut off at the token limit, per model (counted in `unusable` when they do not parse)
    truncated_b: int = 0
    endpoint_a: str | None = None
    endpoint_b: str | None = None
    examples: list[dict[str, Any]] = []  # a few prompts where the two answers scored differently
    # held-out windows not counted, with why: a model compared trained on them (core/checkpoints/holdout.py)
    left_out: dict[str, str] = {}
    holdout_share: float | None = None  # the database's hold-out the windows were chosen by
    holdout_rule: str | None = None
    note: str | None = None  # what the comparison is, when it is not what was asked ("nothing is live: ...")
    created_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounds_of_older_rows(cls, data: Any) -> Any:
        """A result stored before the anytime-valid bound was recorded gets it from its window differences
        (at the default level), so the verdict reads the same bound for every evaluation."""
        recorded = isinstance(data, dict) and any(k in data for k in ("cs_alpha", "cs_low", "cs_high"))
        if isinstance(data, dict) and not recorded and len(data.get("window_diffs") or []) >= 2:
            gate = GateSettings()
            cs = anytime_bounds([float(d) for d in data["window_diffs"]], alpha=gate.alpha, horizon=gate.horizon)
            data = {**data, "cs_alpha": gate.alpha, "cs_low": cs[0] if cs else None, "cs_high": cs[1] if cs else None}
        return data

    @property
    def unit(self) -> str:
        return "P&L per agent-window" if self.method == "simulator" else f"{self.judge or 'judge'} score per answer"

    @property
    def short_unit(self) -> str:
        return "P&L" if self.method == "simulator" else "score"

    @property
    def spec(self) -> str:
        """How its figures print: P&L in cents, answer scores (0 to 1) to three places."""
        return "+.2f" if self.method == "simulator" else "+.3f"

    @property
    def level_windows(self) -> int:
        """Windows where the two models scored the same (neither won)."""
        return sum(1 for d in self.window_diffs if d == 0)

    @property
    def left_out_text(self) -> str | None:
        """'3 windows left out: trained on before the hold-out was set' (None: none left out)."""
        return left_out_summary(self.left_out)

    def ci_text(self, spec: str = "+.2f") -> str:
        """`[low, high]`, or "(one window)"."""
        if self.ci_low is None or self.ci_high is None:
            return "(one window)"
        return f"[{self.ci_low:{spec}}, {self.ci_high:{spec}}]"

    def bounds_text(self, spec: str = "+.2f") -> str:
        """'anytime-valid 95% bound [low, high] (plain 95% CI [..], not valid under repeated looks)'."""
        level = f"anytime-valid {1 - self.cs_alpha:.0%} bound"
        bound = (f"{level} still unbounded" if self.cs_low is None or self.cs_high is None
                 else f"{level} [{self.cs_low:{spec}}, {self.cs_high:{spec}}]")
        return f"{bound} (plain 95% CI {self.ci_text(spec)}, not valid under repeated looks)"

    @property
    def below_zero(self) -> bool:
        """The verdict against the model: its anytime-valid bound is entirely below zero."""
        return self.cs_high is not None and self.cs_high < 0


class _Window(BaseModel):
    window_id: str
    seed: int
    agents: int
    steps: int


async def _model(pool: asyncpg.Pool, model_id: str) -> CheckpointRow:
    row = await checkpoint_row(pool, model_id)
    if row is None:
        raise InvalidInput(f"no checkpoint with model id {model_id!r} (see `babylon-console models list`)")
    if row.status in ("failed", "training"):
        raise Refused(f"{model_id} cannot be evaluated: its status is {row.status!r}")
    return row


async def held_out_windows(pool: asyncpg.Pool, share: float, limit: int, lookback: int = 2000, *,
                           skip: Mapping[str, str] | None = None,
                           left_out: dict[str, str] | None = None) -> list[_Window]:
    """The newest `limit` held-out windows recorded by the simulator (with the seed to replay them).
    Windows in `skip` (window -> why) are passed over; those met on the way go into `left_out`."""
    if share <= 0:
        raise InvalidInput(NO_HOLDOUT)
    out = []
    for r in await GameStore(pool).simulated_windows(lookback):
        if not held_out(r.window_id, share) or r.seed is None or not str(r.seed).lstrip("-").isdigit():
            continue
        if skip and r.window_id in skip:
            if left_out is not None:
                left_out[r.window_id] = skip[r.window_id]
            continue
        out.append(_Window(window_id=r.window_id, seed=int(r.seed), agents=int(r.agents),
                           steps=max(1, int(r.steps or 1))))
        if len(out) == limit:
            break
    return out


def _replay(window: _Window, policy: Any) -> float:
    """Mean P&L per agent when every agent of the window's market is driven by `policy`."""
    from ..sim.simulation import Simulation

    sim = Simulation(seed=window.seed, n_agents=window.agents, steps_per_window=window.steps, record_messages=False)
    for i in range(window.agents):
        sim.set_policy(i, policy)
    result = sim.simulate_window(parse_window_id(window.window_id))
    return statistics.fmean(s.final_pnl for s in result.stats)


NOTHING_LIVE = "nothing is live: compared with the base model"


async def _against(pool: asyncpg.Pool, model_id: str, storage: str, against: str
                   ) -> tuple[str | None, str, str | None]:
    """(model id or None for the base, served name, a note when it is not what was asked) of what
    `model_id` is compared with. "live" with nothing live is the base model, said in the note."""
    from ..names import base_name, is_offline, offline_name, parse_offline_name

    if against == "live":
        live = await live_model_id(pool)
        if live is None:
            return *(await _against(pool, model_id, storage, "base"))[:2], NOTHING_LIVE
        return live, (await _model(pool, live)).storage_path, None
    if against == "base":
        if is_offline(storage):
            project, run, _ = parse_offline_name(storage)
            return None, offline_name(project, run, 0), None
        return None, base_name(storage), None
    return against, (await _model(pool, against)).storage_path, None


def _step(version: Any) -> int | None:
    text = str(version or "")
    return int(text[5:]) if text.startswith("step-") and text[5:].isdigit() else None


async def trained_windows(pool: asyncpg.Pool, model_id: str) -> dict[str, datetime]:
    """Windows `model_id` learned from: those of its own batch and of every earlier checkpoint of its
    model (the training key its batch names), with when each was trained. A batch whose step is not
    known counts as earlier: a window is rather left out than counted wrongly."""
    row = await checkpoint_row(pool, model_id)
    batch = str(row.training_batch or "") if row is not None else ""
    if row is None or ":" not in batch:  # not trained here (the base policy, a row the game wrote)
        return {}
    step = _step(row.version)
    out: dict[str, datetime] = {}
    for r in await GameStore(pool).trained_windows(batch.rsplit(":", 1)[0]):
        before = _step(r.version)
        if step is None or before is None or before <= step:
            out[r.window_id] = r.trained_at
    return out


async def _left_out(pool: asyncpg.Pool, model_id: str, against_id: str | None, record: Any) -> dict[str, str]:
    """Windows no comparison may count (window -> why): trained on by the model or by what it is compared with."""
    set_at = record.set_at if record is not None else None
    skip = {w: BY_COMPARISON for w in (await trained_windows(pool, against_id) if against_id else {})}
    for window, trained_at in (await trained_windows(pool, model_id)).items():
        skip[window] = BEFORE_HOLDOUT if set_at is None or trained_at < set_at else WHILE_HELD_OUT
    return skip


def _also_left_out(left_out: Mapping[str, str]) -> str:
    text = left_out_summary(left_out)
    return f"; {text}" if text else ""


class _Measured(BaseModel):
    windows: list[str]
    a: list[float]  # per window
    b: list[float]
    extra: dict[str, Any] = {}


def _offline_policies(data_dir: Path, *storage: str) -> list[Any]:
    from ..training.backends.factory import checkpoint_root
    from ..training.backends.offline import OfflineBackend

    backend = OfflineBackend(checkpoint_root(data_dir, "offline"))
    try:
        return [backend.load_policy(s) for s in storage]
    except Exception as exc:  # a checkpoint missing or unreadable on disk: say which, record nothing
        raise Refused(f"cannot load the checkpoints to evaluate: {exc}") from exc


async def _on_simulator(pool: asyncpg.Pool, data_dir: Path, holdout_share: float, storage_a: str, storage_b: str,
                        windows: int, progress: Callable[[int, int], None] | None,
                        skip: Mapping[str, str], left_out: dict[str, str]) -> _Measured:
    policy_a, policy_b = _offline_policies(data_dir, storage_a, storage_b)
    chosen = await held_out_windows(pool, holdout_share, windows, skip=skip, left_out=left_out)
    if len(chosen) < MIN_WINDOWS:
        raise InvalidInput(f"only {len(chosen)} held-out simulated window(s) in the database, at least "
                           f"{MIN_WINDOWS} needed ({LARGER}){_also_left_out(left_out)}")
    a, b = [], []
    for i, window in enumerate(chosen):
        a.append(await asyncio.to_thread(_replay, window, policy_a))
        b.append(await asyncio.to_thread(_replay, window, policy_b))
        if progress is not None:
            progress(i + 1, len(chosen))
    return _Measured(windows=[w.window_id for w in chosen], a=a, b=b)


async def _on_prompts(pool: asyncpg.Pool, data_dir: Path, settings: Any, holdout_share: float,
                      labels: tuple[str, str], storage_a: str, storage_b: str, windows: int, per_window: int,
                      progress: Callable[[int, int], None] | None, skip: Mapping[str, str],
                      left_out: dict[str, str]) -> _Measured:
    from ..names import is_offline
    from ..training.judges import OutcomeJudge, judge_unavailable, make_judge
    from .endpoints import endpoint_for
    from .prompt_eval import EndpointClient, PolicyClient, compare_on_prompts, held_out_prompts

    offline = is_offline(storage_a)
    if settings is None and not offline:
        raise InvalidInput("evaluating a served checkpoint needs the settings that say where it is served")
    endpoints = None if offline else (endpoint_for(storage_a, settings), endpoint_for(storage_b, settings))
    policies = _offline_policies(data_dir, storage_a, storage_b) if offline else None
    if settings is not None and (why := judge_unavailable(settings.judge, settings)) is not None:
        raise InvalidInput(why)
    judge = make_judge(settings) if settings is not None else OutcomeJudge()
    chosen = await held_out_prompts(pool, holdout_share, windows, per_window, skip=skip, left_out=left_out)
    if len(chosen) < MIN_WINDOWS:
        raise InvalidInput(f"only {len(chosen)} held-out window(s) with recorded prompts and ground truth in the "
                           f"database, at least {MIN_WINDOWS} needed ({LARGER}){_also_left_out(left_out)}")
    clients: list[EndpointClient | PolicyClient] = []
    try:
        if policies is not None:
            clients.extend(PolicyClient(label, s, p) for label, s, p in zip(labels, (storage_a, storage_b), policies,
                                                                            strict=True))
        else:
            assert endpoints is not None
            clients.extend(EndpointClient(label, e, settings.eval_timeout_s) for label, e in zip(labels, endpoints,
                                                                                                   strict=True))
        outcome = await compare_on_prompts(chosen, clients[0], clients[1], judge, progress,
                                           judge_concurrency=getattr(settings, "judge_concurrency", 4))
    finally:
        for client in clients:
            await client.aclose()
    return _Measured(windows=outcome.windows, a=outcome.mean_a, b=outcome.mean_b, extra={
        "method": "prompts", "judge": judge.name, "prompts": outcome.prompts, "unusable_a": outcome.unusable_a,
        "unusable_b": outcome.unusable_b, "truncated_a": clients[0].truncated, "truncated_b": clients[1].truncated,
        "endpoint_a": clients[0].endpoint.describe(), "endpoint_b": clients[1].endpoint.describe(),
        "examples": outcome.examples})


Method = Literal["auto", "simulator", "prompts"]


async def evaluate(pool: asyncpg.Pool, data_dir: Path, model_id: str, against: str = "live",
                   windows: int = 24, progress: Callable[[int, int], None] | None = None, *,
                   settings: Any = None, prompts: int | None = None, method: Method = "auto") -> EvalResult:
    """Compare `model_id` with `against` ("live", "base" or a model id; "live" with nothing live is
    the base model, said in `note`) on the windows the database's hold-out reserves; stored.

    A window either model learned from (`trained_windows`) is never counted: it is left out, with
    why, in `left_out` (windows trained before the hold-out was set, or by the model compared with).

    Offline checkpoints are replayed in the simulator ("auto", "simulator"); served ones (serverless,
    local) answer `prompts` recorded prompts per window (default: `settings.eval_prompts`) at the
    endpoints the settings name, judged by the settings' judge. `method="prompts"` evaluates offline
    checkpoints on recorded prompts too (answered in process), with the same code and judges."""
    from ..names import is_offline, scheme_of
    from .holdout import current_holdout, share_of

    if windows < MIN_WINDOWS:
        raise InvalidInput(f"--windows must be at least {MIN_WINDOWS}, got {windows}")
    model = await _model(pool, model_id)
    storage = model.storage_path
    against_id, against_storage, note = await _against(pool, model_id, storage, against)
    record = await current_holdout(pool)
    holdout_share = share_of(record)
    if against_storage == storage:
        raise InvalidInput(f"{model_id} would be compared with itself")
    label_b = against_id or "the base model"
    if is_offline(storage) != is_offline(against_storage):
        raise Refused(f"{model_id} ({scheme_of(storage)}) and {label_b} ({scheme_of(against_storage)}) cannot be "
                      "compared: an offline checkpoint is evaluated in the simulator and a served one on recorded "
                      "prompts (compare each with its own base model or a checkpoint of its kind)")
    if method not in ("auto", "simulator", "prompts"):
        raise InvalidInput(f"unknown evaluation method {method!r} (expected auto, simulator or prompts)")
    if not is_offline(storage) and method == "simulator":
        raise Refused(f"{model_id} is a {scheme_of(storage)} checkpoint: the simulator runs offline checkpoints "
                      "only; a served one is evaluated on recorded prompts (--method prompts)")
    skip, left_out = await _left_out(pool, model_id, against_id, record), {}
    if is_offline(storage) and method != "prompts":
        measured = await _on_simulator(pool, data_dir, holdout_share, storage, against_storage, windows, progress,
                                       skip, left_out)
    else:
        per_window = prompts if prompts is not None else getattr(settings, "eval_prompts", 8)
        if per_window < 1:
            raise InvalidInput(f"--prompts must be at least 1, got {per_window}")
        measured = await _on_prompts(pool, data_dir, settings, holdout_share, (model_id, label_b), storage,
                                     against_storage, windows, per_window, progress, skip, left_out)
    a, b = measured.a, measured.b
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    gate = settings.gate() if hasattr(settings, "gate") else GateSettings()
    diff = paired_difference(diffs, alpha=gate.alpha, horizon=gate.horizon)
    assert diff is not None
    result = EvalResult(
        model_id=model_id, against=against, against_model_id=against_id, storage_path=storage,
        against_storage_path=against_storage, windows=measured.windows, n=len(measured.windows),
        mean_a=statistics.fmean(a), mean_b=statistics.fmean(b), mean_diff=diff.mean, ci_low=diff.ci_low,
        ci_high=diff.ci_high, win_rate=diff.win_rate, cs_low=diff.cs_low, cs_high=diff.cs_high,
        cs_alpha=diff.cs_alpha, window_diffs=diffs, left_out=left_out,
        holdout_share=holdout_share, holdout_rule=record.rule if record is not None else None, note=note,
        **measured.extra,
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
        result = EvalResult.model_validate(decoded(r["result"]))
        out[result.model_id] = result.model_copy(update={"id": r["id"], "created_at": r["created_at"]})
    return out
