"""The anytime-valid gate: the confidence sequence (`core.stats.confidence_sequence`) holds when looked
at after every window, and the gate's promote and rollback rules, and the held-out verdict, read it
instead of the plain 95% CI (which, looked at again and again, clears zero by chance far too often)."""

from __future__ import annotations

import math
import random

import pytest

from babylon_console.core.checkpoints.evaluation import EvalResult
from babylon_console.core.checkpoints.evidence import _Row, readout_from_rows, verdict_of_differences
from babylon_console.core.checkpoints.promotion import contrary
from babylon_console.core.config import GateSettings, Settings
from babylon_console.core.stats import (
    anytime_bounds,
    betting_bounds,
    confidence_sequence,
    mixture_precision,
    one_sided_level,
    out_earn_share,
    paired_difference,
)

GATE = GateSettings(min_windows=3, promote_after=1)
LIVE = ("m-live", "offline://p/run:step1")
CAND = ("m-cand", "offline://p/run:step2")


def _crossing_rate(draw, sequences: int = 2000, looks: int = 40, first: int = 3) -> tuple[float, float]:
    """(share of null sequences the confidence sequence ever excludes 0 from, the same for the plain CI),
    each looked at after every step from `first` on."""
    rnd = random.Random(7)
    cs_crossed = ci_crossed = 0
    for _ in range(sequences):
        xs: list[float] = []
        cs_hit = ci_hit = False
        for _ in range(looks):
            xs.append(draw(rnd))
            if len(xs) < first:
                continue
            cs = confidence_sequence(xs)
            cs_hit = cs_hit or (cs is not None and (cs[0] > 0 or cs[1] < 0))
            d = paired_difference(xs) if not ci_hit else None
            ci_hit = ci_hit or (d is not None and d.ci_low is not None and (d.ci_low > 0 or d.ci_high < 0))
        cs_crossed += cs_hit
        ci_crossed += ci_hit
    return cs_crossed / sequences, ci_crossed / sequences


def test_the_confidence_sequence_holds_under_the_null_looked_at_every_step() -> None:
    cs_rate, ci_rate = _crossing_rate(lambda r: r.gauss(0, 3))
    assert cs_rate <= 0.045  # 95% at every look at once (exact for normal differences; ~3% in practice)
    assert ci_rate > 0.15  # the plain interval looked at every step: the reason for the change


def test_it_holds_for_heavy_tailed_symmetric_differences_too() -> None:
    # two equal arms give differences symmetric about zero; Student's t with 3 degrees of freedom is heavy-tailed
    cs_rate, _ = _crossing_rate(lambda r: r.gauss(0, 1) / math.sqrt(sum(r.gauss(0, 1) ** 2 for _ in range(3)) / 3),
                                sequences=1000)
    assert cs_rate <= 0.05


def test_its_boundary_is_where_the_mixture_martingale_reaches_one_over_alpha() -> None:
    xs = [1.3, -0.4, 2.2, 0.9, 1.7, 0.1, 1.1, 2.5]
    low, high = confidence_sequence(xs, alpha=0.05, horizon=10)  # type: ignore[misc]
    c2, t = mixture_precision(0.05, 10), len(xs)
    for mu in (low, high):
        s, q = sum(x - mu for x in xs), sum((x - mu) ** 2 for x in xs)
        martingale = math.sqrt(c2 / (t + c2)) * (1 - s * s / ((t + c2) * q)) ** (-t / 2)
        assert martingale == pytest.approx(1 / 0.05, rel=1e-9)
    mean = sum(xs) / t
    assert low < mean < high and high - mean == pytest.approx(mean - low)


def test_it_is_unbounded_until_the_windows_can_say_anything() -> None:
    assert confidence_sequence([]) is None and confidence_sequence([4.0]) is None
    assert confidence_sequence([4.0, 4.1, 3.9]) is None  # three windows: no finite anytime-valid bound yet
    d = paired_difference([4.0, 4.1, 3.9])
    assert d is not None and d.ci_low is not None and d.ci_low > 0 and d.cs_low is None and d.cs_high is None
    assert confidence_sequence([4.0, 4.1, 3.9, 4.05, 3.95]) is not None
    wide, narrow = confidence_sequence([1.0, 3.0] * 10), confidence_sequence([1.9, 2.1] * 10)
    assert wide is not None and narrow is not None and narrow[0] > wide[0] and narrow[1] < wide[1]



