"""What every judge takes and returns (DESIGN section 1.4), and the ground truth as readable text.

A judge scores one window's group of trajectories *relatively*: each trajectory gets a score in
[0, 1] and a written explanation, in the order of the input. `JudgeInput.messages` are the training
messages of the trajectories (built by the engine); they never contain ground truth, and no judge
may change them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, model_validator

from babylon_console.core.errors import Failed
from babylon_console.core.game.rows import MarketOutcome, Trajectory, WindowGroundTruth
from babylon_console.core.jsonvalue import decoded


class JudgeInput(BaseModel):
    """One window to judge: its ground truth, its trajectories and their training messages."""

    window_id: str
    ground_truth: WindowGroundTruth
    trajectories: list[Trajectory]
    messages: list[list[dict[str, Any]]]

    @model_validator(mode="after")
    def _one_message_list_per_trajectory(self) -> JudgeInput:
        if len(self.messages) != len(self.trajectories):
            raise ValueError(
                f"window {self.window_id}: {len(self.trajectories)} trajectories but "
                f"{len(self.messages)} message lists"
            )
        return self


class TrajectoryScore(BaseModel):
    trajectory_id: str
    score: float = Field(ge=0.0, le=1.0)
    explanation: str


class WindowJudgment(BaseModel):
    """A judge's verdict on one window; `scores` are in the order of `JudgeInput.trajectories`."""

    window_id: str
    judge: str
    judge_model: str | None = None
    scores: list[TrajectoryScore]
    cost_usd: float | None = None  # None when the cost is not known
    attempts: int = 1
    duration_s: float = 0.0


class JudgeError(Failed, RuntimeError):
    """A window could not be judged. The message says which window and why; secrets never appear."""

    title = "Judging failed"

    def __init__(self, window_id: str, reason: str, *, attempts: int = 0) -> None:
        super().__init__(f"window {window_id}: {reason}")
        self.window_id = window_id
        self.reason = reason
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_judge_error, (self.window_id, self.reason, self.attempts))


def _rebuild_judge_error(window_id: str, reason: str, attempts: int) -> JudgeError:
    return JudgeError(window_id, reason, attempts=attempts)


@runtime_checkable
class Judge(Protocol):
    name: str

    async def judge(self, item: JudgeInput) -> WindowJudgment: ...


# -- ground truth as text ----------------------------------------------------------------------

MAX_HEADLINES = 3
MAX_HEADLINE_CHARS = 140


def _num(value: Decimal | float | None, places: int = 2) -> str:
    return "?" if value is None else f"{float(value):.{places}f}"


def _signed_pct(value: Decimal | float | None) -> str:
    return "?" if value is None else f"{float(value):+.2f}%"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headlines(news_events: Any) -> list[str]:
    """News headlines from a `newsEvents` value: a JSON list of strings or of objects, or JSON text."""
    # text that is not JSON is one headline
    value = decoded(news_events, on_error=lambda text: [text.decode() if isinstance(text, bytes) else text])
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for entry in value:
        if isinstance(entry, str):
            text = entry
        elif isinstance(entry, dict):
            keys = ("headline", "title", "text", "summary", "content")
            text = next((str(entry[k]) for k in keys if entry.get(k)), "")
        else:
            text = ""
        if text.strip():
            out.append(_clip(text, MAX_HEADLINE_CHARS))
    return out


def stock_line(row: MarketOutcome) -> str:
    mood = f", {row.sentiment}" if row.sentiment else ""
    parts = [
        f"{row.stock_ticker} {_num(row.start_price)} -> {_num(row.end_price)} "
        f"({_signed_pct(row.change_percent)}{mood})"
    ]
    news = headlines(row.news_events)
    if news:
        shown = "; ".join(f'"{h}"' for h in news[:MAX_HEADLINES])
        more = f" (+{len(news) - MAX_HEADLINES} more)" if len(news) > MAX_HEADLINES else ""
        parts.append(f"news: {shown}{more}")
    return "; ".join(parts)


def prediction_line(row: MarketOutcome) -> str:
    question = _clip(row.question or "(no question recorded)", 200)
    outcome = (row.outcome or "unresolved").upper()
    prob = "" if row.final_probability is None else f" (final probability {_num(row.final_probability, 2)})"
    ident = f"[{row.prediction_market_id}] " if row.prediction_market_id else ""
    return f"{ident}{question} -> {outcome}{prob}"


def ground_truth_text(gt: WindowGroundTruth) -> str:
    """A compact, readable rendering of what the markets did in the window."""
    if gt.empty:
        return f"Window {gt.window_id} (UTC hour): no market outcomes were recorded."
    lines = [f"Window {gt.window_id} (UTC hour): what the markets actually did."]
    if gt.stocks:
        lines.append("Stocks (start -> end price, change, sentiment):")
        lines.extend(f"- {stock_line(r)}" for r in gt.stocks)
    if gt.predictions:
        lines.append("Prediction markets resolved (question -> outcome):")
        lines.extend(f"- {prediction_line(r)}" for r in gt.predictions)
    return "\n".join(lines)
