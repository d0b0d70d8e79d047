"""Statistics the readouts rest on, pure and database-free: a paired difference of means with its
95% Student's t interval over windows and its anytime-valid confidence sequence (valid when looked at
after every window), betting bounds for a bounded per-window statistic, a rank correlation, and
`Figure` (a value or why there is none)."""

from __future__ import annotations

import math
import statistics

import numpy as np
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
    ci_high: float | None  # plain 95% t interval: valid for one look, not under repeated looks
    win_rate: float  # windows where the candidate's mean P&L beat the live arm's
    # the anytime-valid bounds (`anytime_bounds`): each a one-sided (1 - cs_alpha) bound valid at every look;
    # None while still unbounded
    cs_low: float | None = None
    cs_high: float | None = None
    cs_alpha: float = 0.05
    # what the bounds are of, in plain words, when not the mean difference itself (the A/B gate's statistic)
    bounds_of: str | None = None

    def cs_text(self) -> str:
        """'anytime-valid 95% bound [low, high]', or that it is still unbounded."""
        level = f"anytime-valid {1 - self.cs_alpha:.0%} bound" + (f" on {self.bounds_of}" if self.bounds_of else "")
        if self.cs_low is None or self.cs_high is None:
            return f"{level} still unbounded"
        return f"{level} [{self.cs_low:+.2f}, {self.cs_high:+.2f}]"

    def plain_ci_text(self) -> str:
        """The plain interval, labelled as what it is."""
        if self.ci_low is None or self.ci_high is None:
            return "plain 95% CI: none with one window"
        return f"plain 95% CI [{self.ci_low:+.2f}, {self.ci_high:+.2f}], not valid under repeated looks"


def paired_difference(diffs: list[float], *, alpha: float = 0.05, horizon: float = 10.0) -> PairedDifference | None:
    """Mean of per-window differences with a 95% t interval and the anytime-valid bounds of `anytime_bounds`
    (each one-sided at `alpha`) tuned to `horizon` windows (None: no window)."""
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return PairedDifference(windows=1, mean=mean, ci_low=None, ci_high=None, win_rate=float(diffs[0] > 0),
                                cs_alpha=alpha)
    half = t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    cs = anytime_bounds(diffs, alpha=alpha, horizon=horizon)
    return PairedDifference(windows=len(diffs), mean=mean, ci_low=mean - half, ci_high=mean + half,
                            win_rate=sum(d > 0 for d in diffs) / len(diffs), cs_low=cs[0] if cs else None,
                            cs_high=cs[1] if cs else None, cs_alpha=alpha)


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


# --- anytime-valid: a confidence sequence for the mean of per-window differences -----------------------------
#
# The gate looks after every window, and a 95% interval looked at again and again clears zero by chance far more
# often than 5% of the time. A confidence sequence holds at every look at once: P(some look excludes the mean) <=
# alpha. This one is the normal mixture boundary (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform,
# nonparametric, nonasymptotic confidence sequences", Ann. Statist.; with the running variance it is the
# asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas 2021) in its scale-invariant,
# Student-t form (Lai 1976, "On confidence sequences", Ann. Statist.; Wang & Ramdas 2023, "Anytime-valid t-tests
# and confidence sequences for Gaussian means with unknown variance"): the unknown variance is mixed out instead
# of plugged in. Plugging in the running variance of three or four windows is far too narrow (the benchmark's
# null experiment crosses zero well over 5% of the time that way); mixed out, the sequence is exact for normal
# per-window differences from the second window on, and matches the plug-in normal mixture as windows accrue.
#
# The martingale: with S = sum(x - mu), Q = sum((x - mu)^2) over t windows and c^2 the mixture's precision,
# M_t = sqrt(c^2 / (t + c^2)) * (1 - S^2 / ((t + c^2) Q)) ** (-t / 2); by Ville's inequality it reaches 1/alpha
# with probability <= alpha ever. The mu it does not reject form an interval around the mean.


def mixture_precision(alpha: float, horizon: float) -> float:
    """c^2 that makes the sequence narrowest near `horizon` windows (Waudby-Smith et al. 2021, eq. for rho:
    rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / horizon, and c^2 = 1 / rho^2)."""
    log_term = -2 * math.log(alpha)
    return horizon / (log_term + math.log1p(log_term))


def confidence_sequence(diffs: list[float], *, alpha: float = 0.05, horizon: float = 10.0
                        ) -> tuple[float, float] | None:
    """The anytime-valid (1 - alpha) interval for the mean of `diffs` after the latest of them, valid at every
    look at once (see above); None while it is still unbounded (one window, or too few for their spread)."""
    t = len(diffs)
    if t < 2:
        return None
    c2 = mixture_precision(alpha, horizon)
    # mu is rejected once S^2 / Q passes `reach`; S^2 / Q <= t always, so with reach >= t nothing is rejected yet
    reach = (t + c2) * -math.expm1(math.log(c2 * alpha * alpha / (t + c2)) / t)
    if reach >= t:
        return None
    mean = math.fsum(diffs) / t
    squares = math.fsum((d - mean) ** 2 for d in diffs)  # (t - 1) * sample variance
    half = math.sqrt(reach * squares / (t * (t - reach)))
    return mean - half, mean + half


