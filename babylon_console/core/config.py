"""Typed settings from environment variables and `.env`, overridable by command-line flags.

Secrets are `SecretStr`, so they print as `**********` in every repr, log line and CLI output;
`masked_dsn` renders a database URL with its password hidden.

The training engine's tunables are declared once, in `EngineSettings`: `Settings` reads them from
the environment (their `BABYLON_*` names), the engine's per-run `EngineConfig` takes them by field
name. The rollout gate's settings (`GateSettings`), the training health alarms' (`AlarmSettings`)
and a window's readiness criteria (`ReadinessCriteria`) are declared here too. This module imports
nothing of the project.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

JudgeName = Literal["ruler", "outcome"]
BackendName = Literal["serverless", "local", "offline"]
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"  # a path component of checkpoint trees and W&B runs


def default_data_dir() -> Path:
    return platformdirs.user_data_path("babylon-console", appauthor=False)


class EngineSettings(BaseModel):
    """The training engine's tunables, each declared once with its default, its bounds and its
    environment name (`Settings` reads that name; `EngineConfig` validates by field name only)."""

    model_name: str = Field(default="babylon-agent", pattern=MODEL_NAME_PATTERN, validation_alias="BABYLON_MODEL_NAME")
    backend: BackendName = Field(default="offline", validation_alias="BABYLON_BACKEND")
    base_model: str = Field(default="OpenPipe/Qwen3-14B-Instruct", validation_alias="BABYLON_BASE_MODEL")
    allow_unlisted_base_model: bool = Field(default=False, validation_alias="BABYLON_ALLOW_UNLISTED_BASE_MODEL")
    judge: JudgeName = Field(default="outcome", validation_alias="BABYLON_JUDGE")
    judge_concurrency: int = Field(default=4, ge=1, le=64, validation_alias="BABYLON_JUDGE_CONCURRENCY")
    learning_rate: float = Field(default=1e-5, gt=0, lt=1, validation_alias="BABYLON_LEARNING_RATE")
    max_seq_length: int = Field(default=32_768, ge=64, validation_alias="BABYLON_MAX_SEQ_LENGTH")
    # which windows are ready (`ReadinessCriteria`), how far back to look, what one step takes
    min_agents: int = Field(default=5, ge=1, validation_alias="BABYLON_MIN_AGENTS")
    min_steps: int = Field(default=1, ge=1, validation_alias="BABYLON_MIN_STEPS")
    settle_seconds: int = Field(default=300, ge=0, validation_alias="BABYLON_SETTLE_SECONDS")
    lookback_hours: int = Field(default=168, ge=1, validation_alias="BABYLON_LOOKBACK_HOURS")
    windows_per_iteration: int = Field(default=4, ge=1, validation_alias="BABYLON_WINDOWS_PER_ITERATION")
    max_per_group: int = Field(default=8, ge=2, validation_alias="BABYLON_MAX_PER_GROUP")
    target_trajectories: int = Field(default=2000, ge=1, validation_alias="BABYLON_TARGET_TRAJECTORIES")
    max_dropout: float = Field(default=0.5, ge=0, lt=1, validation_alias="BABYLON_MAX_DROPOUT")
    # each stage's deadline, and the run's heartbeat
    read_timeout_s: float = Field(default=300.0, gt=0, validation_alias="BABYLON_READ_TIMEOUT_S")
    judge_timeout_s: float = Field(default=600.0, gt=0, validation_alias="BABYLON_JUDGE_TIMEOUT_S")
    train_timeout_s: float = Field(default=3600.0, gt=0, validation_alias="BABYLON_TRAIN_TIMEOUT_S")
    register_timeout_s: float = Field(default=120.0, gt=0, validation_alias="BABYLON_REGISTER_TIMEOUT_S")
    heartbeat_s: float = Field(default=5.0, gt=0, validation_alias="BABYLON_HEARTBEAT_S")
    holdout_share: float | None = Field(
        default=None, ge=0, lt=1, validation_alias="BABYLON_HOLDOUT_SHARE",
        description="Only checked: the hold-out is the database's record (`babylon-console holdout`); a value "
                    "given here that disagrees with it is refused at start. Unset: not checked.")
    eval_every: int = Field(default=0, ge=0, validation_alias="BABYLON_EVAL_EVERY",
                            description="The engine evaluates every k-th checkpoint on held-out windows (0: never).")
    auto_rollback: bool = Field(default=False, validation_alias="BABYLON_AUTO_ROLLBACK",
                                description="The engine rolls a rollout back when the gate says so.")
    pause_on_alarm: bool = Field(default=False, validation_alias="BABYLON_PAUSE_ON_ALARM",
                                 description="The engine pauses itself when a training health alarm fires.")

    @field_validator("base_model")
    @classmethod
    def _base_model_named(cls, value: str) -> str:
        return require_base_model(value)


class GateSettings(BaseModel):
    """The rollout gate (`core.checkpoints.evidence`): when the live A/B readout says promote or roll back."""

    min_windows: int = Field(default=3, ge=2, description="Paired windows before any verdict.")
    promote_after: int = Field(default=1, ge=1,
                               description='Consecutive windows with the anytime-valid lower bound above zero '
                                           'before "promote" (1: the first; the bound holds at every look).')
    alpha: float = Field(default=0.05, gt=0, le=0.2, description="Error rate of each one-sided anytime-valid "
                         "bound the gate reads (promotion's lower, rollback's upper): the chance it ever wrongly "
                         "excludes zero, over all looks together.")
    horizon: float = Field(default=10.0, ge=2, le=1000, description="Paired windows at which the held-out "
                           "verdict's Student-t sequence is tuned to be narrowest (the mixture's tuning horizon).")
    max_drawdown: float = Field(default=0.5, gt=0, le=1, description="The candidate's mean max drawdown "
                                "(a fraction of its peak) that rolls it back.")
    share_tolerance: float = 0.15  # served share vs asked share, absolute, before a warning
    max_error_rate: float = Field(default=0.05, gt=0, le=1, description="The candidate's share of 5xx answers "
                                  "through the gateway that rolls it back.")
    min_requests: int = Field(default=50, ge=1,
                              description="Gateway requests of the candidate before its error rate counts.")


def _setting_of(declaring: type[BaseModel], name: str, env: str) -> Any:
    """A `Settings` field for one setting of `declaring` (`GateSettings`, `AlarmSettings`), read from `env`:
    its default, bounds and description are the ones `declaring` gives (declared once)."""
    declared = declaring.model_fields[name]
    bounds = {f.name: getattr(m, f.name) for m in declared.metadata for f in dataclasses.fields(m)}
    return Field(default=declared.default, validation_alias=env, description=declared.description, **bounds)


class AlarmSettings(BaseModel):
    """Training health alarms (`core.training.alarms`): when a trained step's figures say training is
    going wrong. A rule whose figure is missing does not fire."""

    min_history: int = Field(default=5, ge=2, description="Earlier steps a rule compares with before it may fire "
                             "(KL spike, entropy collapse, tokens blow-up).")
    recent_steps: int = Field(default=20, ge=2, description="Earlier steps whose median the newest step is "
                              "compared with (KL spike, tokens blow-up).")
    kl_z: float = Field(default=6.0, gt=0, description="KL spike: robust z-score (median and MAD of the recent "
                        "steps) above which the step's KL fires.")
    entropy_fraction: float = Field(default=0.25, gt=0, lt=1, description="Entropy collapse: entropy below this "
                                    "fraction of its early level (median of the first steps).")
    action_share: float = Field(default=0.95, gt=0, le=1, description="Action collapse: one action kind's share "
                                "of the trained calls at or above this.")
    min_action_calls: int = Field(default=20, ge=1, description="Trained calls a step needs before its action mix "
                                  "can collapse.")
    tokens_ratio: float = Field(default=3.0, gt=1, description="Tokens blow-up: trained tokens per call above this "
                                "multiple of the recent median.")
    zero_spread_share: float = Field(default=0.5, gt=0, le=1, description="Share of a step's groups with no reward "
                                     "spread (no gradient) at or above which it fires.")
    min_rank_correlation: float = Field(default=0.2, ge=-1, le=1, description="Judge disagrees: rolling mean rank "
                                        "correlation between judge scores and realised P&L below this.")
    rolling_windows: int = Field(default=12, ge=1, description="Windows the rolling rank correlation averages.")
    min_rolling_windows: int = Field(default=4, ge=1, description="Windows the rolling rank correlation needs.")
    trend_steps: int = Field(default=6, ge=3, description="Steps the trends (least-squares slopes) are fitted on.")
    judge_rise: float = Field(default=0.02, gt=0, description="Judge diverges: the judge's mean score rising at "
                              "least this much per step (scores 0 to 1) ...")
    pnl_flat: float = Field(default=0.0, description="... while realised mean P&L's slope per step is at or "
                            "below this (flat or falling).")


class ReadinessCriteria(BaseModel):
    """What a window needs to be ready to train on (`core.game.windows.assess`)."""

    min_agents: int = Field(default=5, ge=1)
    min_steps: int = Field(default=1, ge=1)
    settle_seconds: int = Field(default=300, ge=0)
    holdout_share: float = Field(default=0.0, ge=0, lt=1)  # windows reserved for evaluation (`held_out`)


class Settings(EngineSettings, BaseSettings):
    """Every key is listed with a comment in `.env.example`; the engine's keys are `EngineSettings`'."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; unset means the embedded server in data_dir."
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias="BABYLON_DATA_DIR",
        description="Where the embedded database, checkpoints and settings live.",
    )
    embedded_database: str = Field(
        default="babylon",
        validation_alias="BABYLON_EMBEDDED_DATABASE",
        description="Database name inside the embedded server.",
    )

    wandb_api_key: SecretStr | None = None
    wandb_entity: str | None = None
    wandb_project: str = "babylon-console"
    openai_api_key: SecretStr | None = None

    judge_model: str = Field(default="openai/o4-mini", validation_alias="BABYLON_JUDGE_MODEL")
    judge_base_url: str | None = Field(default=None, validation_alias="BABYLON_JUDGE_BASE_URL")

    tokenizer: str | None = Field(
        default=None, validation_alias="BABYLON_TOKENIZER",
        description="Tokenizer for trainable turns: a Hugging Face id or a local directory (default: the base "
                    "model's; on the offline backend, a stand-in built under data_dir).",
    )
    serverless_base_url: str | None = Field(default=None, validation_alias="BABYLON_SERVERLESS_BASE_URL")
    # the rollout gate (core/checkpoints/evidence.py): verdicts from the live A/B readout
    gate_min_windows: int = _setting_of(GateSettings, "min_windows", "BABYLON_GATE_MIN_WINDOWS")
    gate_promote_after: int = _setting_of(GateSettings, "promote_after", "BABYLON_GATE_PROMOTE_AFTER")
    gate_max_drawdown: float = _setting_of(GateSettings, "max_drawdown", "BABYLON_GATE_MAX_DRAWDOWN")
    gate_max_error_rate: float = _setting_of(GateSettings, "max_error_rate", "BABYLON_GATE_MAX_ERROR_RATE")
    gate_min_requests: int = _setting_of(GateSettings, "min_requests", "BABYLON_GATE_MIN_REQUESTS")
    gate_alpha: float = _setting_of(GateSettings, "alpha", "BABYLON_GATE_ALPHA")
    gate_horizon: float = _setting_of(GateSettings, "horizon", "BABYLON_GATE_HORIZON")
    # training health alarms (core/training/alarms.py)
    alarm_min_history: int = _setting_of(AlarmSettings, "min_history", "BABYLON_ALARM_MIN_HISTORY")
    alarm_recent_steps: int = _setting_of(AlarmSettings, "recent_steps", "BABYLON_ALARM_RECENT_STEPS")
    alarm_kl_z: float = _setting_of(AlarmSettings, "kl_z", "BABYLON_ALARM_KL_Z")
    alarm_entropy_fraction: float = _setting_of(AlarmSettings, "entropy_fraction", "BABYLON_ALARM_ENTROPY_FRACTION")
    alarm_action_share: float = _setting_of(AlarmSettings, "action_share", "BABYLON_ALARM_ACTION_SHARE")
    alarm_min_action_calls: int = _setting_of(AlarmSettings, "min_action_calls", "BABYLON_ALARM_MIN_ACTION_CALLS")
    alarm_tokens_ratio: float = _setting_of(AlarmSettings, "tokens_ratio", "BABYLON_ALARM_TOKENS_RATIO")
    alarm_zero_spread_share: float = _setting_of(AlarmSettings, "zero_spread_share", "BABYLON_ALARM_ZERO_SPREAD_SHARE")
    alarm_min_rank_correlation: float = _setting_of(AlarmSettings, "min_rank_correlation",
                                                    "BABYLON_ALARM_MIN_RANK_CORRELATION")
    alarm_rolling_windows: int = _setting_of(AlarmSettings, "rolling_windows", "BABYLON_ALARM_ROLLING_WINDOWS")
    alarm_min_rolling_windows: int = _setting_of(AlarmSettings, "min_rolling_windows",
                                                 "BABYLON_ALARM_MIN_ROLLING_WINDOWS")
    alarm_trend_steps: int = _setting_of(AlarmSettings, "trend_steps", "BABYLON_ALARM_TREND_STEPS")
    alarm_judge_rise: float = _setting_of(AlarmSettings, "judge_rise", "BABYLON_ALARM_JUDGE_RISE")
    alarm_pnl_flat: float = _setting_of(AlarmSettings, "pnl_flat", "BABYLON_ALARM_PNL_FLAT")
    # held-out evaluation of serverless / local checkpoints (core/checkpoints/prompt_eval.py)
    eval_prompts: int = Field(default=8, ge=1, le=200, validation_alias="BABYLON_EVAL_PROMPTS",
                              description="Recorded prompts replayed per held-out window (serverless / local).")
    eval_timeout_s: float = Field(
        default=60.0, gt=0, validation_alias="BABYLON_EVAL_TIMEOUT_S",
        description="Evaluation: one attempt of a request to a model's endpoint (3 attempts at most).")
    eval_deadline_s: float = Field(default=1800.0, gt=0, validation_alias="BABYLON_EVAL_DEADLINE_S",
                                   description="The engine's evaluation of a new checkpoint, all of it.")
    local_inference_url: str | None = Field(
        default=None, validation_alias="BABYLON_LOCAL_INFERENCE_URL",
        description="OpenAI-compatible server (vLLM) serving the local LoRA checkpoints under their storagePath.")
    local_inference_api_key: SecretStr | None = Field(default=None, validation_alias="BABYLON_LOCAL_INFERENCE_API_KEY")
    # the model gateway (`babylon-console gateway`, core/gateway)
    gateway_host: str = Field(default="127.0.0.1", validation_alias="BABYLON_GATEWAY_HOST",
                              description="Address the gateway binds; anything but loopback needs gateway keys.")
    gateway_port: int = Field(default=8787, ge=0, le=65535, validation_alias="BABYLON_GATEWAY_PORT")
    gateway_model: str = Field(default="babylon-agent", min_length=1, validation_alias="BABYLON_GATEWAY_MODEL",
                               description="The alias agents ask for: the live model, or the candidate for its "
                                           "share of agents during an A/B rollout.")
    gateway_keys: SecretStr | None = Field(
        default=None, validation_alias="BABYLON_GATEWAY_KEYS",
        description="Comma-separated keys clients send as `Authorization: Bearer <key>`.")
    gateway_timeout_s: float = Field(default=120.0, gt=0, validation_alias="BABYLON_GATEWAY_TIMEOUT_S",
                                     description="One upstream call (a stream: between two chunks).")
    gateway_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024,
                                        validation_alias="BABYLON_GATEWAY_MAX_BODY_BYTES")
    gateway_log_retention_days: float = Field(default=30.0, gt=0, validation_alias="BABYLON_GATEWAY_LOG_RETENTION_DAYS")

    @field_validator("database_url", "tokenizer", "serverless_base_url", "local_inference_url",
                     "local_inference_api_key", "holdout_share", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("gateway_keys", mode="before")
    @classmethod
    def _no_keys_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.replace(",", "").strip() else value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = urlsplit(value.get_secret_value()).scheme
            if scheme not in ("postgres", "postgresql"):
                raise ValueError(f"DATABASE_URL must start with postgresql:// (got scheme {scheme!r})")
        return value

    @model_validator(mode="after")
    def _expand_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def gate(self) -> GateSettings:
        """The rollout gate's settings."""
        return GateSettings(min_windows=self.gate_min_windows, promote_after=self.gate_promote_after,
                            max_drawdown=self.gate_max_drawdown, max_error_rate=self.gate_max_error_rate,
                            min_requests=self.gate_min_requests, alpha=self.gate_alpha,
                            horizon=self.gate_horizon)

    def alarms(self) -> AlarmSettings:
        """The training health alarms' settings."""
        return AlarmSettings(**{name: getattr(self, f"alarm_{name}") for name in AlarmSettings.model_fields})

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with command-line flags applied (None means 'flag not given'), re-validated."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        data = self.model_dump()
        data.update(given)
        return type(self).model_validate(data)

    def public_view(self) -> dict[str, Any]:
        """Settings as an operator may see them: secrets reduced to set/unset, DSN masked."""
        view: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                view[name] = masked_dsn(value.get_secret_value()) if name == "database_url" else "set"
            elif value is None and name.endswith(("_key", "_url")) and name != "judge_base_url":
                view[name] = "unset"
            else:
                view[name] = str(value) if isinstance(value, Path) else value
        return view


def require_base_model(value: str) -> str:
    """The base model's name, refused when blank: every trained_models row names its base model."""
    if not value.strip():
        raise ValueError("must name the base model, e.g. OpenPipe/Qwen3-14B-Instruct")
    return value


def masked_dsn(dsn: str) -> str:
    """The URL with any password replaced by `***` (user, host, port and database kept)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


def describe_dsn(dsn: str) -> tuple[str, str]:
    """(host, database) of a PostgreSQL URL, for one-line error messages."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host", ["localhost"])[0])
    if parts.port:
        host = f"{host}:{parts.port}"
    database = parts.path.lstrip("/") or (query.get("dbname", [""])[0]) or "postgres"
    return host, database
