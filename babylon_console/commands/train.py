"""`babylon-console train` (the seed's train_mmo) and `babylon-console engine` (headless, continuous)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from ..cli_support import err, fail, load_settings, out, print_json, run_command
from ..core.config import BackendName, JudgeName, Settings
from ..core.database import open_database
from ..core.errors import EXIT_FAILED, EXIT_NOTHING_TO_DO, EXIT_UNAVAILABLE

if TYPE_CHECKING:  # the engine pulls in judges and backends: keep them off the console's start-up path
    from ..core.engine import Engine, EngineConfig, RunSummary

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


def _status_table(engine: Engine, lines: list[str]) -> Table:
    table = Table.grid(padding=(0, 1))
    s = engine.summary
    table.add_row(f"[bold]{engine.config.model_name}[/] [{engine.state.value}] iteration {s.iterations}, "
                  f"steps {s.steps[-3:] or '-'}, windows trained {len(s.windows_trained)}, "
                  f"failed {len(s.windows_failed)}")
    for line in lines[-8:]:
        table.add_row(line)
    return table


async def _run_engine(engine: Engine, quiet: bool, dsn: str) -> RunSummary:
    from ..core.events import EventBus, EventKind
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Ctrl-C / SIGTERM finish the current stage and stop cleanly (main thread only).
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(sig, engine.stop)
    lines: list[str] = []
    task = asyncio.create_task(engine.run())
    if quiet:
        return await task

    async def follow() -> None:
        async for event in EventBus(dsn).follow(run_id=engine.run_id):
            style = {EventKind.ERROR: "red", EventKind.WARNING: "yellow"}.get(event.kind, "")
            lines.append(f"[{style}]{event.summary}[/]" if style else event.summary)

    follower = asyncio.create_task(follow())
    with Live(_status_table(engine, lines), console=err, refresh_per_second=4, transient=False) as live:
        while not task.done():
            live.update(_status_table(engine, lines))
            await asyncio.wait({task}, timeout=0.25)
        await asyncio.sleep(0.3)  # let the follower print the final events
        live.update(_status_table(engine, lines))
    follower.cancel()
    return await task


def _preflight(config: EngineConfig, settings: Settings) -> None:
    """Refuse at once, with the fix, what would only fail after the engine started."""
    from ..core.backends.factory import BackendUnavailable, check_local, check_serverless, serverless_warnings
    from ..core.tokenization import TokenizerUnavailable, load_tokenizer, tokenizer_source

    try:
        if config.backend == "serverless":
            key = settings.wandb_api_key.get_secret_value() if settings.wandb_api_key else None
            check_serverless(key, settings.serverless_base_url)
            for warning in serverless_warnings(config.base_model, config.allow_unlisted_base_model):
                err.print(f"[yellow]warning:[/] {warning}")
        elif config.backend == "local":
            check_local()
    except BackendUnavailable as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from None
    if config.backend != "offline" or settings.tokenizer:
        try:  # cached: the engine reuses it
            load_tokenizer(tokenizer_source(settings.tokenizer, config.base_model))
        except TokenizerUnavailable as exc:
            raise fail(str(exc), EXIT_UNAVAILABLE) from None
    from ..core.judges import judge_unavailable

    if (why := judge_unavailable(config.judge, settings)) is not None:
        raise fail(why, EXIT_UNAVAILABLE)


def _train(iterations: int | None, quiet: bool, as_json: bool, **options: object) -> None:
    from ..core.engine import Engine, EngineConfig, EngineState

    settings = load_settings()
    try:
        config = EngineConfig.from_settings(settings, iterations=iterations, **options)
    except ValueError as exc:
        raise fail(f"invalid option: {exc}", EXIT_UNAVAILABLE) from None
    _preflight(config, settings)

    async def body() -> RunSummary:
        target, pool = await open_database(settings)
        try:
            engine = Engine(pool, config, settings=settings)
            return await _run_engine(engine, quiet or as_json, target.dsn)
        finally:
            await pool.close()

    summary = run_command(body)  # EngineLocked exits 4 (its own code) through the shared policy
    if as_json:
        print_json(summary.model_dump(mode="json"))
    else:
        out.print(f"Run {summary.run_id}: {summary.state.value}; {summary.iterations} iteration(s), "
                  f"steps {summary.steps or 'none'}, checkpoints {', '.join(summary.checkpoints) or 'none'}; "
                  f"windows trained {len(summary.windows_trained)}, failed {len(summary.windows_failed)}, "
                  f"skipped {len(summary.windows_skipped)}.", soft_wrap=True)
        if summary.error:
            out.print(f"[red]error:[/] {summary.error}")
    if summary.state is EngineState.FAILED or (not summary.steps and summary.windows_failed):
        raise typer.Exit(EXIT_FAILED)  # the engine, or every step it tried, failed
    if iterations is not None and not summary.steps:
        raise typer.Exit(EXIT_NOTHING_TO_DO)


Judge = Annotated[JudgeName | None, typer.Option(help="outcome (offline) or ruler (LLM judge).")]
Backend = Annotated[BackendName | None, typer.Option(help="offline, serverless (W&B) or local (CUDA).")]


@app.command("train")
def train_command(
    iterations: Annotated[int, typer.Option(help="Training iterations (one step each).", min=1)] = 1,
    min_agents: Annotated[int | None, typer.Option(help="Agents a window needs.", min=1)] = None,
    windows_per_iteration: Annotated[int | None, typer.Option(help="Windows per step.", min=1)] = None,
    lookback_hours: Annotated[int | None, typer.Option(help="Look for ready windows this far back.", min=1)] = None,
    min_steps: Annotated[int | None, typer.Option(help="Steps each agent needs.", min=1)] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate passed to the backend.")] = None,
    judge: Judge = None,
    backend: Backend = None,
    base_model: Annotated[str | None, typer.Option(help="Base model (serverless/local).")] = None,
    model_name: Annotated[str | None, typer.Option(help="Name of the trained model.")] = None,
    allow_unlisted_base_model: Annotated[bool, typer.Option(
        "--allow-unlisted-base-model", help="Serverless: no warning for a base model outside W&B's documented list.",
    )] = False,
    force: Annotated[bool, typer.Option("--force", help="Also retrain windows already trained on.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train for a number of iterations on ready windows. Exit codes: 0 trained, 1 the engine or every
    step it tried failed, 2 database/configuration, 3 nothing was ready to train, 4 another engine
    trains this model."""
    _train(iterations, quiet, as_json, min_agents=min_agents, windows_per_iteration=windows_per_iteration,
           lookback_hours=lookback_hours, min_steps=min_steps, learning_rate=learning_rate, judge=judge,
           backend=backend, base_model=base_model, model_name=model_name, force=force or None,
           allow_unlisted_base_model=allow_unlisted_base_model or None)


@app.command("engine")
def engine_command(
    judge: Judge = None,
    backend: Backend = None,
    model_name: Annotated[str | None, typer.Option(help="Name of the trained model.")] = None,
    poll_seconds: Annotated[float | None, typer.Option(help="Wait between checks for new windows.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Headless, continuous engine: trains each window as it becomes ready, until Ctrl-C / SIGTERM.
    Consoles anywhere can watch it through its events."""
    _train(None, quiet, False, judge=judge, backend=backend, model_name=model_name, poll_seconds=poll_seconds)
