"""Papercuts: the promote dialog confirms the share it shows; training charts label steps as integers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Button, RadioButton, RadioSet

from babylon_console.tui.dialogs.promote import PromoteDialog
from babylon_console.tui.widgets.chart import render_chart

UNSET = object()


class Host(App[None]):
    """A bare app that opens the dialog and keeps what it returns (no database needed)."""

    def __init__(self, default_share: float = 0.10) -> None:
        super().__init__()
        self.default_share = default_share
        self.result: Any = UNSET

    def on_mount(self) -> None:
        self.push_screen(PromoteDialog("babylon-agent-step0002", "babylon-agent-step0001", self.default_share),
                         self._done)

    def _done(self, share: float | None) -> None:
        self.result = share


def pressed_share(app: Host) -> float:
    button = app.screen.query_one(RadioSet).pressed_button
    assert button is not None and button.name
    return float(button.name)


async def test_continue_promotes_the_highlighted_share_with_the_keyboard() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("down", "down")  # 10% -> 25% -> 50%
        assert pressed_share(app) == pytest.approx(0.50)  # the marked option is the one under the cursor
        await pilot.press("tab")
        assert app.focused is app.screen.query_one("#continue", Button)
        await pilot.press("enter")
        await pilot.pause()
    assert app.result == pytest.approx(0.50)


async def test_continue_promotes_the_highlighted_share_with_the_mouse() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("down", "down")
        await pilot.click("#continue")
        await pilot.pause()
    assert app.result == pytest.approx(0.50)


async def test_enter_on_a_highlighted_share_moves_to_continue() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("down", "enter")
        assert app.focused is app.screen.query_one("#continue", Button)
        await pilot.press("enter")
        await pilot.pause()
    assert app.result == pytest.approx(0.25)


async def test_clicking_a_share_chooses_it_and_moves_to_continue() -> None:
    app = Host()
    async with app.run_test() as pilot:
        [quarter] = [b for b in app.screen.query(RadioButton) if b.name == "0.25"]
        await pilot.click(quarter)
        await pilot.pause()
        assert app.focused is app.screen.query_one("#continue", Button)
        await pilot.press("enter")
        await pilot.pause()
    assert app.result == pytest.approx(0.25)


async def test_the_highlight_starts_on_the_default_share() -> None:
    app = Host(default_share=0.25)
    async with app.run_test() as pilot:
        await pilot.press("down")  # from 25%, not from the first option
        await pilot.click("#continue")
        await pilot.pause()
    assert app.result == pytest.approx(0.50)


async def test_cancel_returns_none() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("down", "escape")
        await pilot.pause()
    assert app.result is None


def x_labels(n: int, width: int) -> list[str]:
    steps = list(range(1, n + 1))
    text = render_chart([("reward", steps, [0.1 * s for s in steps], (200, 160, 60))], width, 12).plain
    return text.rstrip("\n").splitlines()[-1].split()  # the last line holds the x-axis labels


@pytest.mark.parametrize("n", [7, 13, 300])
@pytest.mark.parametrize("width", [30, 60, 117])
def test_chart_steps_are_integers(n: int, width: int) -> None:
    labels = x_labels(n, width)
    assert labels, "the x axis has labels"
    assert all(re.fullmatch(r"\d+", label) for label in labels), labels
    values = [int(label) for label in labels]
    assert values == sorted(set(values))  # increasing, no duplicates from rounding
    assert values[0] >= 1 and values[-1] <= n  # within the plotted steps


def test_chart_of_one_step_labels_it() -> None:
    assert x_labels(1, 60) == ["1"]