def one_sided_level(alpha: float) -> float:
    """The two-sided level whose sequence, read one side at a time, errs on each side with probability <= alpha.

    The mixture splits into its halves over positive and negative effects, M = (M+ + M-) / 2, each a
    nonnegative martingale of mean 1 under the null. While the mean is above mu, every negative effect's
    likelihood ratio is <= 1 (its exponent is negative), so M- <= 1; M >= (1 + alpha) / (2 alpha) then gives
    M+ >= 1 / alpha, which by Ville's inequality happens with probability <= alpha. The lower bound alone
    (promote) and the upper bound alone (roll back) each hold at alpha, without assuming symmetric differences,
    where reading both sides of one sequence at alpha spends alpha / 2 on each."""
    return 2 * alpha / (1 + alpha)


def anytime_bounds(diffs: list[float], *, alpha: float = 0.05, horizon: float = 10.0) -> tuple[float, float] | None:
    """(lower, upper): each a one-sided anytime-valid (1 - alpha) bound for the mean of `diffs` (see
    `one_sided_level`); None while unbounded."""
    return confidence_sequence(diffs, alpha=one_sided_level(alpha), horizon=horizon)


# --- anytime-valid by betting: bounds for the mean of a bounded per-window statistic -------------------------
#
# P&L differences are heavy-tailed (a window near +-400 where the spread is ~155), and a few wild windows keep
# the Student-t sequence wide. The gate therefore tests a bounded per-window statistic, the share of
# (candidate-served, live-served) agent pairs in which the candidate's agent earned more, minus 1/2: in
# [-1/2, 1/2] and 0 in expectation when the two models are equal (the arms are exchangeable). Its bounds come
# from betting (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by betting",
# JRSS-B; the predictable plug-in bet): against each mean m one side bets, with a stake fixed before the
# window is seen, that the mean is above m (or below); its wealth is a nonnegative supermartingale while m
# is the truth, so by Ville's inequality it ever reaches 1/alpha with probability <= alpha, for any
# distribution of the statistic, at every look. Each side is a one-sided bound at alpha on its own.

_GRID = np.linspace(-0.5, 0.5, 401)  # the means each side bets against
_STAKE_CAP = 0.9  # of the stake that could lose everything in one window: wealth stays positive


OUT_EARN = "the share of agent pairs the candidate's agent out-earned, minus 1/2"


def out_earn_share(candidate: list[float], live: list[float]) -> float | None:
    """Within one window: the share of (candidate-served, live-served) agent pairs in which the candidate's
    agent earned more (a tie counts half), minus 1/2. None without an agent on each side."""
    if not candidate or not live:
        return None
    wins = sum((c > x) + 0.5 * (c == x) for c in candidate for x in live)
    return wins / (len(candidate) * len(live)) - 0.5


def betting_bounds(xs: list[float], *, alpha: float = 0.05) -> list[tuple[float, float]]:
    """After each window of `xs` (each in [-1/2, 1/2]): (lower, upper), each a one-sided anytime-valid
    (1 - alpha) bound for their mean (see above). A mean is out once its side's wealth has reached
    1/alpha at any look so far; the bound is the nearest mean not out yet."""
    threshold = 1 / alpha
    found = []
    wealth_up, wealth_down = np.ones_like(_GRID), np.ones_like(_GRID)
    out_up, out_down = np.zeros(_GRID.shape, bool), np.zeros(_GRID.shape, bool)
    mean, var = 0.0, 0.25  # running estimates the stake is sized by, started at the widest spread
    for i, x in enumerate(xs, 1):
        stake = math.sqrt(2 * math.log(threshold) / (var * i * math.log1p(i)))
        with np.errstate(divide="ignore"):  # the grid's ends: a side with no room to lose stakes its cap
            up = np.minimum(stake, _STAKE_CAP / (_GRID + 0.5))
            down = np.minimum(stake, _STAKE_CAP / (0.5 - _GRID))
        wealth_up *= 1 + up * (x - _GRID)
        wealth_down *= 1 - down * (x - _GRID)
        out_up |= wealth_up >= threshold
        out_down |= wealth_down >= threshold
        mean = (mean * i + x) / (i + 1)
        var = (var * i + (x - mean) ** 2) / (i + 1)
        kept_up, kept_down = np.flatnonzero(~out_up), np.flatnonzero(~out_down)
        found.append((float(_GRID[kept_up[0]]) if kept_up.size else 0.5,
                      float(_GRID[kept_down[-1]]) if kept_down.size else -0.5))
    return found
