"""`offline`: a CPU stand-in for LLM training that implements ART's `Backend` protocol.

It is labelled as what it is: it does not train a language model. It trains the simulator's
checkpoint-driven agent (`LinearSoftmaxPolicy`: a softmax over the discrete candidate actions of an
observation, linear in `FEATURE_DIM` features) from the same `art.TrajectoryGroup`s, rewards and
GRPO objective that an LLM backend would get (see `grpo.py`), writes real checkpoint files, and
reports ART's metric names for what it shares with ART (losses, rewards, group counts) and its own
`offline/*` names for what differs (it trains actions, not tokens). It trains exactly the turns ART
would train (`Choice`s with token ids) and reports every one it cannot map to a simulator action;
a call in which nothing maps raises `NothingTrained` and writes no checkpoint. A checkpoint it
writes can drive simulator agents, so the console's whole loop (simulate, judge, train, register,
promote, serve) runs on a laptop with no GPU and no keys.

ART's `Backend` is a `typing.Protocol` that nothing checks at runtime, so this class satisfies it
by duck typing and never imports `art` at module import (that costs seconds); `train` imports
`art.types.TrainResult` lazily.

Layout under `path` (the same as ART's LocalBackend, so `model.log` and `delete_checkpoints` line
up; `register` points `model.base_path` at `path`):

    <path>/<project>/models/<run_name>/
        checkpoints/0000/policy.json   step 0: the initial policy (all-zero weights = uniform over
                         meta.json     candidates, the exploring agent); written by `register`
        checkpoints/0001/...           one directory per `train` call
        history.jsonl, trajectories/   written by `model.log`

Each step directory is written under `checkpoints/.tmp-*` and renamed into place, so a crash never
leaves a partial checkpoint that `_get_step` would count. The step of a model is the highest
integer-named directory that holds a `policy.json`.

Inference names (stored in `trained_models.storagePath`): `offline://<project>/<run_name>:step<N>`,
or `offline://<project>/<run_name>` for "the latest step". `load_policy(name)` turns one back into
a `LinearSoftmaxPolicy`; `checkpoint_path(...)` gives the file.

Learning rate: the engine passes ART learning rates (about 1e-5, tuned for LoRA adapters on
billions of weights). This model has `FEATURE_DIM` weights of order one, so such a step would
change nothing. The backend multiplies the requested rate by `lr_scale` (default 5000: ART's 1e-5
becomes an Adam step of 0.05 per weight) and reports the rate it actually used as
`loss/learning_rate` (the requested one as `offline/requested_learning_rate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from babylon_console.core.sim.actions import FEATURE_DIM
from babylon_console.core.sim.policy import CheckpointError, LinearSoftmaxPolicy

from ...names import OFFLINE_SCHEME, checked_offline_part, offline_name, parse_offline_name
from .empty_step import OFFLINE_TRAINED_KEY, NothingTrained
from .grpo import BatchStats, build_batch, train_grpo

LABEL = "offline CPU stand-in"
POLICY_FILE = "policy.json"
META_FILE = "meta.json"
DEFAULT_LR_SCALE = 5000.0
# Where an OpenAI client would send requests: nowhere (".invalid" never resolves). The offline
# backend serves no inference endpoint; its checkpoints drive simulator agents directly.
NO_SERVER_BASE_URL = "http://offline.invalid/v1"



def describe_untrained(stats: BatchStats) -> str:
    t = stats.turns
    if stats.groups_submitted and stats.groups_skipped_equal_reward == stats.groups_submitted:
        return f"nothing to train: all {stats.groups_submitted} group(s) have equal rewards (no signal)"
    if t.choices == 0:
        return (f"nothing to train: no turn ART would train in {stats.trajectories} trajectories "
                f"({t.not_trainable_by_art} assistant turn(s) without token ids; build groups with "
                "WindowGroup.tokenize)")
    return (f"nothing to train: {t.choices} turn(s) ART would train, none maps to a simulator action "
            f"({t.no_market_state} without a MARKET_STATE prompt, {t.unparseable} unparseable responses, "
            f"{t.no_candidate} not among the candidates). The offline stand-in trains only "
            "simulator-shaped calls; real game data needs the serverless or local backend")


def initial_weights() -> np.ndarray:
    """Step 0: all zeros, i.e. uniform over the candidates of every observation (pure exploration)."""
    return np.zeros(FEATURE_DIM)


def _names_of(model: Any) -> tuple[str, str]:
    """(project, run name) of an ART model; the run name is its storage name, as ART uses it."""
    project = getattr(model, "project", None)
    storage = getattr(model, "_storage_name", None)
    run = storage() if callable(storage) else (getattr(model, "run_name", None) or getattr(model, "name", None))
    if not project or not run:
        raise ValueError(f"{model!r} has no project/run name")
    return checked_offline_part("project", str(project)), checked_offline_part("run name", str(run))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}


class OfflineBackend:
    """ART `Backend` that trains the simulator's linear softmax policy with GRPO on the CPU."""

    label = LABEL

    def __init__(
        self,
        path: str | Path,
        *,
        seed: int = 0,
        epochs: int = 4,
        clip_epsilon: float = 0.2,
        kl_coef: float = 0.05,
        temperature: float = 1.0,
        lr_scale: float = DEFAULT_LR_SCALE,
        minibatch_size: int = 64,
    ) -> None:
        """`path`: root of the checkpoint tree. Per training call: `epochs` passes of Adam over
        shuffled minibatches of `minibatch_size` turns, PPO clip `clip_epsilon`, KL weight `kl_coef`
        (toward step 0), softmax `temperature` (also stored in each checkpoint), and the effective
        learning rate `learning_rate * lr_scale` (see the module docstring). `seed` seeds the
        minibatch shuffling (with the parent step), so a run is reproducible."""
        if epochs < 1:
            raise ValueError("epochs must be >= 1")
        if not 0.0 < clip_epsilon < 1.0:
            raise ValueError("clip_epsilon must be in (0, 1)")
        if kl_coef < 0.0:
            raise ValueError("kl_coef must be >= 0")
        if not temperature > 0.0:
            raise ValueError("temperature must be > 0")
        if not lr_scale > 0.0:
            raise ValueError("lr_scale must be > 0")
        self.path = Path(path).expanduser().resolve()
        self.seed = int(seed)
        self.epochs = int(epochs)
        self.clip_epsilon = float(clip_epsilon)
        self.kl_coef = float(kl_coef)
        self.temperature = float(temperature)
        self.lr_scale = float(lr_scale)
        self.minibatch_size = int(minibatch_size)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"OfflineBackend({str(self.path)!r}, label={LABEL!r})"

    # -- paths ----------------------------------------------------------------------------------

    def run_dir(self, project: str, run_name: str) -> Path:
        project_dir = self.path / checked_offline_part("project", project)
        return project_dir / "models" / checked_offline_part("run name", run_name)

    def checkpoints_dir(self, model_or_names: Any) -> Path:
        project, run = self._resolve_names(model_or_names)
        return self.run_dir(project, run) / "checkpoints"

    def _resolve_names(self, ref: Any) -> tuple[str, str]:
        if isinstance(ref, str):
            project, run, _ = parse_offline_name(ref)
            return project, run
        if isinstance(ref, tuple) and len(ref) == 2:
            return checked_offline_part("project", str(ref[0])), checked_offline_part("run name", str(ref[1]))
        return _names_of(ref)

    def steps(self, model_or_names: Any) -> list[int]:
        """Complete checkpoint steps of a model, ascending."""
        d = self.checkpoints_dir(model_or_names)
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / POLICY_FILE).is_file())

    def latest_step(self, model_or_names: Any) -> int:
        s = self.steps(model_or_names)
        return s[-1] if s else 0

    def checkpoint_path(self, model_or_names: Any, step: int | None = None) -> Path:
        """`policy.json` of a checkpoint. `model_or_names`: an ART model, a `(project, run_name)`
        pair, or an `offline://` name (whose `:stepN` is used when `step` is None). Step None = latest.
        Raises `CheckpointError` when it does not exist."""
        if isinstance(model_or_names, str) and step is None:
            step = parse_offline_name(model_or_names)[2]
        project, run = self._resolve_names(model_or_names)
        if step is None:
            have = self.steps((project, run))
            if not have:
                raise CheckpointError(
                    f"no offline checkpoints for {offline_name(project, run)} under {self.path} "
                    "(register the model with this backend first)"
                )
            step = have[-1]
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        p = self.run_dir(project, run) / "checkpoints" / f"{int(step):04d}" / POLICY_FILE
        if not p.is_file():
            have = self.steps((project, run))
            raise CheckpointError(
                f"checkpoint {offline_name(project, run, step)} does not exist under {self.path}"
                + (f" (available steps: {have[0]}..{have[-1]}, {len(have)} in all)" if have else " (no checkpoints)")
            )
        return p

    def load_policy(self, ref: Any, step: int | None = None, **overrides: Any) -> LinearSoftmaxPolicy:
        """A checkpoint as a simulator policy. `ref`: an `offline://project/run[:stepN]` name (e.g. a
        promoted `trained_models.storagePath`), an ART model or a `(project, run_name)` pair, with
        `step` (None = latest). The policy's model name is the checkpoint's inference name."""
        if isinstance(ref, str) and not ref.startswith(OFFLINE_SCHEME):
            raise ValueError(
                f"{ref!r} is not an offline checkpoint name (expected 'offline://<project>/<run_name>:step<N>'); "
                "names from other backends (wandb-artifact://, LocalBackend) cannot drive simulator agents"
            )
        path = self.checkpoint_path(ref, step)
        project, run = self._resolve_names(ref)
        actual = int(path.parent.name)
        kw: dict[str, Any] = {"name": f"{run}:step{actual}", "model": offline_name(project, run, actual)}
        kw.update(overrides)
        return LinearSoftmaxPolicy.load(path, **kw)

    def read_meta(self, model_or_names: Any, step: int | None = None) -> dict[str, Any]:
        return orjson.loads((self.checkpoint_path(model_or_names, step).parent / META_FILE).read_bytes())

    def _write_checkpoint(
        self, project: str, run: str, step: int, weights: np.ndarray, meta: dict[str, Any]
    ) -> Path:
        ckdir = self.run_dir(project, run) / "checkpoints"
        ckdir.mkdir(parents=True, exist_ok=True)
        final = ckdir / f"{step:04d}"
        if final.exists() and not (final / POLICY_FILE).is_file():
            # Not a checkpoint (no policy file: nothing this backend writes looks like that); move it aside.
            os.rename(final, ckdir / f".trash-{step:04d}-{uuid.uuid4().hex}")
        if final.exists():
            raise RuntimeError(f"checkpoint {offline_name(project, run, step)} already exists at {final}")
        tmp = ckdir / f".tmp-{step:04d}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            policy = LinearSoftmaxPolicy(
                weights, temperature=self.temperature, name=f"{run}:step{step}",
                model=offline_name(project, run, step),
                metadata={"step": step, "label": LABEL, "project": project, "run_name": run},
            )
            policy.save(tmp / POLICY_FILE)
            _atomic_write(tmp / META_FILE, orjson.dumps(meta, option=orjson.OPT_INDENT_2))
            os.rename(tmp, final)  # atomic; fails if another writer got there first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _meta(self, model: Any, project: str, run: str, step: int, parent: int | None,
              metrics: dict[str, float], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "step": step,
            "parent_step": parent,
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "label": LABEL,
            "project": project,
            "run_name": run,
            "base_model": getattr(model, "base_model", None),
            "inference_name": offline_name(project, run, step),
            "feature_dim": FEATURE_DIM,
            "temperature": self.temperature,
            "metrics": _json_safe(metrics),
            **(extra or {}),
        }

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # -- ART Backend protocol -------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True

    async def register(self, model: Any) -> None:
        """Point the model's log directory at this backend and make sure step 0 exists."""
        self._check_open()
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            model.base_path = str(self.path)
        if not getattr(model, "trainable", False):
            return
        project, run = _names_of(model)
        async with self._lock((project, run)):
            await asyncio.to_thread(self._ensure_initial, model, project, run)

    def _ensure_initial(self, model: Any, project: str, run: str) -> None:
        ckdir = self.run_dir(project, run) / "checkpoints"
        if ckdir.is_dir():  # leftovers of a crash mid-write
            for p in ckdir.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
            for p in ckdir.glob(".trash-*"):
                shutil.rmtree(p, ignore_errors=True)
        if 0 in self.steps((project, run)):
            return
        meta = self._meta(model, project, run, 0, None, {}, {"initial_weights": "zeros (uniform over candidates)"})
        with contextlib.suppress(RuntimeError):  # a concurrent register wrote it first
            self._write_checkpoint(project, run, 0, initial_weights(), meta)

    def _model_inference_name(self, model: Any, step: int | None = None) -> str:
        project, run = _names_of(model)
        return offline_name(project, run, step)

    async def _get_step(self, model: Any) -> int:
        return await asyncio.to_thread(self.latest_step, model)

    async def _delete_checkpoint_files(self, model: Any, steps_to_keep: list[int]) -> None:
        """Delete every checkpoint not in `steps_to_keep`, except step 0 (the KL reference) and the
        latest step (training continues from it), which are always kept."""
        project, run = _names_of(model)
        async with self._lock((project, run)):
            await asyncio.to_thread(self._delete, project, run, set(steps_to_keep))

    def _delete(self, project: str, run: str, keep: set[int]) -> None:
        have = self.steps((project, run))
        if not have:
            return
        keep = keep | {0, have[-1]}
        ckdir = self.run_dir(project, run) / "checkpoints"
        for s in have:
            if s in keep:
                continue
            trash = ckdir / f".trash-{s:04d}-{uuid.uuid4().hex}"
            os.rename(ckdir / f"{s:04d}", trash)  # disappears from the step list at once
            shutil.rmtree(trash, ignore_errors=True)

    async def _prepare_backend_for_training(self, model: Any, config: Any = None) -> tuple[str, str]:
        """(base_url, api_key) for `model.openai_client()`. There is no inference server: the URL
        points at an `.invalid` host, so a client that tries it fails fast instead of hanging."""
        return NO_SERVER_BASE_URL, "offline-no-inference-server"

    def exact_adapter_lease(self, model: Any, step: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Pin a checkpoint while it is used; checkpoints are plain files, so this only checks it exists."""

        @contextlib.asynccontextmanager
        async def lease() -> AsyncIterator[None]:
            self.checkpoint_path(model, step)
            yield

        return lease()

    def supports_automatic_train_step_metrics(self) -> bool:
        return True

    async def _train_sft(
        self, model: Any, trajectories: Iterable[Any], config: Any, dev_config: Any, verbose: bool = False
    ) -> AsyncIterator[dict[str, float]]:
        raise NotImplementedError(
            "the offline backend trains only with GRPO on trajectory groups (backend.train); it has no "
            "language model to fine-tune on text, so SFT needs the 'local' or 'serverless' backend"
        )
        yield {}  # pragma: no cover - makes this an async generator, as the protocol expects

    async def train(
        self,
        model: Any,
        trajectory_groups: Iterable[Any],
        *,
        learning_rate: float = 5e-6,
        allow_training_without_logprobs: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One GRPO step on `trajectory_groups`: load the latest checkpoint, train, save step + 1.

        Returns `art.types.TrainResult(step, metrics)`. Recorded game data has no logprobs, so the
        caller must pass `allow_training_without_logprobs=True` (pi_old is then the policy at the
        start of this call). Other ART keyword arguments are accepted and ignored, except
        `kl_penalty_coef` and `epsilon`, which override `kl_coef` and `clip_epsilon` for this call.
        The numpy work runs in a worker thread, so the event loop stays responsive.
        """
        self._check_open()
        if not allow_training_without_logprobs:
            raise ValueError(
                "the offline backend trains on recorded data, which has no logprobs: "
                "pass allow_training_without_logprobs=True (pi_old is then the policy at the start of the call)"
            )
        if not getattr(model, "trainable", False):
            raise ValueError(f"{getattr(model, 'name', model)!r} is not a TrainableModel")
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and np.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        kl_coef = self.kl_coef if kwargs.get("kl_penalty_coef") is None else float(kwargs["kl_penalty_coef"])
        clip_eps = self.clip_epsilon if kwargs.get("epsilon") is None else float(kwargs["epsilon"])
        groups = list(trajectory_groups)
        project, run = _names_of(model)
        from art.types import TrainResult  # lazy: importing art costs seconds

        async with self._lock((project, run)):
            step, metrics = await asyncio.to_thread(
                self._train_sync, model, project, run, groups, float(learning_rate), kl_coef, clip_eps
            )
        return TrainResult(step=step, metrics=metrics)

    def _train_sync(
        self, model: Any, project: str, run: str, groups: list[Any], learning_rate: float,
        kl_coef: float, clip_eps: float,
    ) -> tuple[int, dict[str, float]]:
        t0 = time.perf_counter()
        self._ensure_initial(model, project, run)
        parent = self.latest_step((project, run))
        current = LinearSoftmaxPolicy.load(self.checkpoint_path((project, run), parent))
        reference = LinearSoftmaxPolicy.load(self.checkpoint_path((project, run), 0))
        batch, stats = build_batch(groups)
        if batch.n == 0:  # not a checkpoint: nothing is written
            raise NothingTrained(describe_untrained(stats))
        lr = learning_rate * self.lr_scale
        rng = np.random.default_rng([self.seed, parent])
        out = train_grpo(
            current.weights, batch, w_ref=reference.weights, learning_rate=lr, epochs=self.epochs,
            clip_epsilon=clip_eps, kl_coef=kl_coef, temperature=self.temperature,
            minibatch_size=self.minibatch_size, rng=rng,
        )
        m = out.metrics
        metrics: dict[str, float] = {
            "loss/train": m["loss"],
            "loss/entropy": m["entropy"],
            "loss/kl_div": m["kl"],
            "loss/grad_norm": m["grad_norm"],
            "loss/learning_rate": lr,
            "train/reward": stats.reward_mean,
            "train/reward_std_dev": stats.reward_std_dev,
            "data/step_num_groups_submitted": float(stats.groups_submitted),
            "data/step_num_groups_trainable": float(stats.groups_trainable),
            "data/step_num_trajectories": float(stats.trajectories),
            "offline/policy_loss": m["policy_loss"],
            "offline/clip_fraction": m["clip_fraction"],
            "offline/kl_new_old": m["kl_new_old"],
            # What was trained, under this backend's own names: it trains actions, not tokens.
            "offline/art_trainable_turns": float(stats.turns.choices),
            OFFLINE_TRAINED_KEY: float(stats.turns.trainable),
            "offline/turns_unmappable_no_market_state": float(stats.turns.no_market_state),
            "offline/turns_unmappable_response": float(stats.turns.unparseable),
            "offline/turns_unmappable_no_candidate": float(stats.turns.no_candidate),
            "offline/turns_not_trainable_by_art": float(stats.turns.not_trainable_by_art),
            "offline/groups_skipped_equal_reward": float(stats.groups_skipped_equal_reward),
            "offline/optimizer_steps": float(out.optimizer_steps),
            "offline/requested_learning_rate": learning_rate,
        }
        metrics["time/step_backend_train_s"] = time.perf_counter() - t0
        step = parent + 1
        config = {"epochs": self.epochs, "clip_epsilon": clip_eps, "kl_coef": kl_coef,
                  "learning_rate": lr, "minibatch_size": self.minibatch_size, "seed": self.seed}
        self._write_checkpoint(
            project, run, step, out.weights, self._meta(model, project, run, step, parent, metrics, {"config": config})
        )
        return step, metrics

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this OfflineBackend is closed")
