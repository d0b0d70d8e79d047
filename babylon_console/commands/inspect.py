"""`babylon-console inspect TRAJECTORY_ID`: one trajectory step by step, with its judgments;
`inspect WINDOW --calibration`: the window's judge calibration (`core/training/calibration.py`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..cli_support import fail, load_settings, out, print_json, run_with_pool
from ..core.config import Settings
from ..core.errors import EXIT_FAILED
from ..core.game.rows import Rejection, Trajectory
from ..core.game.store import GameStore

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


@app.command("inspect")
def inspect_command(
    trajectory_id: Annotated[str, typer.Argument(help="trajectoryId (or row id) to show; with --calibration, "
                                                      "a window id.")],
    full: Annotated[bool, typer.Option("--full", help="Show prompts in full instead of their first lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    calibration: Annotated[bool, typer.Option(
        "--calibration", help="Show the window's judge calibration: the judge's ranking beside the realised "
                              "P&L's, their correlation, the pair they disagree on most.")] = False,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="With --calibration: the judge (default: the judge of the window's newest judgment).")] = None,
) -> None:
    """Show a trajectory: every step's state, LLM calls, action and reward, and the judge's verdicts."""
    settings = load_settings()
    if calibration:
        show_calibration(settings, trajectory_id, judge, as_json)
        return

    async def body(pool):
        store = GameStore(pool)
        found = await store.trajectory(trajectory_id)
        judgments = await store.trajectory_judgments(
            found.trajectory_id if isinstance(found, Trajectory) else trajectory_id)
        return found, [asdict(j) for j in judgments]

    found, judgments = run_with_pool(settings, body)
    if found is None:
        raise fail(f"no trajectory with id {trajectory_id!r}", EXIT_FAILED)
    if isinstance(found, Rejection):
        raise fail(f"trajectory {trajectory_id} cannot be read: {found.reason}", EXIT_FAILED)
    if as_json:
        print_json({"trajectory": found.model_dump(mode="json"), "judgments": judgments})
        return

    def clip(text: str | None) -> str:
        text = text or ""
        if full:
            return text
        lines = text.splitlines()
        return "\n".join(lines[:4]) + (f"\n… ({len(lines) - 4} more lines)" if len(lines) > 4 else "")

    t = found
    out.print(f"[bold]{t.trajectory_id}[/]  agent {t.agent_id}  window {t.window_id}  steps {len(t.steps)}  "
              f"P&L {t.final_pnl if t.final_pnl is not None else '-'}  reward {t.total_reward:.3f}", soft_wrap=True)
    for step in t.steps:
        state = step.environment_state
        head = f"step {step.step_number}  reward {step.reward:+.4f}"
        if state is not None:
            head += f"  balance {state.agent_balance}  P&L {state.agent_pnl}  positions {state.open_positions}"
        body_lines = []
        for call in step.llm_calls:
            body_lines.append(f"[cyan]{call.purpose or 'call'}[/] ({call.model or '?'})")
            body_lines.append(f"[dim]user:[/] {clip(call.user_prompt)}")
            body_lines.append(f"[dim]response:[/] {clip(call.response)}")
            if call.reasoning:
                body_lines.append(f"[dim]reasoning:[/] {clip(call.reasoning)}")
        if step.action is not None:
            a = step.action
            ok = "[green]ok[/]" if a.success else f"[red]failed[/] {a.error or ''}"
            body_lines.append(f"[bold]action[/] {a.action_type} {a.parameters} {ok}")
        out.print(Panel("\n".join(body_lines) or "(no calls)", title=head, title_align="left"))
    if judgments:
        for j in judgments:
            out.print(f"[bold]{j['judge']}[/] {j['judge_model'] or ''} score {j['score']:.3f}: {j['explanation']}",
                      soft_wrap=True)
    else:
        out.print("Not judged yet.")


def show_calibration(settings: Settings, window_id: str, judge: str | None, as_json: bool) -> None:
    from ..core.training.calibration import window_calibration

    cal = run_with_pool(settings, lambda pool: window_calibration(pool, window_id, judge=judge))
    if as_json:
        print_json(cal.model_dump(mode="json"))
        return

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = (f"Judge calibration of {cal.window_id}  judge {cal.judge or '-'}"
            + (f" ({cal.judge_model})" if cal.judge_model else "")
            + (f"  {len(cal.agents)} judged, {cal.unjudged} not" if cal.judge else "")
            + (f"  judges here: {', '.join(cal.judges)}" if cal.judges else ""))
    out.print(f"[bold]{escape(head)}[/]", soft_wrap=True)
    out.print("Spearman rank correlation, judge's score vs realised P&L: "
              + escape(cal.correlation.text("{:+.2f}")), soft_wrap=True)
    if cal.agents:
        table = Table("agent", "score", "judge rank", "P&L", "P&L rank", "note")
        for a in cal.agents:
            table.add_row(escape(a.agent_id or f"trajectory {a.trajectory_id}"), num(a.score, ".3f"),
                          num(a.judge_rank, "g"), num(a.pnl, "+.2f"), num(a.pnl_rank, "g"), escape(a.note or ""))
        out.print(table)
    pair = cal.pair
    if pair is None:
        out.print(f"Most disagreed pair: none, {escape(cal.pair_missing or '')}", soft_wrap=True)
        return
    higher, paid = pair.judged_higher, pair.paid_more
    out.print(escape(f"Most disagreed pair: the judge ranks {higher.agent.agent_id} above {paid.agent.agent_id} "
                     f"(score gap {pair.score_gap:.3f}) while the market paid {paid.agent.agent_id} "
                     f"{pair.pnl_gap:.2f} more (score gap x P&L gap = {pair.measure:.3f})"), soft_wrap=True)
    for title, side in (("judged higher", higher), ("paid more", paid)):
        lines = [f"[bold]judge:[/] {escape(side.agent.explanation)}", "[bold]steps that made or lost the most:[/]"]
        lines += [f"step {s.index}  {s.pnl_change:+.2f}  {escape(s.action or '-')}" for s in side.steps]
        if not side.steps:
            lines.append(f"none: {side.steps_missing}")
        head = f"{title}: {escape(side.agent.agent_id or '')}  P&L {num(side.agent.pnl, '+.2f')}"
        out.print(Panel("\n".join(lines), title=head, title_align="left"))
