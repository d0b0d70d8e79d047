"""Statistics the readouts rest on, pure and database-free: a paired difference of means with its
95% Student's t interval over windows, a rank correlation, and `Figure` (a value or why there is none)."""

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


class Figure(BaseModel):
    """One figure of a readout: its value, or why there is none (never a silent NaN or 0)."""

    value: float | None = None
    missing: str | None = None  # why there is no value; set exactly when `value` is None

    @classmethod
    def of(cls, value: float | None, missing: str = "not measured") -> Figure:
        """`value` when it is a finite number, else missing with the reason."""
        if value is None:
            return cls(missing=missing)
        if not math.isfinite(value):
            return cls(missing=f"not a finite number ({value})")
        return cls(value=float(value))

    @classmethod
    def lacking(cls, reason: str) -> Figure:
        return cls(missing=reason)

    def text(self, fmt: str = "{:.2f}") -> str:
        return fmt.format(self.value) if self.value is not None else f"— ({self.missing})"


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1..n), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_correlation(xs: list[float | None], ys: list[float | None], *, x_name: str = "the first",
                     y_name: str = "the second") -> Figure:
    """Spearman's rank correlation of paired values (Pearson's r of their average ranks), or missing
    with the reason: a pair with no or a non-finite value is left out; fewer than two pairs left,
    or one side all equal (no ranking to compare), gives no figure."""
    if len(xs) != len(ys):
        raise ValueError(f"rank_correlation: {len(xs)} values against {len(ys)}")
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 2:
        dropped = len(xs) - len(pairs)
        why = f" ({dropped} without a finite value)" if dropped else ""
        return Figure.lacking(f"{len(pairs)} agent(s) to rank{why}: a correlation needs two")
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(set(a)) == 1:
        return Figure.lacking(f"{x_name} is the same for every agent: no ranking")
    if len(set(b)) == 1:
        return Figure.lacking(f"{y_name} is the same for every agent: no ranking")
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return Figure.of(cov / var)
