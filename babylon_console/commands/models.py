"""`babylon-console models list|promote|rollback|ab`: the checkpoint registry from the shell."""

from __future__ import annotations

import getpass
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..cli_support import fail, load_settings, out, print_json, require_permission, run_with_pool
from ..core.checkpoints.registry import ActionResult, Registry, eligibility, game_serves, is_ours, serving_mismatch
from ..core.errors import EXIT_FAILED

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked
models_app = typer.Typer(help="Trained checkpoints: list, promote, roll back, A/B readout.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

JudgeChoice = Literal["outcome", "ruler"]
MethodChoice = Literal["auto", "simulator", "prompts"]
Operator = Annotated[str | None, typer.Option(help="Who acts (default: the login name); recorded in the audit trail.")]


@models_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 50,
    audit: Annotated[bool, typer.Option("--audit", help="Also show the promotion audit trail.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Checkpoints with status, average reward and whether they can be promoted."""
    settings = load_settings()

    async def body(pool):
        registry = Registry(pool)
        return (await registry.models(limit), await registry.live(), await registry.rollout(),
                await registry.audit(20) if audit or as_json else [], await game_serves(pool))

    models, live, rollout, trail, served = run_with_pool(settings, body)
    live_id = live.model_id if live else None
    warning = serving_mismatch(live, served)  # what the Prisma-era game's own query serves, if not the live model
    if as_json:
        print_json({
            "live": live_id, "rollout": rollout.model_dump() if rollout else None,
            "game_serves": None if served is None else {
                "model_id": served.model_id, "status": served.status, "storage_path": served.storage_path,
                "written_by": "console" if is_ours(served) else "game"},
            "serving_warning": warning,
            "models": [m.model_dump(mode="json") | {"promotable": eligibility(m, live_id, rollout) is None,
                                                     "written_by": "console" if is_ours(m) else "game",
                                                     "market_time": m.market_time and m.market_time.isoformat()}
                       for m in models],
            "audit": [a.model_dump(mode="json") for a in trail],
        })
        return
    table = Table(header_style="bold")
    narrow = out.width < 110  # the storage path gives way first; the id is never cut
    # two clocks, each named: when a checkpoint was registered (wall clock, the order of the list) and,
    # in a simulated database, the market's time of its step
    has_market = any(m.market_time for m in models)
    market = ["market time"] if has_market and not narrow else []  # gives way with the storage path
    columns = ["model id", "status", "avg reward", "loss", *([] if narrow else ["storage path"]), "registered (UTC)",
               *market]
    for col in columns:
        table.add_column(col, no_wrap=col != "storage path", overflow="fold" if col == "storage path" else "ellipsis",
                         min_width=max((len(m.model_id) for m in models), default=8) if col == "model id" else None)
    for m in models:
        metrics = m.eval_metrics if isinstance(m.eval_metrics, dict) else {}
        loss = metrics.get("loss/train")
        status = m.status
        if rollout and rollout.candidate_model_id == m.model_id:
            status += f" (A/B {rollout.candidate_share:.0%})"
        cells = [m.model_id, status, f"{m.avg_reward:.3f}" if m.avg_reward is not None else "-",
                 f"{loss:.4f}" if isinstance(loss, int | float) else "-", *([] if narrow else [m.storage_path]),
                 f"{m.created_at:%Y-%m-%d %H:%M}" if m.created_at else "-",
                 *([f"{m.market_time:%Y-%m-%d %H:%M}" if m.market_time else "-"] if market else [])]
        table.add_row(*cells)
    out.print(table)
    if narrow:
        hidden = "storage paths and market times" if has_market else "storage paths"
        out.print(f"[dim]({hidden} hidden at this width: widen the terminal or use --json)[/]")
    candidate = (f"; candidate {rollout.candidate_model_id} at {rollout.candidate_share:.0%} (rollout {rollout.id})"
                 if rollout else "")
    out.print(f"Live: {live_id or 'none'}{candidate}", markup=False)
    out.print(f"Game's query serves: {served.model_id if served else 'no row (the game uses its base model)'}",
              markup=False)
    if warning:
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if trail:
        out.print("Audit trail (newest first):")
        for a in trail:
            out.print(f"  {a.created_at:%Y-%m-%d %H:%M:%S} {a.action:<8} {a.operator}"
                      + (f" ({a.db_who})" if a.db_who else "") + ": "
                      f"{a.from_model_id or '-'} -> {a.to_model_id or '-'}"
                      + (f" ({a.share:.0%})" if a.share is not None and a.share < 1 else "")
                      + (f", rollout {a.rollout_id}" if a.rollout_id is not None else ""), soft_wrap=True, markup=False)
            # the why and the evidence in text too, not only in --json
            out.print(f"      reason: {a.note or '-'}", soft_wrap=True, markup=False)
            out.print(f"      evidence: {a.evidence_summary}", soft_wrap=True, markup=False)


def _act(action) -> ActionResult:
    # a RegistryError is a ConsoleError (refused, exit 1): the shared policy prints it
    return run_with_pool(load_settings(), lambda pool: action(Registry(pool)))


@models_app.command("promote")
def promote_command(
    model_id: Annotated[str, typer.Argument(help="The checkpoint's model id (see `models list`).")],
    share: Annotated[float, typer.Option(help="Share of agents for an A/B rollout; 1.0 makes it live.",
                                         min=0.01, max=1.0)] = 1.0,
    operator: Operator = None,
    note: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    reason: Annotated[str | None, typer.Option(
        help="Needed when the evidence speaks against this promotion (held-out CI below zero, or the A/B "
             "readout says roll back): why you promote anyway; recorded with the evidence.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Promote a checkpoint: make it live (share 1.0) or serve it to a share of agents (A/B; it
    needs a live model, and starts a new rollout whose readout counts windows from then on)."""
    from ..core.checkpoints.promotion import contrary, evidence_for, no_evidence

    settings = load_settings()

    async def check(pool):
        # a role that may not promote, an unknown id (exit 2) or a refusal (exit 1) is said before any question
        await require_permission(pool, "promote", "promote")
        await Registry(pool).check_promotion(model_id, share)
        evaluation, readout = await evidence_for(pool, model_id, settings.gate())
        return contrary(model_id, evaluation, readout), no_evidence(model_id, evaluation, readout)

    against, nothing = run_with_pool(settings, check)
    if nothing:
        out.print(f"[yellow]warning:[/] {escape(nothing)} (see `babylon-console models eval {escape(model_id)}`)",
                  soft_wrap=True)
    if against is not None:
        if not reason:
            raise fail(f"promoting {model_id} is against the evidence ({against[0]}); give --reason to promote "
                       "anyway", EXIT_FAILED)
        if not yes and typer.prompt(f"Against the evidence: {against[0]}\nType the model id to promote anyway",
                                    default="", show_default=False) != model_id:
            raise fail("the typed model id does not match: nothing promoted", EXIT_FAILED)
    what = "make it live" if share >= 1 else f"serve it to {share:.0%} of agents"
    if against is None and not yes and not typer.confirm(f"Promote {model_id} and {what}?"):
        raise typer.Exit(EXIT_FAILED)
    from ..core.checkpoints.promotion import promote_on_evidence

    who = operator or getpass.getuser()
    result = run_with_pool(settings, lambda pool: promote_on_evidence(
        pool, model_id, share=share, operator=who, reason=reason, note=note, gate=settings.gate()))
    out.print(result.message)


@models_app.command("rollback")
def rollback_command(
    to: Annotated[str | None, typer.Option("--to", help="Roll back to this model id (default: the previous live one).")]
    = None,
    operator: Operator = None,
    note: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Cancel a running A/B rollout, or make the previously live model live again."""
    async def check(pool) -> None:  # a role that may not roll back, an unknown id (exit 2): before the question
        await require_permission(pool, "promote", "roll back")
        if to is not None:
            await Registry(pool).model(to)

    run_with_pool(load_settings(), check)
    if not yes and not typer.confirm("Roll back the served model?"):
        raise typer.Exit(EXIT_FAILED)
    who = operator or getpass.getuser()
    result = _act(lambda r: r.rollback(operator=who, to_model_id=to, note=note))
    out.print(result.message)


@models_app.command("ab")
def ab_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The live A/B readout of the rollout in progress: per arm (attributed by the checkpoint that
    served each trajectory's LLM calls: through the gateway's call log by the hash of each recorded
    response, else by the model the call names) agents, windows, mean P&L, win rate, judge score,
    drawdown, and the gateway's requests, error rate and p50/p99 latency; the
    candidate-minus-live P&L difference with a 95% CI paired by window; served vs asked share; the
    gate's verdict (collecting, hold, promote, rollback)."""
    from ..core.checkpoints.evidence import ab_readout

    settings = load_settings()
    readout = run_with_pool(settings, lambda pool: ab_readout(pool, settings.gate()))
    if as_json:
        print_json(readout.model_dump(mode="json"))
        return
    if readout.candidate_model_id is None:
        out.print(f"No A/B rollout in progress (live: {readout.live_model_id or 'none'}).")
        return
    out.print(f"A/B rollout {readout.rollout_id}: candidate [bold]{escape(readout.candidate_model_id)}[/] at "
              f"{readout.asked_share:.0%} next to {escape(readout.live_model_id or 'no live model')}", soft_wrap=True)
    if readout.started_at is not None:
        out.print(f"started {readout.started_at:%Y-%m-%d %H:%M} (the database's clock); counting windows from "
                  f"{readout.first_window}", soft_wrap=True)
    # the arms' model ids are on the line above; short headers and a light box fit 80 columns
    table = Table(header_style="bold", box=box.SIMPLE_HEAD)
    for col in ("arm", "agents", "windows", "rows", "mean P&L", "win rate", "judge", "drawdown"):
        table.add_column(col, no_wrap=True)
    for a in readout.arms:
        table.add_row(a.arm, str(a.agents), str(a.windows), str(a.trajectories),
                      _num(a.mean_pnl, "+.2f"), _num(a.win_rate, ".0%"), _num(a.judge_score, ".3f"),
                      _num(a.drawdown, ".1%"))
    out.print(table)
    traffic = [_traffic(a) for a in readout.arms if a.requests]
    if traffic:
        out.print("gateway: " + "; ".join(traffic), soft_wrap=True)
    d = readout.difference
    if d is not None:
        # the gate reads the anytime-valid bound; the plain CI beside it, labelled
        out.print(f"candidate - live P&L per window: {d.mean:+.2f}, {d.cs_text()} over {d.windows} paired windows "
                  f"({d.plain_ci_text()}); candidate ahead in {d.win_rate:.0%}", soft_wrap=True)
    if readout.served_share is not None:
        out.print(f"served share: {readout.served_share:.0%} of served trajectories "
                  f"(asked {readout.asked_share:.0%}) over {len(readout.served)} windows")
    out.print(f"verdict: [bold]{readout.verdict}[/]: " + "; ".join(readout.reasons), soft_wrap=True)
    for warning in readout.warnings:
        out.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _traffic(arm: Any) -> str:  # core.checkpoints.evidence.ArmStats (imported lazily)
    """One arm's calls through the gateway during the rollout."""
    return (f"{arm.arm} {arm.requests} requests, {_num(arm.error_rate, '.1%')} errors, "
            f"p50 {_num(arm.p50_ms, '.0f')} ms, p99 {_num(arm.p99_ms, '.0f')} ms")


@models_app.command("eval")
def eval_command(
    model_id: Annotated[str, typer.Argument(help="The checkpoint to evaluate (a model id from `models list`).")],
    against: Annotated[str, typer.Option(help="live (the live model), base (the untrained model) or a model id.")
                       ] = "live",
    windows: Annotated[int, typer.Option(help="Held-out windows to use (the newest first).", min=3)] = 24,
    prompts: Annotated[int | None, typer.Option(
        help="Served checkpoints: recorded prompts replayed per window (default BABYLON_EVAL_PROMPTS).", min=1,
        max=200)] = None,
    method: Annotated[MethodChoice, typer.Option(
        help="auto: offline checkpoints in the simulator, served ones on recorded prompts; prompts: recorded "
             "prompts for offline checkpoints too (answered in process).")] = "auto",
    judge: Annotated[JudgeChoice | None, typer.Option(
        help="Served checkpoints: who scores the answers, outcome (offline) or ruler (default BABYLON_JUDGE).")
                     ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare a checkpoint with another on the same held-out windows (the database's hold-out:
    `babylon-console holdout`). With nothing live, `--against live` compares with the base model.

    Offline checkpoints: each window's market is replayed in the simulator with every agent driven
    by each model, same seed for both; the mean P&L difference per agent-window.
    Serverless and local checkpoints: each window's recorded prompts are sent to both models'
    endpoints (W&B's Training API; BABYLON_LOCAL_INFERENCE_URL) and the two answers to each prompt
    are scored side by side against what the markets did; the mean answer-score difference.
    Either way: a 95% CI paired by window and the share of windows won, stored and shown in the
    Checkpoints pane. A window either model was trained on is never counted: it is left out and
    counted, with why."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..cli_support import err
    from ..core.checkpoints.evaluation import evaluate
    from ..core.checkpoints.holdout import read_checked

    settings = load_settings()
    if judge is not None:
        settings = settings.with_overrides(judge=judge)
    with Progress(TextColumn("[bold]evaluating on held-out windows[/]"), BarColumn(), MofNCompleteColumn(),
                  console=err, disable=as_json, transient=True) as bar:
        task = bar.add_task("eval", total=windows)

        async def body(pool):
            await read_checked(pool, settings.holdout_share)  # BABYLON_HOLDOUT_SHARE, if given, must agree
            return await evaluate(
                pool, settings.data_dir, model_id, against, windows,
                progress=lambda done, total: bar.update(task, completed=done, total=total), settings=settings,
                prompts=prompts, method=method)

        result = run_with_pool(settings, body)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    spec = result.spec
    if result.note:
        out.print(f"[yellow]{result.note}[/]", soft_wrap=True)
    on = "" if result.method == "simulator" else f", {result.prompts} recorded prompts judged by {result.judge}"
    out.print(f"{result.model_id} vs {result.against_model_id or 'the base model'} on {result.n} held-out windows "
              f"({result.windows[-1]} to {result.windows[0]}){on}:", soft_wrap=True)
    out.print(f"  mean {result.unit}: {result.mean_a:{spec}} vs {result.mean_b:{spec}}")
    if result.method == "prompts":
        out.print(f"  answers that were not a valid action: {result.unusable_a} vs {result.unusable_b} "
                  f"on {result.prompts} recorded prompts", soft_wrap=True)
        if result.truncated_a or result.truncated_b:
            out.print(f"  [yellow]answers cut off at the token limit:[/] {result.truncated_a} vs {result.truncated_b}")
    level = f", level in {result.level_windows} window(s)" if result.level_windows else ""
    out.print(f"  difference {result.mean_diff:{spec}}, {result.bounds_text(spec)} (paired by window); ahead in "
              f"{result.win_rate:.0%} of windows{level}; stored as evaluation {result.id}", soft_wrap=True)
    if result.left_out_text:
        out.print(f"  [yellow]{result.left_out_text}[/] (not counted)", soft_wrap=True)
