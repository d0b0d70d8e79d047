"""`babylon-console status`: each model's latest engine run, its stage and whether it is alive."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..cli import app, load_settings, out, print_json, run_with_pool
from ..core import runs

_STYLE = {runs.Liveness.LIVE: "green", runs.Liveness.STALE: "yellow", runs.Liveness.DEAD: "red",
          runs.Liveness.ENDED: "dim"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@app.command("status")
def status_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Engines: the latest run of each model, its state, current stage and for how long, and its last
    heartbeat (stale after 3 missed beats, dead after 6). Exits 1 when a run is stale or dead."""
    settings = load_settings()
    rows = run_with_pool(settings, runs.latest_per_model)
    if as_json:
        print_json({"runs": [{**r.model_dump(mode="json"), "liveness": r.liveness.value} for r in rows]})
    elif not rows:
        out.print("No engine has run on this database yet (babylon-console engine, or E in the console).")
    else:
        table = Table(show_header=True, header_style="bold")
        table.add_column("model", no_wrap=True)
        table.add_column("liveness", no_wrap=True)  # never the column that gives way
        table.add_column("state / stage", no_wrap=True)
        table.add_column("heartbeat", no_wrap=True)
        table.add_column("step", justify="right", no_wrap=True)
        table.add_column("run", overflow="fold")
        for r in rows:
            active = r.liveness is not runs.Liveness.ENDED
            stage = f" / {r.stage} for {_age(r.stage_age_s)}" if active and r.stage else ""
            table.add_row(
                f"{r.model_name} ({r.backend})", f"[{_STYLE[r.liveness]}]{r.liveness.value}[/]", f"{r.state}{stage}",
                f"{_age(r.heartbeat_age_s)} ago", str(r.step), f"{r.id} on {r.host} pid {r.pid}")
        out.print(table)
        for r in rows:
            if r.error and r.liveness is not runs.Liveness.LIVE:
                out.print(f"[dim]{r.id}:[/] {r.error}", soft_wrap=True)
    if any(r.liveness in (runs.Liveness.STALE, runs.Liveness.DEAD) for r in rows):
        raise typer.Exit(1)