def _side_rates(draw, bounds, sequences: int = 2000, looks: int = 40, first: int = 3) -> tuple[float, float]:
    """(share of null sequences whose first crossing of zero is by the lower bound, by the upper bound),
    `bounds` looked at after every step from `first` on: the gate's false promotion and false rollback rates."""
    rnd = random.Random(11)
    above = below = 0
    for _ in range(sequences):
        xs: list[float] = []
        for _ in range(looks):
            xs.append(draw(rnd))
            b = bounds(xs) if len(xs) >= first else None
            if b is not None and (b[0] > 0 or b[1] < 0):
                above, below = above + (b[0] > 0), below + (b[1] < 0)
                break
    return above / sequences, below / sequences


def test_each_one_sided_bound_errs_at_most_alpha_under_the_null() -> None:
    promote, rollback = _side_rates(lambda r: r.gauss(0, 3), anytime_bounds)
    assert promote <= 0.05 and rollback <= 0.05
    # each side spends its own alpha, where both sides of one two-sided sequence at alpha spent half of it each
    both = _side_rates(lambda r: r.gauss(0, 3), lambda xs: confidence_sequence(xs))
    assert promote + rollback > 1.5 * sum(both)
    # an invalid method fails the same check: the plain one-sided 95% t bound looked at every step
    plain = _side_rates(lambda r: r.gauss(0, 3), lambda xs: (lambda d: (d.ci_low, d.ci_high))(paired_difference(
        xs)), sequences=500)
    assert max(plain) > 0.08


def _upper_half(xs: list[float], mu: float, c2: float) -> float:
    """M+ of the mixture's positive effects at `mu`, by numerical integration over the scale (see
    `one_sided_level`): 2 sqrt(c2 / (t + c2)) E_s[exp(s^2 S^2 / (2 (t + c2))) Phi(s S / sqrt(t + c2))] with
    s^(t-1) exp(-s^2 Q / 2) the scale's density."""
    t = len(xs)
    s_sum, q = sum(x - mu for x in xs), sum((x - mu) ** 2 for x in xs)
    grid = [i / 20000 * 12 / math.sqrt(q / t) for i in range(1, 20001)]
    log_density = [(t - 1) * math.log(s) - s * s * q / 2 for s in grid]
    top = max(log_density)
    weights = [math.exp(v - top) for v in log_density]
    ratio = [math.exp(s * s * s_sum * s_sum / (2 * (t + c2)) + v - top) *
             0.5 * math.erfc(-s * s_sum / math.sqrt(2 * (t + c2))) for s, v in zip(grid, log_density, strict=True)]
    return 2 * math.sqrt(c2 / (t + c2)) * sum(ratio) / sum(weights)


def test_the_one_sided_bound_is_where_the_positive_half_reaches_one_over_alpha_or_beyond() -> None:
    xs = [1.3, -0.4, 2.2, 0.9, 1.7, 0.1, 1.1, 2.5]
    low, high = anytime_bounds(xs, alpha=0.05, horizon=10)  # type: ignore[misc]
    c2 = mixture_precision(one_sided_level(0.05), 10)
    assert _upper_half(xs, low, c2) >= 1 / 0.05  # Ville at alpha for the lower bound alone
    assert _upper_half([-x for x in xs], -high, c2) >= 1 / 0.05  # and for the upper bound alone
    two_sided = confidence_sequence(xs, alpha=0.05, horizon=10)
    assert two_sided is not None and two_sided[0] < low and high < two_sided[1]

def _draws(seed: int, n: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.gauss(0, 1) for _ in range(n)]


def test_a_chance_excursion_moves_the_old_rule_but_not_the_gate() -> None:
    """Seed 8's normal draws: the plain CI clears zero at window 5 (the previous rule acted on the first
    time it did); the confidence sequence never does."""
    xs = _draws(8, 20)
    first_ci = next(t for t in range(3, 21) if (d := paired_difference(xs[:t])) is not None and d.ci_low > 0)
    assert first_ci == 5  # "the first time the CI clears zero": the previous rule's trigger
    assert all(verdict_of_differences(xs[:t], GATE)[0] == "hold" for t in range(3, 21))


