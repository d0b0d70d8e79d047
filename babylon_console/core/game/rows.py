"""Pydantic models of the game's rows, read leniently (DESIGN section 3).

Real game data is messy: steps without `llmCalls`, `purpose` values beyond the usual four, missing
optional keys, extra keys, nulls where lists are expected. The models accept all of that; what
cannot be used at all (wrong types, non-finite rewards) fails validation and is turned into a
`Rejection` with a reason by `parsing.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..jsonvalue import decoded


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_dict(value: Any) -> Any:
    return {} if value is None else value


def _json_text(value: Any) -> Any:
    """asyncpg returns jsonb as text unless a codec is set: decode it here, once (invalid text is kept)."""
    return decoded(value, on_error=lambda text: text)


JsonValue = Annotated[Any, BeforeValidator(_json_text)]
LenientList = BeforeValidator(_none_to_list)
LenientDict = BeforeValidator(_none_to_dict)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class GameModel(BaseModel):
    """camelCase aliases as the game writes them; unknown keys ignored; snake_case accepted too."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
        ser_json_inf_nan="null",
    )


class LLMCall(GameModel):
    model: str | None = None
    system_prompt: str | None = None
    user_prompt: str | None = None
    response: str | None = None
    reasoning: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    latency_ms: float | None = None
    purpose: str | None = None  # action, reasoning, evaluation, response, ... or anything else
    action_type: str | None = None


class ProviderAccess(GameModel):
    provider_name: str | None = None
    data: Any = None
    purpose: str | None = None


class EnvironmentState(GameModel):
    model_config = ConfigDict(extra="allow")

    agent_balance: float | None = None
    agent_pnl: float | None = Field(default=None, alias="agentPnL")
    open_positions: int | None = None
    active_markets: int | None = None


class StepAction(GameModel):
    action_type: str | None = None
    parameters: Annotated[dict[str, Any], LenientDict] = Field(default_factory=dict)
    success: bool | None = None
    result: Any = None
    error: Any = None
    reasoning: str | None = None


class Step(GameModel):
    step_number: int
    timestamp: int | None = None
    environment_state: EnvironmentState | None = None
    provider_accesses: Annotated[list[ProviderAccess], LenientList] = Field(default_factory=list)
    llm_calls: Annotated[list[LLMCall], LenientList] = Field(default_factory=list)
    action: StepAction | None = None
    reward: Annotated[FiniteFloat, BeforeValidator(lambda v: 0.0 if v is None else v)] = 0.0


class Trajectory(GameModel):
    """One `trajectories` row with its JSON columns parsed."""

    id: str
    trajectory_id: str
    agent_id: str
    window_id: str | None = None
    start_time: datetime
    end_time: datetime
    duration_ms: int | None = None
    episode_id: str | None = None
    scenario_id: str | None = None
    batch_id: str | None = None
    steps: list[Step]
    reward_components: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    total_reward: FiniteFloat
    episode_length: int
    final_status: str | None = None
    final_balance: FiniteFloat | None = None
    final_pnl: FiniteFloat | None = Field(default=None, alias="finalPnL")
    trades_executed: int | None = None
    posts_created: int | None = None
    ai_judge_reward: FiniteFloat | None = None
    ai_judge_reasoning: str | None = None
    used_in_training: bool = False
    trained_in_batch: str | None = None

    @property
    def llm_call_count(self) -> int:
        return sum(len(step.llm_calls) for step in self.steps)

    @property
    def error_count(self) -> int:
        return sum(1 for s in self.steps if s.action is not None and s.action.success is False)


class Rejection(BaseModel):
    """A row that could not be used, and why. Reported, never raised through, never dropped silently."""

    trajectory_id: str | None
    window_id: str | None
    reason: str


class MarketOutcome(GameModel):
    """A `market_outcomes` row: a stock row or a prediction-market row."""

    id: str
    window_id: str
    stock_ticker: str | None = None
    start_price: Decimal | None = None
    end_price: Decimal | None = None
    change_percent: Decimal | None = None
    sentiment: str | None = None
    news_events: JsonValue = None
    prediction_market_id: str | None = None
    question: str | None = None
    outcome: str | None = None
    final_probability: Decimal | None = None
    volume: Decimal | None = None

    @property
    def is_stock(self) -> bool:
        return self.stock_ticker is not None


class WindowGroundTruth(BaseModel):
    """What the markets actually did in one window (DESIGN section 1.2)."""

    window_id: str
    stocks: list[MarketOutcome] = Field(default_factory=list)
    predictions: list[MarketOutcome] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.stocks and not self.predictions


class TrainingBatch(GameModel):
    id: str
    batch_id: str
    scenario_id: str | None = None
    base_model: str
    model_version: str
    trajectory_ids: Any = None
    rewards_json: Any = None
    rankings_json: Any = None
    training_loss: float | None = None
    policy_improvement: float | None = None
    status: str
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class TrainedModel(GameModel):
    id: str
    model_id: str
    version: str
    base_model: str
    training_batch: str | None = None
    status: str
    deployed_at: datetime | None = None
    archived_at: datetime | None = None
    storage_path: str
    benchmark_score: float | None = None
    accuracy: float | None = None
    avg_reward: float | None = None
    eval_metrics: JsonValue = None
    wandb_run_id: str | None = None
    agents_using: int = 0
    total_inferences: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def market_time(self) -> datetime | None:
        """The market's time when the step was registered (`evalMetrics.marketTime`, written in a
        simulated database); None when not recorded. `created_at` is the wall-clock registration."""
        metrics = self.eval_metrics if isinstance(self.eval_metrics, dict) else {}
        value = metrics.get("marketTime")
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One LLM request the agent made, as recorded (texts only)."""

    step_number: int
    system_prompt: str
    user_prompt: str
    response: str
    purpose: str | None = None
    action_type: str | None = None
