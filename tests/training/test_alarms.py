"""Training health alarms: each rule fires on a crafted history and stays quiet on a steady one;
a missing figure never fires and never fails the check."""

from __future__ import annotations

import pytest

from babylon_console.core.config import AlarmSettings
from babylon_console.core.stats import Figure
from babylon_console.core.training.alarms import AlarmRule, check
from babylon_console.core.training.health import StepHealth, WindowHealth

SETTINGS = AlarmSettings()


def _steady(step: int, **changes: object) -> StepHealth:
    wobble = 0.001 * (step % 3)
    w = WindowHealth(window_id=f"w{step}", agents=6, rank_correlation=Figure.of(0.7),
                     judge_mean=Figure.of(0.5), pnl_mean=Figure.of(10.0 + step))
    base = StepHealth(
        model_name="m", step=step, groups=4, zero_spread_share=Figure.of(0.0), reward_mean=Figure.of(0.5),
        kl=Figure.of(0.02 + wobble), entropy=Figure.of(1.5 - wobble), tokens_per_call=Figure.of(40.0 + step % 2),
        action_mix={"hold": 20, "open_long": 15, "open_short": 15}, action_entropy=Figure.of(1.55), windows=[w],
        rank_correlation=Figure.of(0.7), rank_correlation_rolling=Figure.of(0.7),
        judge_trend=Figure.of(0.0), pnl_trend=Figure.of(1.0))
    return base.model_copy(update=changes)


def _history(n: int = 10, **last: object) -> list[StepHealth]:
    return [*(_steady(s) for s in range(1, n)), _steady(n, **last)]


def _rules(history: list[StepHealth]) -> set[AlarmRule]:
    return {a.rule for a in check(history, SETTINGS)}


def test_a_steady_history_raises_nothing() -> None:
    assert _rules(_history()) == set()
    assert check([], SETTINGS) == []


@pytest.mark.parametrize(("rule", "last"), [
    (AlarmRule.kl_spike, {"kl": Figure.of(0.5)}),
    (AlarmRule.entropy_collapse, {"entropy": Figure.of(0.2)}),
    (AlarmRule.action_collapse, {"action_mix": {"hold": 98, "open_long": 2}}),
    (AlarmRule.tokens_blowup, {"tokens_per_call": Figure.of(400.0)}),
    (AlarmRule.zero_spread, {"zero_spread_share": Figure.of(0.75)}),
    (AlarmRule.judge_disagrees, {"rank_correlation_rolling": Figure.of(-0.1)}),
    (AlarmRule.judge_diverges, {"judge_trend": Figure.of(0.03), "pnl_trend": Figure.of(-2.0)}),
])
def test_each_rule_fires_on_its_crafted_history(rule: AlarmRule, last: dict[str, object]) -> None:
    alarms = check(_history(**last), SETTINGS)
    assert [a.rule for a in alarms] == [rule]
    alarm = alarms[0]
    assert alarm.step == 10 and alarm.threshold is not None and alarm.figures and "step 10" in alarm.message


def test_missing_figures_and_short_history_stay_quiet() -> None:
    gone = Figure.lacking("the backend reported no metrics for this step")
    missing = {"kl": gone, "entropy": gone, "tokens_per_call": gone, "zero_spread_share": gone,
               "rank_correlation_rolling": gone, "judge_trend": gone, "pnl_trend": gone, "action_mix": {}}
    assert _rules(_history(**missing)) == set()
    # a spike with too little history to know what is normal: quiet
    assert _rules(_history(n=3, kl=Figure.of(0.5), tokens_per_call=Figure.of(400.0))) == set()


def test_a_flat_kl_history_still_knows_a_spike() -> None:
    flat = [_steady(s, kl=Figure.of(0.02)) for s in range(1, 10)]
    assert _rules([*flat, _steady(10, kl=Figure.of(0.021))]) == set()
    assert _rules([*flat, _steady(10, kl=Figure.of(0.05))]) == {AlarmRule.kl_spike}


def test_a_rule_that_fails_is_skipped_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from babylon_console.core.training import alarms

    def broken(history, settings):
        raise ZeroDivisionError

    monkeypatch.setitem(alarms.RULES, AlarmRule.kl_spike, broken)
    assert _rules(_history(zero_spread_share=Figure.of(1.0))) == {AlarmRule.zero_spread}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from babylon_console.core.config import Settings

    monkeypatch.setenv("BABYLON_ALARM_KL_Z", "3.5")
    monkeypatch.setenv("BABYLON_PAUSE_ON_ALARM", "true")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.alarms().kl_z == 3.5 and s.pause_on_alarm is True
    monkeypatch.setenv("BABYLON_ALARM_ENTROPY_FRACTION", "2")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_calls_without_a_recorded_action_kind_are_no_collapse() -> None:
    from babylon_console.core.config import AlarmSettings
    from babylon_console.core.training.alarms import check
    from babylon_console.core.training.health import NO_ACTION, StepHealth

    unrecorded = StepHealth(model_name="offline:m", step=1, action_mix={NO_ACTION: 300, "BUY_SHARES": 3})
    assert [a.rule for a in check([unrecorded], AlarmSettings())] == []
    collapsed = StepHealth(model_name="offline:m", step=1, action_mix={NO_ACTION: 300, "BUY_SHARES": 40, "HOLD": 1})
    assert [a.rule for a in check([collapsed], AlarmSettings())] == ["action_collapse"]
