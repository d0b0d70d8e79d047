"""`babylon-console inspect TRAJECTORY_ID`: one trajectory step by step, with its judgments."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.panel import Panel

from ..cli_support import fail, load_settings, out, print_json, run_with_pool
from ..core.errors import EXIT_FAILED
from ..core.game.rows import Rejection, Trajectory
from ..core.game.store import GameStore

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


@app.command("inspect")
def inspect_command(
    trajectory_id: Annotated[str, typer.Argument(help="trajectoryId (or row id) to show.")],
    full: Annotated[bool, typer.Option("--full", help="Show prompts in full instead of their first lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a trajectory: every step's state, LLM calls, action and reward, and the judge's verdicts."""
    settings = load_settings()

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
