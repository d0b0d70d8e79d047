"""The offline backend: ART protocol, checkpoints on disk, resume, names, and ART integration."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from babylon_console.core.names import offline_name, parse_offline_name
from babylon_console.core.sim.actions import FEATURE_DIM
from babylon_console.core.sim.policy import CheckpointError, LinearSoftmaxPolicy
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.training.backends import offline as offline_mod
from babylon_console.core.training.backends.empty_step import NothingTrained
from babylon_console.core.training.backends.offline import LABEL, OfflineBackend

from .simdata import simulate

TRAIN_KW: dict[str, Any] = {"learning_rate": 1e-5, "allow_training_without_logprobs": True}

ART_METRICS = {
    "loss/train", "loss/entropy", "loss/kl_div", "loss/grad_norm", "loss/learning_rate", "train/reward",
    "train/reward_std_dev", "data/step_num_groups_submitted", "data/step_num_groups_trainable",
    "data/step_num_trajectories", "offline/clip_fraction", "offline/art_trainable_turns", "offline/actions_trained",
    "offline/turns_unmappable_no_market_state", "offline/turns_unmappable_response",
    "offline/turns_unmappable_no_candidate", "offline/turns_not_trainable_by_art",
}


def test_importing_the_backend_does_not_import_art() -> None:
    code = (
        "import sys, babylon_console.core.training.backends.offline, babylon_console.core.training.backends.grpo; "
        "print(sorted(m for m in sys.modules if m == 'art' or m.startswith('art.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_register_writes_the_initial_policy(tmp_path: Path, art_model: Any) -> None:
    backend = OfflineBackend(tmp_path / "art")
    await art_model.register(backend)
    assert art_model.base_path == str((tmp_path / "art").resolve())
    assert await art_model.get_step() == 0
    assert art_model.inference_model_name == "offline://babylon/run-1"
    assert art_model.get_inference_name(step=0) == "offline://babylon/run-1:step0"
    ck = tmp_path / "art" / "babylon" / "models" / "run-1" / "checkpoints" / "0000"
    assert (ck / "policy.json").is_file()
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["step"] == 0 and meta["parent_step"] is None and meta["label"] == LABEL
    p = backend.load_policy(art_model, 0)
    np.testing.assert_array_equal(p.weights, np.zeros(FEATURE_DIM))  # uniform over candidates
    await art_model.register(backend)  # idempotent
    assert backend.steps(art_model) == [0]


async def test_train_saves_the_next_step_and_returns_art_metrics(
    tmp_path: Path, art_model: Any, sim_groups: list[Any]
) -> None:
    from art.types import TrainResult

    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    result = await backend.train(art_model, sim_groups, **TRAIN_KW)
    assert isinstance(result, TrainResult) and result.step == 1
    assert set(result.metrics) >= ART_METRICS
    m = result.metrics
    assert m["data/step_num_groups_submitted"] == 3 and m["data/step_num_groups_trainable"] == 3
    assert m["data/step_num_trajectories"] == 24
    assert m["offline/actions_trained"] == m["offline/art_trainable_turns"] == 3 * 8 * 20
    assert m["offline/turns_unmappable_response"] == m["offline/turns_not_trainable_by_art"] == 0
    # It trains actions, not tokens: ART's token count is not claimed.
    assert "data/step_trainable_assistant_tokens" not in m
    assert m["loss/learning_rate"] == pytest.approx(1e-5 * backend.lr_scale)
    assert m["train/reward"] == pytest.approx(0.5)  # rank rewards average 0.5
    assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    assert await art_model.get_step() == 1
    meta = backend.read_meta("offline://babylon/run-1:step1")
    assert meta["parent_step"] == 0 and meta["metrics"]["loss/train"] == pytest.approx(m["loss/train"])
    assert not np.allclose(backend.load_policy(art_model).weights, 0.0)


async def test_train_requires_allow_training_without_logprobs(
    tmp_path: Path, art_model: Any, sim_groups: list[Any]
) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    with pytest.raises(ValueError, match="allow_training_without_logprobs=True"):
        await backend.train(art_model, sim_groups, learning_rate=1e-5)
    with pytest.raises(ValueError, match="learning_rate"):
        await backend.train(art_model, sim_groups, learning_rate=0.0, allow_training_without_logprobs=True)
    assert backend.steps(art_model) == [0]


async def test_a_step_that_trains_nothing_is_not_a_checkpoint(
    tmp_path: Path, art_model: Any, sim_groups: list[Any]
) -> None:
    import art

    flat = art.TrajectoryGroup([t.model_copy(update={"reward": 0.5}) for t in sim_groups[0]])
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    with pytest.raises(NothingTrained, match="equal rewards"):
        await backend.train(art_model, [flat], **TRAIN_KW)
    plain = art.TrajectoryGroup([  # plain-dict assistant turns: ART would train nothing, so nothing here
        art.Trajectory(messages_and_choices=[m for m in t.messages_and_choices if isinstance(m, dict)]
                       + [{"role": "assistant", "content": t.messages_and_choices[-1].message.content}],
                       reward=t.reward) for t in sim_groups[0]])
    with pytest.raises(NothingTrained, match=r"no turn ART would train .* without token ids"):
        await backend.train(art_model, [plain], **TRAIN_KW)
    assert backend.steps(art_model) == [0]  # no checkpoint written
    np.testing.assert_array_equal(backend.load_policy(art_model).weights, np.zeros(FEATURE_DIM))


async def test_a_new_backend_on_the_same_path_resumes(tmp_path: Path, art_model: Any, sim_groups: list[Any]) -> None:
    b1 = OfflineBackend(tmp_path)
    await art_model.register(b1)
    await b1.train(art_model, sim_groups[:2], **TRAIN_KW)
    await b1.train(art_model, sim_groups[1:], **TRAIN_KW)
    w2 = b1.load_policy(art_model).weights
    await b1.close()

    import art

    again = art.TrainableModel(name="x", project="babylon", base_model="sim/linear-softmax", run_name="run-1",
                               report_metrics=[])
    b2 = OfflineBackend(tmp_path)
    await again.register(b2)
    assert await again.get_step() == 2
    r = await b2.train(again, sim_groups, **TRAIN_KW)
    assert r.step == 3
    assert b2.read_meta(again, 3)["parent_step"] == 2
    np.testing.assert_array_equal(b2.load_policy(again, 2).weights, w2)


async def test_a_crash_mid_write_leaves_no_checkpoint(
    tmp_path: Path, art_model: Any, sim_groups: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    ckdir = backend.checkpoints_dir(art_model)

    def boom(*a: Any, **k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(offline_mod, "_atomic_write", boom)  # policy.json written, meta.json fails
    with pytest.raises(OSError, match="disk full"):
        await backend.train(art_model, sim_groups, **TRAIN_KW)
    monkeypatch.undo()
    assert await art_model.get_step() == 0
    assert sorted(p.name for p in ckdir.iterdir()) == ["0000"]

    # A half-written directory from a killed process (no rename happened) is never counted...
    stale = ckdir / ".tmp-0001-deadbeef"
    stale.mkdir()
    LinearSoftmaxPolicy.zeros().save(stale / "policy.json")
    (ckdir / "0002").mkdir()  # ...nor is a step directory without a policy file
    assert await art_model.get_step() == 0
    await art_model.register(backend)  # and register sweeps temp leftovers
    assert not stale.exists()
    r = await backend.train(art_model, sim_groups, **TRAIN_KW)
    assert r.step == 1
    r = await backend.train(art_model, sim_groups, **TRAIN_KW)  # the empty 0002 does not block step 2
    assert r.step == 2 and backend.steps(art_model) == [0, 1, 2]


async def test_delete_checkpoint_files_keeps_requested_reference_and_latest(
    tmp_path: Path, art_model: Any, sim_groups: list[Any]
) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    for _ in range(4):
        await backend.train(art_model, sim_groups[:1], **TRAIN_KW)
    assert backend.steps(art_model) == [0, 1, 2, 3, 4]
    await backend._delete_checkpoint_files(art_model, [2])
    assert backend.steps(art_model) == [0, 2, 4]  # step 0 is the KL reference, 4 is where training resumes
    assert not any(p.name.startswith(".") for p in backend.checkpoints_dir(art_model).iterdir())
    assert (await backend.train(art_model, sim_groups[:1], **TRAIN_KW)).step == 5


async def test_load_policy_from_an_inference_name_drives_simulator_agents(
    tmp_path: Path, art_model: Any, sim_groups: list[Any]
) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    await backend.train(art_model, sim_groups, **TRAIN_KW)
    name = backend._model_inference_name(art_model, 1)
    assert name == "offline://babylon/run-1:step1"
    policy = OfflineBackend(tmp_path).load_policy(name)  # e.g. from a promoted trained_models.storagePath
    assert policy.model == name
    np.testing.assert_array_equal(policy.weights, backend.load_policy(art_model, 1).weights)
    assert backend.load_policy("offline://babylon/run-1").model == name  # no step: the latest
    assert backend.checkpoint_path(name) == backend.checkpoint_path(("babylon", "run-1"), 1)
    sim = Simulation(seed=3, n_agents=2, policies={0: policy})
    result = simulate(sim, 1)[0]
    assert {row[6] for row in result.llm_calls if row[1].endswith("-00000")} == {name}


async def test_bad_names_give_clear_errors(tmp_path: Path, art_model: Any) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    with pytest.raises(ValueError, match="not an offline checkpoint name"):
        backend.load_policy("wandb-artifact:///ent/proj/run:step3")
    with pytest.raises(ValueError, match="expected 'offline://<project>/<run_name>:step<N>'"):
        backend.load_policy("offline://babylon")
    with pytest.raises(ValueError, match="not an offline checkpoint name"):
        backend.load_policy("offline://babylon/run-1:latest")
    with pytest.raises(ValueError, match="cannot name an offline checkpoint directory"):
        backend.load_policy("offline://../run-1:step0")
    with pytest.raises(CheckpointError, match=r"offline://babylon/run-1:step7 does not exist.*steps: 0\.\.0"):
        backend.load_policy("offline://babylon/run-1:step7")
    with pytest.raises(CheckpointError, match="no offline checkpoints for offline://babylon/other"):
        backend.load_policy("offline://babylon/other")
    with pytest.raises(CheckpointError, match="does not exist"):
        async with backend.exact_adapter_lease(art_model, 9):
            pass
    async with backend.exact_adapter_lease(art_model, 0):
        pass


def test_inference_names_round_trip() -> None:
    assert parse_offline_name(offline_name("p", "r.1", 12)) == ("p", "r.1", 12)
    assert parse_offline_name("offline://p/r") == ("p", "r", None)


async def test_protocol_odds_and_ends(tmp_path: Path, art_model: Any) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    base_url, key = await backend._prepare_backend_for_training(art_model, None)
    assert base_url.startswith("http://") and ".invalid" in base_url and key
    with pytest.raises(NotImplementedError, match="GRPO"):
        async for _ in backend._train_sft(art_model, [], None, None):
            pass
    await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.train(art_model, [], **TRAIN_KW)


async def test_training_runs_off_the_event_loop(
    tmp_path: Path, art_model: Any, sim_groups: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    seen: list[str] = []
    real = offline_mod.build_batch

    def spy(groups: Any) -> Any:
        seen.append(threading.current_thread().name)
        time.sleep(0.2)  # a slow step must not stall the loop
        return real(groups)

    monkeypatch.setattr(offline_mod, "build_batch", spy)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await backend.train(art_model, sim_groups, **TRAIN_KW)
    task.cancel()
    assert seen and seen[0] != threading.main_thread().name
    assert ticks >= 10


async def test_one_group_trains_in_well_under_a_second(tmp_path: Path, art_model: Any, sim_groups: list[Any]) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    await backend.train(art_model, sim_groups[:1], **TRAIN_KW)  # warm-up (imports)
    t = time.perf_counter()
    r = await backend.train(art_model, sim_groups[:1], **TRAIN_KW)  # 8 trajectories x 20 steps
    elapsed = time.perf_counter() - t
    assert r.metrics["offline/actions_trained"] == 160
    assert elapsed < 0.5, elapsed


async def test_art_model_log_records_the_step(tmp_path: Path, art_model: Any, sim_groups: list[Any]) -> None:
    backend = OfflineBackend(tmp_path)
    await art_model.register(backend)
    result = await backend.train(art_model, sim_groups, **TRAIN_KW)
    await art_model.log(sim_groups, split="train", metrics=result.metrics, step=result.step)
    run_dir = backend.run_dir("babylon", "run-1")
    lines = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert last["step"] == 1
    for key in ("loss/train", "loss/entropy", "loss/kl_div", "loss/grad_norm", "train/reward"):
        assert key in last, key
    # `offline` is not one of ART's metric sections, so model.log files these under the split.
    assert last["train/offline/clip_fraction"] == pytest.approx(result.metrics["offline/clip_fraction"])
    assert last["train/reward"] == pytest.approx(result.metrics["train/reward"])
    assert (run_dir / "trajectories" / "train" / "0001.parquet").is_file()  # pyarrow is installed
