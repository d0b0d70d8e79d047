"""`babylon-console holdout`: show or change the database's hold-out (the windows kept for evaluation)."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from ..cli_support import load_settings, out, print_json, require_permission, run_with_pool

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


def _line(record: Any) -> str:
    why = f": {record.reason}" if record.reason else ""
    return f"{record.set_at:%Y-%m-%d %H:%M:%S} UTC  {record.share:>6.1%}  {record.set_by}{why}"


@app.command("holdout")
def holdout_command(
    share: Annotated[float | None, typer.Option(
        help="Set the share of windows held out for evaluation, in [0, 1) (0.15: 15%); never trained.",
        show_default=False)] = None,
    reason: Annotated[str | None, typer.Option(
        help="Why: recorded in the audit trail; needed to change a hold-out already set.")] = None,
    operator: Annotated[str | None, typer.Option(help="Who sets it (default: the login name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The hold-out: the share of windows reserved for evaluation, recorded in the database so that every
    engine, `train`, `windows`, evaluation and console honours the same one. Without --share: show it (who
    set it, when, why) and its history; with --share: set or change it (audited)."""
    from ..core.checkpoints.holdout import RULE_VERSION, check_share, holdout_history, percent, set_holdout

    if share is not None:
        check_share(share)  # before the database is opened: a bad value is an input error (exit 2)
    settings = load_settings()
    who = operator or getpass.getuser()

    async def body(pool: Any) -> tuple[Any, list[Any]]:
        if share is not None:
            await require_permission(pool, "holdout", "set the hold-out")
        before = (await holdout_history(pool, 1) or [None])[0]
        if share is not None:
            await set_holdout(pool, share, operator=who, reason=reason)
        return before, await holdout_history(pool)

    before, history = run_with_pool(settings, body)
    record = history[0] if history else None
    changed = share is not None and record is not None and (before is None or before.id != record.id)
    if as_json:
        print_json({"holdout": record.model_dump(mode="json") if record else None,
                    "share": record.share if record else 0.0, "rule": RULE_VERSION, "changed": changed,
                    "history": [r.model_dump(mode="json") for r in history]})
        return
    if share is not None:
        out.print(f"Hold-out {'set to' if changed else 'already'} {percent(share)}"
                  + (f" (was {percent(before.share)})" if changed and before is not None else "")
                  + ("" if changed else ": nothing changed") + ".", soft_wrap=True)
    if record is None:
        out.print("No hold-out: every closed window can be trained on, none is kept for evaluation. "
                  "`babylon-console holdout --share 0.15 --reason WHY` keeps 15% of windows for evaluation.",
                  soft_wrap=True)
        return
    out.print(f"Hold-out: [bold]{percent(record.share)}[/] of windows (rule {record.rule}), set by "
              f"{record.set_by} on {record.set_at:%Y-%m-%d %H:%M} UTC" + (f": {record.reason}" if record.reason
                                                                          else ""), soft_wrap=True)
    if record.rule != RULE_VERSION:
        out.print(f"[yellow]warning:[/] recorded under rule {record.rule}; this version applies rule {RULE_VERSION}",
                  soft_wrap=True)
    out.print("History (newest first):")
    for r in history:
        out.print(f"  {_line(r)}", soft_wrap=True)