def test_the_rollback_rule_reads_the_anytime_valid_upper_bound() -> None:
    xs = [-x for x in _draws(8, 5)]
    d = paired_difference(xs)
    assert d is not None and d.ci_high is not None and d.ci_high < 0  # the old rule rolled back here
    verdict, reason = verdict_of_differences(xs, GATE)
    assert verdict == "hold" and "anytime-valid 95% bound" in reason
    assert "plain 95% CI" in reason and "not valid under repeated looks" in reason
    verdict, reason = verdict_of_differences([-5.0, -5.2, -4.9, -5.1, -4.8, -5.05], GATE)
    assert verdict == "rollback" and reason.startswith("candidate - live P&L -5.01, anytime-valid 95% bound [")


def test_promote_after_counts_windows_with_the_lower_bound_above_zero() -> None:
    xs = [5.0, 5.2, 4.9, 5.1, 4.8, 5.05, 5.0]
    first = next(t for t in range(3, 8) if verdict_of_differences(xs[:t], GATE)[0] == "promote")
    cautious = GATE.model_copy(update={"promote_after": 3})
    assert verdict_of_differences(xs[:first], cautious)[0] == "hold"
    verdict, reason = verdict_of_differences(xs[:first + 2], cautious)
    assert verdict == "promote" and "above zero for 3 consecutive window(s) (gate: 3" in reason


def _rows(diffs: list[float]) -> list[_Row]:
    rows = []
    for w, d in enumerate(diffs):
        wid = f"2026-11-24T{w:02d}:00"
        rows += [_Row(wid, "a", LIVE[1], 0.0, None, 0.1), _Row(wid, "b", CAND[1], d, None, 0.1)]
    return rows


def test_the_readout_shows_both_bounds_and_judges_by_the_anytime_valid_one() -> None:
    xs = [3.0, 2.5, -0.5, 3.2, 2.8]  # one agent per arm: the candidate out-earned in four windows of five
    readout = readout_from_rows(_rows(xs), candidate=CAND, live=LIVE, asked=0.5, known={LIVE[1], CAND[1]}, gate=GATE)
    d = readout.difference
    assert d is not None and d.ci_low is not None and d.ci_low > 0 and d.cs_low is not None and d.cs_low < 0
    assert readout.window_diffs == pytest.approx(xs) and readout.window_scores == [0.5, 0.5, -0.5, 0.5, 0.5]
    assert readout.verdict == "hold" and readout.streak_above_zero == 0
    # the bounds say what they are of; the plain mean P&L difference and its plain CI stand beside them, labelled
    assert ("anytime-valid 95% bound on the share of agent pairs the candidate's agent out-earned, minus 1/2 ["
            in readout.reasons[0]) and "plain 95% CI [" in readout.reasons[0]


def _exchangeable_windows(rnd: random.Random, agents: int = 8) -> float:
    """A window of two equal arms: heavy-tailed agent P&L with a shared market move, out-earn share - 1/2."""
    move = rnd.gauss(0, 100)
    pnl = [move + rnd.gauss(0, 50) / max(abs(rnd.gauss(0, 1)), 0.05) for _ in range(2 * agents)]
    return out_earn_share(pnl[:agents], pnl[agents:])  # type: ignore[return-value]


def test_the_betting_bounds_hold_each_side_under_the_null_looked_at_every_window() -> None:
    def bounds(xs: list[float]) -> tuple[float, float]:
        return betting_bounds(xs)[-1]
    promote, rollback = _side_rates(_exchangeable_windows, bounds, sequences=600)
    assert promote <= 0.05 and rollback <= 0.05
    one_agent = _side_rates(lambda r: r.choice([-0.5, 0.5]), bounds, sequences=2000)  # a fair coin per window
    assert max(one_agent) <= 0.05
    # an invalid method fails the same check: the Student-t sequence is exact for normal windows, not for a coin
    assert max(_side_rates(lambda r: r.choice([-0.5, 0.5]), anytime_bounds, sequences=2000)) > 0.05


def test_the_betting_bounds_move_towards_a_candidate_that_out_earns() -> None:
    rnd = random.Random(3)
    xs = [min(0.5, max(-0.5, rnd.gauss(0.15, 0.15))) for _ in range(30)]
    found = betting_bounds(xs)
    assert all(-0.5 <= low <= high <= 0.5 for low, high in found)
    assert found[2][0] < 0 < found[-1][0] < 0.15 < found[-1][1]
    lows = [low for low, _ in found]
    assert lows == sorted(lows)  # a mean once out stays out: the bound only tightens


