"""The engine settings the console passes are typed: a misspelt or mistyped one fails where it is
written, every one is a field the engine's `EngineConfig` takes, and an unset one is the configured one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from babylon_console.core.config import Settings
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.tui.dialogs.engine import INT_FIELDS
from babylon_console.tui.runners.demo import engine_overrides_for_demo
from babylon_console.tui.runners.engine import EngineOverrides


def test_every_override_is_a_field_of_the_engines_config() -> None:
    assert set(EngineOverrides.model_fields) <= set(EngineConfig.model_fields)
    assert {name for name, _label, _minimum in INT_FIELDS} <= set(EngineOverrides.model_fields)


def test_a_misspelt_or_mistyped_override_fails_where_it_is_written() -> None:
    with pytest.raises(ValidationError, match="min_agent"):
        EngineOverrides(min_agent=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="judge"):
        EngineOverrides(judge="rulr")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="min_agents"):
        EngineOverrides(min_agents="3")  # type: ignore[arg-type]


def test_unset_overrides_are_the_configured_settings_and_iterations_none_is_continuous(tmp_path: Path) -> None:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path), BABYLON_MIN_AGENTS="7")  # type: ignore[call-arg]
    continuous = EngineConfig.from_settings(settings, **EngineOverrides(iterations=None, min_steps=2).given())
    assert (continuous.iterations, continuous.min_steps, continuous.min_agents) == (None, 2, 7)
    assert EngineConfig.from_settings(settings, **EngineOverrides().given()).iterations == 1


def test_later_overrides_win_and_earlier_ones_stay() -> None:
    merged = EngineOverrides(backend="offline", min_agents=5).merged(EngineOverrides(min_agents=3, iterations=None))
    assert merged.given() == {"backend": "offline", "min_agents": 3, "iterations": None}


def test_the_demos_overrides_make_an_engine_config(tmp_path: Path) -> None:
    settings = Settings(BABYLON_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]
    config = EngineConfig.from_settings(settings, **engine_overrides_for_demo(10.0).given())
    assert (config.iterations, config.poll_seconds, config.auto_rollback, config.eval_every) == (None, 2.5, True, 5)
