"""The judge calibration view of the inspector's window: the judge's ranking of the agents beside
their ranking by realised P&L, the rank correlation, and the pair the two disagree on most, with
both judge explanations side by side and each side's steps that made or lost the money.

It draws what it is given (a `WindowCalibration`, loaded by the inspector through the data layer);
it never reads anything itself.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _rank(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _agent(agent: Any) -> str:
    return agent.agent_id or f"trajectory {agent.trajectory_id}"


def ranking_table(cal: Any) -> Table:
    table = Table(title="Judge's ranking beside the market's", title_justify="left", expand=False,
                  show_edge=False, pad_edge=False)
    for label, justify in (("Agent", "left"), ("Judge score", "right"), ("Judge rank", "right"),
                           ("P&L", "right"), ("P&L rank", "right"), ("Note", "left")):
        table.add_column(label, justify=justify)  # type: ignore[arg-type]
    for agent in cal.agents:
        apart = agent.judge_rank is not None and agent.pnl_rank is not None and agent.judge_rank != agent.pnl_rank
        table.add_row(_agent(agent), _num(agent.score, ".3f"), _rank(agent.judge_rank), _num(agent.pnl, "+.2f"),
                      Text(_rank(agent.pnl_rank), style="bold" if apart else ""), agent.note or "")
    return table


def _side(title: str, side: Any) -> RenderableType:
    agent = side.agent
    parts: list[RenderableType] = [
        Text.assemble((f"{title}: {_agent(agent)}", "bold"),
                      f"  score {_num(agent.score, '.3f')} (rank {_rank(agent.judge_rank)})"
                      f" · P&L {_num(agent.pnl, '+.2f')} (rank {_rank(agent.pnl_rank)})"),
        Text.assemble(("Judge: ", "bold"), agent.explanation or "–"),
        Text("Steps that made or lost the most:", style="bold"),
    ]
    if not side.steps:
        parts.append(Text(f"none: {side.steps_missing or 'no step changed the P&L'}", style="dim"))
    for step in side.steps:
        line = Text(f"step {step.index}  ")
        line.append(f"{step.pnl_change:+.2f}", style="green" if step.pnl_change > 0 else
                    "red" if step.pnl_change < 0 else "")
        line.append(f"  {step.action or '–'}")
        if step.reasoning:
            line.append(f"  {step.reasoning[:120]}", style="dim")
        parts.append(line)
    return Group(*parts)


def pair_view(cal: Any) -> RenderableType:
    pair = cal.pair
    if pair is None:
        return Text.assemble(("Most disagreed pair: ", "bold"), ("none, " + (cal.pair_missing or ""), "dim"))
    higher, paid = pair.judged_higher.agent, pair.paid_more.agent
    head = Text.assemble(
        ("Most disagreed pair: ", "bold"),
        f"the judge ranks {_agent(higher)} above {_agent(paid)} (score gap {pair.score_gap:.3f}) while the "
        f"market paid {_agent(paid)} {pair.pnl_gap:.2f} more; disagreement = score gap × P&L gap = "
        f"{pair.measure:.3f}")
    sides = Table.grid(expand=True, padding=(0, 2))
    sides.add_column(ratio=1)
    sides.add_column(ratio=1)
    sides.add_row(_side("Judged higher", pair.judged_higher), _side("Paid more", pair.paid_more))
    return Group(head, sides)


def calibration_view(cal: Any) -> RenderableType:
    title = Text.assemble(("Judge calibration of ", "bold"), (cal.window_id, "bold"))
    if cal.judge is not None:
        title.append(f" · judge {cal.judge}" + (f" ({cal.judge_model})" if cal.judge_model else ""))
        title.append(f" · {len(cal.agents)} judged, {cal.unjudged} not")
    others = [j for j in cal.judges if j != cal.judge]
    if others:
        title.append(f" · also judged by {', '.join(others)}", style="dim")
    correlation = Text.assemble(("Spearman rank correlation, judge's score vs realised P&L: ", "bold"),
                                cal.correlation.text("{:+.2f}"))
    parts: list[RenderableType] = [title, correlation, Text("")]
    if cal.agents:
        parts += [ranking_table(cal), Text("")]
    parts.append(pair_view(cal))
    parts.append(Text("esc: back to the trajectories", style="dim"))
    return Group(*parts)


class CalibrationView(VerticalScroll):
    """Hidden until the inspector opens it (`c`); `esc` (the inspector's `back`) closes it."""

    DEFAULT_CSS = """
    CalibrationView { display: none; height: 1fr; }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="calibration-body")

    def loading(self, window_id: str) -> None:
        self.query_one("#calibration-body", Static).update(
            Text(f"Loading the judge calibration of {window_id}…", style="dim"))

    def show(self, cal: Any) -> None:
        self.query_one("#calibration-body", Static).update(calibration_view(cal))
