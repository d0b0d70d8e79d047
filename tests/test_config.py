from __future__ import annotations

import pytest
from pydantic import ValidationError

from babylon_console.core.config import AlarmSettings, GateSettings, Settings, describe_dsn, masked_dsn

SECRET = "hunter2-very-secret"


def test_secrets_never_appear_in_repr_or_public_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://game:{SECRET}@db.example:5433/babylon")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = Settings()
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    view = settings.public_view()
    assert SECRET not in str(view)
    assert view["database_url"] == "postgresql://game:***@db.example:5433/babylon"
    assert view["wandb_api_key"] == "set" and view["openai_api_key"] == "set"
    assert settings.wandb_api_key is not None and settings.wandb_api_key.get_secret_value() == SECRET


def test_env_file_and_flag_overrides(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "custom.env"
    env.write_text("BABYLON_MIN_AGENTS=7\nBABYLON_JUDGE=ruler\n")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.min_agents == 7 and settings.judge == "ruler"
    assert settings.with_overrides(min_agents=3, judge=None).min_agents == 3
    with pytest.raises(ValidationError, match="min_agents"):
        settings.with_overrides(min_agents=0)


def test_bad_values_fail_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings()
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert Settings().database_url is None  # blank means embedded
    monkeypatch.setenv("BABYLON_BACKEND", "gpu-farm")
    with pytest.raises(ValidationError, match="BABYLON_BACKEND"):
        Settings()


def test_dsn_helpers() -> None:
    assert masked_dsn("postgresql://u:p@h:1/d") == "postgresql://u:***@h:1/d"
    assert masked_dsn("postgresql://u@h/d") == "postgresql://u@h/d"
    assert describe_dsn("postgresql://u:p@h:1/d") == ("h:1", "d")
    assert describe_dsn("postgresql://postgres:@/babylon?host=/tmp/x") == ("/tmp/x", "babylon")


def test_the_gate_is_declared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings' BABYLON_GATE_* fields take their default and bounds from GateSettings, so the gate a
    command builds from the environment and the gate's own defaults cannot drift apart."""
    gate_fields = [n for n in Settings.model_fields if n.startswith("gate_")]
    assert {"gate_min_windows", "gate_alpha", "gate_horizon", "gate_max_error_rate"} <= set(gate_fields)
    for field in gate_fields:
        name = field.removeprefix("gate_")
        declared, read = GateSettings.model_fields[name], Settings.model_fields[field]
        assert (read.default, read.metadata) == (declared.default, declared.metadata), name
        assert read.validation_alias == f"BABYLON_GATE_{name.upper()}"
    assert Settings().gate() == GateSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("BABYLON_GATE_MIN_WINDOWS", "1")  # one paired window is no interval
    with pytest.raises(ValidationError, match="BABYLON_GATE_MIN_WINDOWS"):
        Settings()  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="min_windows"):
        GateSettings(min_windows=1)


def test_every_alarm_setting_is_declared_once_and_read_from_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, declared in AlarmSettings.model_fields.items():
        read = Settings.model_fields[f"alarm_{name}"]
        assert (read.default, read.metadata) == (declared.default, declared.metadata), name
        assert read.validation_alias == f"BABYLON_ALARM_{name.upper()}"
    assert Settings().alarms() == AlarmSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("BABYLON_ALARM_MIN_RANK_CORRELATION", "0.5")
    assert Settings().alarms().min_rank_correlation == 0.5  # type: ignore[call-arg]
    monkeypatch.setenv("BABYLON_ALARM_ACTION_SHARE", "1.5")  # a share above 1 never fires: refused
    with pytest.raises(ValidationError, match="BABYLON_ALARM_ACTION_SHARE"):
        Settings()  # type: ignore[call-arg]
