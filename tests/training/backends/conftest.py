"""Shared fixtures: simulated windows shaped as the engine's trajectory groups."""

from __future__ import annotations

import os
from typing import Any

import pytest

from babylon_console.core.sim.policy import LinearSoftmaxPolicy
from babylon_console.core.sim.simulation import Simulation

from . import simdata
from .simdata import simulate, window_group

# model.log pulls in litellm, which otherwise tries to download its model price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session", autouse=True)
def _tokenizer_for_simdata(tokenizer_dir: Any) -> None:
    simdata.TOKENIZER_DIR[:] = [tokenizer_dir]


@pytest.fixture(scope="session")
def sim_groups(_tokenizer_for_simdata: None) -> list[Any]:
    """Three windows of 8 exploring (step-0, uniform) agents, 20 steps each, rewarded by P&L rank."""
    sim = Simulation(seed=5, n_agents=8, policies={i: LinearSoftmaxPolicy.zeros() for i in range(8)})
    return [window_group(r) for r in simulate(sim, 3)]


@pytest.fixture
def art_model() -> Any:
    import art

    return art.TrainableModel(
        name="offline-test", project="babylon", base_model="sim/linear-softmax", run_name="run-1",
        report_metrics=[],
    )
