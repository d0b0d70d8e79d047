"""`babylon-console train` (the seed's train_mmo) and `babylon-console engine` (headless, continuous).

Output: on a terminal, a live frame (the run's state and its latest events); otherwise (a pipe, a log
file, a service manager) one plain line per event. Ctrl+C prints "stopping…" at once and stops within
2 s at any stage, exit 130; a second Ctrl+C exits at once (`cli_support.Interrupts`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ..cli_support import CliState, err, exit_now, fail, interrupts, load_settings, out, print_json, run_command
from ..core.config import BackendName, JudgeName, Settings
from ..core.errors import EXIT_FAILED, EXIT_NOTHING_TO_DO, EXIT_UNAVAILABLE

if TYPE_CHECKING:  # the engine pulls in judges and backends: keep them off the console's start-up path
    from rich.table import Table

    from ..core.engine.loop import Engine
    from ..core.engine.run_config import EngineConfig
    from ..core.engine.run_state import RunSummary
    from ..core.events import Event

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


def _status_table(engine: Engine, lines: list[str]) -> Table:
    from rich.table import Table

    table = Table.grid(padding=(0, 1))
    s = engine.summary
    table.add_row(f"[bold]{engine.config.model_name}[/] [{engine.state.value}] iteration {s.iterations}, "
                  f"steps {s.steps[-3:] or '-'}, windows trained {len(s.windows_trained)}, "
                  f"failed {len(s.windows_failed)}")
    for line in lines[-8:]:
        table.add_row(line)
    return table


def live_frame() -> bool:
    """A live frame only when both outputs are terminals; piped or logged output gets plain lines."""
    return out.is_terminal and err.is_terminal


def plain_line(event: Event) -> str:
    """One event as one line of plain text (no markup, no wrapping), ending in a newline."""
    when = f"{event.created_at:%H:%M:%S} " if event.created_at else ""
    return f"{when}{' '.join(event.summary.split())}\n"


async def _run_engine(engine: Engine, quiet: bool, dsn: str) -> RunSummary:
    """Run the engine to its end, showing its events; Ctrl+C (or SIGTERM) cancels it: the stage in
    progress is abandoned as a crash would abandon it, and repaired at the next start."""
    loop = asyncio.get_running_loop()
    # the newest event before this run starts: the follower shows every event after it, its first one
    # ("engine started") too, however late the follower's own connection comes up
    mark = None if quiet else await _event_mark(dsn)
    task = asyncio.create_task(engine.run())
    interrupts.cancel = lambda: loop.call_soon_threadsafe(task.cancel)
    try:
        if quiet:
            await task
        elif live_frame():
            await _with_live_frame(engine, task, dsn, mark)
        else:
            await _with_plain_lines(engine, task, dsn, mark)
    except asyncio.CancelledError:
        if not (interrupts.requested and task.cancelled()):
            raise  # not the operator's Ctrl+C: a real cancellation
    finally:
        interrupts.cancel = None  # from here a Ctrl+C has nothing left to stop: it exits at once
    return engine.summary


async def _event_mark(dsn: str) -> int:
    import asyncpg

    from ..core.events import last_event_id

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await last_event_id(conn)
    finally:
        await conn.close()


async def _follow(dsn: str, run_id: str, show: object, after_id: int | None) -> None:
    from ..core.event_bus import EventBus

    async for event in EventBus(dsn).follow(after_id=after_id, run_id=run_id):
        show(event)  # type: ignore[operator]


async def _with_plain_lines(engine: Engine, task: asyncio.Task[RunSummary], dsn: str, mark: int | None) -> None:
    def show(event: Event) -> None:
        sys.stdout.write(plain_line(event))
        sys.stdout.flush()

    follower = asyncio.create_task(_follow(dsn, engine.run_id, show, mark))
    try:
        await task
    finally:
        await asyncio.sleep(0.3)  # let the follower print the final events
        follower.cancel()


async def _with_live_frame(engine: Engine, task: asyncio.Task[RunSummary], dsn: str, mark: int | None) -> None:
    from rich.live import Live

    from ..core.events import EventKind

    lines: list[str] = []

    def show(event: Event) -> None:
        style = {EventKind.ERROR: "red", EventKind.WARNING: "yellow"}.get(event.kind, "")
        lines.append(f"[{style}]{event.summary}[/]" if style else event.summary)

    follower = asyncio.create_task(_follow(dsn, engine.run_id, show, mark))
    try:
        with Live(_status_table(engine, lines), console=err, refresh_per_second=4, transient=False) as live:
            previous, interrupts.say = interrupts.say, live.console.print  # above the frame, never overwritten
            try:
                while not task.done():
                    live.update(_status_table(engine, lines))
                    await asyncio.wait({task}, timeout=0.25)
                await asyncio.sleep(0.3)  # let the follower print the final events
                live.update(_status_table(engine, lines))
            finally:
                interrupts.say = previous
        await task
    finally:
        follower.cancel()


def _preflight(config: EngineConfig, settings: Settings) -> None:
    """Refuse at once, with the fix, what would only fail after the engine started."""
    from ..core.training.backends.factory import BackendUnavailable, check_local, check_serverless, serverless_warnings
    from ..core.training.tokenization import TokenizerUnavailable, load_tokenizer, tokenizer_source

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
    from ..core.training.judges import judge_unavailable

    if (why := judge_unavailable(config.judge, settings)) is not None:
        raise fail(why, EXIT_UNAVAILABLE)


def _print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.model_dump(mode="json"))
        return
    out.print(f"Run {summary.run_id}: {summary.state.value}; {summary.iterations} iteration(s), "
              f"steps {summary.steps or 'none'}, checkpoints {', '.join(summary.checkpoints) or 'none'}; "
              f"windows trained {len(summary.windows_trained)}, failed {len(summary.windows_failed)}, "
              f"skipped {len(summary.windows_skipped)}.", soft_wrap=True)
    if summary.error:
        out.print(f"[red]error:[/] {summary.error}")


def _train(iterations: int | None, quiet: bool, as_json: bool, **options: object) -> None:
    from ..core.engine.loop import Engine
    from ..core.engine.run_config import EngineConfig
    from ..core.engine.run_state import EngineState

    settings = load_settings()
    try:
        config = EngineConfig.from_settings(settings, iterations=iterations, **options)
    except ValueError as exc:
        errors = exc.errors(include_url=False) if hasattr(exc, "errors") else None  # pydantic: option: what
        detail = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in errors) \
            if errors else str(exc)
        raise fail(f"invalid option: {detail}", EXIT_UNAVAILABLE) from None
    if not (quiet or as_json):  # on screen at once: loading the training libraries takes seconds
        err.print(f"starting: model {config.model_name}, {config.backend} backend, {config.judge} judge "
                  "(Ctrl+C stops)", soft_wrap=True, highlight=False)
    if not CliState.verbose:
        os.environ.setdefault("WANDB_SILENT", "true")  # W&B's own banner lines: only with --verbose
    _preflight(config, settings)

    async def body() -> RunSummary:
        from ..core.db.connections import open_database

        target, pool = await open_database(settings)
        try:
            engine = Engine(pool, config, settings=settings)
            summary = await _run_engine(engine, quiet or as_json, target.dsn)
        finally:
            await pool.close()
        if interrupts.requested:  # the run is recorded as stopped: leave now, not after threads still loading
            _print_summary(summary, as_json)
            err.print(f"interrupted: run {summary.run_id} stopped; the stage in progress was abandoned and is "
                      "repaired at the next start", soft_wrap=True, highlight=False)
            exit_now(interrupts.exit_code)
        return summary

    summary = run_command(body)  # EngineLocked exits 4 (its own code) through the shared policy
    _print_summary(summary, as_json)
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
