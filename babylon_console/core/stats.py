"""Statistics the evidence rests on, pure and database-free: a paired difference of means with its
95% Student's t interval over windows."""

from __future__ import annotations

import math
import statistics

from pydantic import BaseModel

# two-sided 95% Student's t quantiles by degrees of freedom (1..30); beyond: the normal's 1.96
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


class PairedDifference(BaseModel):
    windows: int
    mean: float
    ci_low: float | None  # None with a single window: no interval yet
    ci_high: float | None
    win_rate: float  # windows where the candidate's mean P&L beat the live arm's


def paired_difference(diffs: list[float]) -> PairedDifference | None:
    """Mean of per-window differences with a 95% t interval (None: no window)."""
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return PairedDifference(windows=1, mean=mean, ci_low=None, ci_high=None, win_rate=float(diffs[0] > 0))
    half = t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return PairedDifference(windows=len(diffs), mean=mean, ci_low=mean - half, ci_high=mean + half,
                            win_rate=sum(d > 0 for d in diffs) / len(diffs))