def _evaluation(**bounds: float | None) -> EvalResult:
    return EvalResult(model_id="m", against="base", against_model_id=None, storage_path="offline://p/r:step1",
                      against_storage_path="offline://p/r:step0", windows=["w1", "w2", "w3"], n=3, mean_a=-9.0,
                      mean_b=1.0, mean_diff=-10.0, ci_low=-14.0, ci_high=-6.0, win_rate=0.0,
                      window_diffs=[-12.0, -9.0, -9.0], **bounds)


def test_the_held_out_verdict_reads_the_anytime_valid_bound() -> None:
    unbounded = _evaluation(cs_low=None, cs_high=None)
    assert unbounded.ci_high is not None and unbounded.ci_high < 0  # the previous rule: against the evidence
    assert contrary("m", unbounded, None) is None and not unbounded.below_zero
    below = _evaluation(cs_low=-20.0, cs_high=-1.0)
    against = contrary("m", below, None)
    assert against is not None and "anytime-valid 95% bound [-20.00, -1.00]" in against[0]
    assert "plain 95% CI [-14.00, -6.00], not valid under repeated looks" in against[0]


def test_an_evaluation_stored_before_the_bound_gets_it_from_its_window_differences() -> None:
    stored = _evaluation().model_dump(exclude={"cs_low", "cs_high", "cs_alpha"})
    stored["window_diffs"] = [-10.0, -10.5, -9.5, -10.2, -9.8, -10.1]
    result = EvalResult.model_validate(stored)
    expected = anytime_bounds(stored["window_diffs"])
    assert expected is not None and (result.cs_low, result.cs_high) == pytest.approx(expected)
    assert result.below_zero


def test_the_gates_level_and_horizon_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABYLON_GATE_ALPHA", "0.1")
    monkeypatch.setenv("BABYLON_GATE_HORIZON", "20")
    gate = Settings().gate()  # type: ignore[call-arg]
    assert (gate.alpha, gate.horizon) == (0.1, 20.0)
    assert GateSettings().promote_after == 1  # the sequence holds at every look: its first crossing is enough
    xs = [1.0, 2.0, 1.5, 1.8, 1.2, 1.6]
    d95, d90 = paired_difference(xs, alpha=0.05), paired_difference(xs, alpha=0.1)
    assert d95 is not None and d90 is not None and d90.cs_low > d95.cs_low and d90.cs_alpha == 0.1


def test_the_audit_line_names_what_the_gate_bounds() -> None:
    """A rollback's recorded readout: its anytime-valid bound is on the gate's statistic (the out-earn
    share), not on P&L, and the audit line says so beside the plain P&L interval."""
    from babylon_console.core.checkpoints.evidence_text import summarize_evidence

    readout = {"verdict": "rollback", "rollout_id": 7, "difference": {
        "windows": 6, "mean": -41.5, "ci_low": -80.0, "ci_high": -3.0, "cs_low": -0.45, "cs_high": -0.05,
        "bounds_of": "the share of agent pairs the candidate out-earned, minus 1/2"}}
    line = summarize_evidence({"ab": readout})
    assert ("anytime-valid bound on the share of agent pairs the candidate out-earned, minus 1/2 [-0.45, -0.05]"
            in line), line
    assert "(plain 95% CI [-80.00, -3.00])" in line and "rollout 7 rollback" in line
    held_out = {"against_model_id": "base", "mean_diff": -12.0, "n": 9, "ci_low": -20.0, "ci_high": -4.0,
                "cs_low": -30.0, "cs_high": 5.0}
    assert ("held-out vs base -12.00 P&L, anytime-valid bound [-30.00, +5.00] (plain 95% CI [-20.00, -4.00]) "
            "over 9 windows") in summarize_evidence({"evaluation": held_out})


def test_a_candidate_that_out_earns_more_often_but_loses_money_on_average_is_not_promoted() -> None:
    from babylon_console.core.checkpoints.evidence import paired_verdict
    from babylon_console.core.stats import PairedDifference

    gate = GateSettings()
    wins_small = PairedDifference(windows=12, mean=-35.0, ci_low=-90.0, ci_high=20.0, win_rate=0.8,
                                  cs_low=0.05, cs_high=0.45, bounds_of="the out-earn share")
    verdict, why = paired_verdict(wins_small, streak=3, gate=gate)
    assert verdict == "hold" and "-35.00 on average" in why
    verdict, _ = paired_verdict(wins_small.model_copy(update={"mean": 12.0}), streak=3, gate=gate)
    assert verdict == "promote"
