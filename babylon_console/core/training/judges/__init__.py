"""Judges score one window's trajectories relatively (DESIGN section 1.4).

- `OutcomeJudge`: offline and deterministic, from the ground truth and the recorded actions and P&L.
- `RulerJudge`: ART's RULER with a trading rubric; the ground truth is judge-only context.
- `judge_windows`: many windows at bounded concurrency, one failure never stopping the others.

Importing this package does not import `art` or `litellm`; `RulerJudge` does so when it judges.
"""

from __future__ import annotations

from typing import Any

from .base import Judge, JudgeError, JudgeInput, TrajectoryScore, WindowJudgment, ground_truth_text
from .outcome import OutcomeJudge
from .ruler import TRADING_RUBRIC, RulerJudge
from .runner import judge_windows

__all__ = [
    "TRADING_RUBRIC",
    "Judge",
    "JudgeError",
    "JudgeInput",
    "OutcomeJudge",
    "RulerJudge",
    "TrajectoryScore",
    "WindowJudgment",
    "ground_truth_text",
    "judge_unavailable",
    "judge_windows",
    "make_judge",
]


def judge_unavailable(judge: str, settings: Any) -> str | None:
    """Why `judge` cannot run with these settings (None: it can): RULER needs a key or an endpoint."""
    reachable = getattr(settings, "judge_base_url", None) or getattr(settings, "openai_api_key", None)
    if judge == "ruler" and not reachable:
        return "the ruler judge needs OPENAI_API_KEY or BABYLON_JUDGE_BASE_URL (or use --judge outcome)"
    return None


def make_judge(settings: Any) -> Judge:
    """The judge named by `settings.judge` ("outcome" or "ruler"), configured from the settings."""
    name = getattr(settings, "judge", "outcome")
    if name == "outcome":
        return OutcomeJudge()
    if name == "ruler":
        return RulerJudge(
            judge_model=settings.judge_model,
            base_url=getattr(settings, "judge_base_url", None),
            api_key=getattr(settings, "openai_api_key", None),
        )
    raise ValueError(f"unknown judge {name!r} (expected 'outcome' or 'ruler')")
