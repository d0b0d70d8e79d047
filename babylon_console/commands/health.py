"""`babylon-console health [ack ID]`: training health per step and the alarms its rules raised, and an
operator's acknowledgement of one."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from ..cli_support import load_settings, out, print_json, require_permission, run_with_pool

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked
health_app = typer.Typer()
app.add_typer(health_app, name="health")

WIDE = 140  # from this width the trends of every step are columns; narrower, the newest step's are a line


class _Notes:
    """Why a figure is missing, numbered once per reason: a cell shows `— [1]`, the footnote the reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, int] = {}

    def figure(self, figure: Any, fmt: str) -> str:
        if figure.value is not None:
            return fmt.format(figure.value)
        reason = figure.missing or "not measured"
        return f"— [{self.reasons.setdefault(reason, len(self.reasons) + 1)}]"

    def print(self) -> None:
        for reason, n in self.reasons.items():
            out.print(f"  [{n}] {reason}", markup=False, soft_wrap=True)


def _actions(health: Any, notes: _Notes, *, wide: bool) -> str:
    """`1.52 bits, hold 40%`: the action mix's entropy and its most frequent kind's share."""
    entropy = notes.figure(health.action_entropy, "{:.2f} bits" if wide else "{:.2f}")
    total = sum(health.action_mix.values())
    if not total:
        return entropy
    kind, calls = max(health.action_mix.items(), key=lambda item: item[1])
    return f"{entropy}{',' if wide else ''} {kind} {calls / total:.0%}"


_TRENDS = (("trend judge", "judge_trend", "judge score"), ("trend P&L", "pnl_trend", "realised P&L"),
           ("trend held-out", "holdout_trend", "held-out difference"))


def _steps_table(history: list[Any], notes: _Notes, *, wide: bool) -> Table:
    """One row per step; `wide`: the trends too, and roomier cells (an 80-column terminal fits the rest)."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True,
                  show_edge=False)
    columns = ["step", "zero\nspread", "reward\nmean ± std", "KL", "entropy", "tokens\n/call",
               "actions\n(bits, top)", "rank\ncorr", "rolling\ncorr",
               *([label for label, _, _ in _TRENDS] if wide else [])]
    for column in columns:
        table.add_column(column, justify="left" if column.startswith("actions") else "right", no_wrap=True)
    reward = "{:.3f}" if wide else "{:.2f}"
    for h in history:
        cells = [str(h.step), notes.figure(h.zero_spread_share, "{:.0%}"),
                 notes.figure(h.reward_mean, reward) + (" ± " if wide else "±") + notes.figure(h.reward_std, reward),
                 notes.figure(h.kl, "{:.3g}"), notes.figure(h.entropy, "{:.3g}"),
                 notes.figure(h.tokens_per_call, "{:.0f}"), _actions(h, notes, wide=wide),
                 notes.figure(h.rank_correlation, "{:+.2f}"), notes.figure(h.rank_correlation_rolling, "{:+.2f}"),
                 *([notes.figure(getattr(h, field), "{:+.3g}/step") for _, field, _ in _TRENDS] if wide else [])]
        table.add_row(*cells)
    return table


def _alarm_line(alarm: Any) -> str:
    return f"  {alarm.id:>4}  {alarm.rule}  {alarm.where}: {alarm.message} ({alarm.status})"


def _show(key: str, history: list[Any], alarms: list[Any], limit: int) -> None:
    out.print(f"[bold]{key}[/]: health of the newest {len(history)} step(s) (of at most {limit}), oldest first",
              soft_wrap=True)
    notes = _Notes()
    if history:
        wide = out.width >= WIDE
        out.print(_steps_table(history, notes, wide=wide))
        if not wide:
            newest = history[-1]
            trends = "; ".join(f"{what} {notes.figure(getattr(newest, field), '{:+.3g}/step')}"
                               for _, field, what in _TRENDS)
            out.print(f"  trends at step {newest.step}: {trends}", markup=False, soft_wrap=True)
            out.print("  [dim](trends of every step: widen the terminal or use --json)[/]")
        notes.print()
    else:
        out.print("  no step's health is stored for it", markup=False)
    opened = sum(not a.acknowledged for a in alarms)
    if alarms:
        out.print(f"Alarms (newest {len(alarms)}, newest first; {opened} open):", markup=False)
        for alarm in alarms:
            out.print(_alarm_line(alarm), markup=False, soft_wrap=True)
    else:
        out.print("Alarms: none", markup=False)


@health_app.callback(invoke_without_command=True)
def health_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(
        "--model", help="Only this model: its name (every backend's training key of it) or a training key "
                        "(offline:NAME).")] = None,
    limit: Annotated[int, typer.Option(help="How many of the newest steps, and of the newest alarms, per training "
                                            "key.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Training health per step (groups with no reward spread, reward, KL, entropy, tokens per call, the action
    mix, the judge's rank correlation with realised P&L, trends) and the alarms raised, per training key. `health
    ack ID` acknowledges an alarm."""
    if ctx.invoked_subcommand is not None:
        return
    from ..core.training.health_store import alarms, health_history, training_keys

    settings = load_settings()

    async def body(pool: Any) -> list[tuple[str, list[Any], list[Any]]]:
        return [(key, await health_history(pool, key, limit=limit), await alarms(pool, key, limit=limit))
                for key in await training_keys(pool, model)]

    found = run_with_pool(settings, body)
    if as_json:
        print_json({"model": model, "limit": limit, "training_keys": [
            {"training_key": key, "steps": [h.model_dump(mode="json") for h in history],
             "alarms": [a.model_dump(mode="json") for a in raised],
             "open_alarms": sum(not a.acknowledged for a in raised)}
            for key, history, raised in found]})
        return
    if not found:
        whose = f" for model {model}" if model else ""
        out.print(f"No training health or alarms recorded{whose} yet: the engine stores each trained step's health "
                  "(`babylon-console train`, `babylon-console engine`).", markup=False, soft_wrap=True)
        return
    for i, (key, history, raised) in enumerate(found):
        if i:
            out.print()
        _show(key, history, raised, limit)


@health_app.command("ack")
def ack_command(
    alarm_id: Annotated[int, typer.Argument(help="The alarm's id (the first column of `health`).")],
    note: Annotated[str | None, typer.Option(help="What was done about it, recorded with the acknowledgement.")] = None,
    operator: Annotated[str | None, typer.Option(help="Who acknowledges (default: the login name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Acknowledge an alarm: who (the name given and the database role, by the server's word), when, and an
    optional note. An operator's; an alarm is acknowledged once."""
    from ..core.training.health_store import acknowledge

    settings = load_settings()
    who = operator or getpass.getuser()

    async def body(pool: Any) -> Any:
        await require_permission(pool, "may_acknowledge", "acknowledge alarms")
        return await acknowledge(pool, alarm_id, operator=who, note=note)

    record = run_with_pool(settings, body)
    if as_json:
        print_json(record.model_dump(mode="json"))
        return
    out.print(f"Alarm {record.id} ({record.rule}, {record.where}) {record.status}.", markup=False, soft_wrap=True)
