"""The Training pane's alarm list: recent alarms of the model, newest first, open ones standing out.

A row says the rule, where it fired (step, window), whether it is open or who acknowledged it when,
and its sentence with the figures. Which alarm the acknowledge key acts on: the highlighted one while
the list has the focus, else the newest open one (`target`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable

if TYPE_CHECKING:
    from ..data import AlarmRecord

# what matters first: a narrow pane shows those; the acknowledgement in full (the server's role, the note) last
COLUMNS = ("Rule", "State", "At", "Message", "When (UTC)", "Acknowledged")


def state_text(alarm: AlarmRecord) -> str:
    """`open`, or `ack ana 16:40` (UTC): short, so the message stays in view; the last column says it in full."""
    if not alarm.acknowledged:
        return "open"
    when = alarm.acknowledged_at.astimezone(UTC).strftime("%H:%M") if alarm.acknowledged_at else ""
    return f"ack {alarm.acknowledged_by or 'unknown'} {when}".rstrip()


def open_alarms(alarms: Sequence[AlarmRecord]) -> list[AlarmRecord]:
    return [a for a in alarms if not a.acknowledged]


def fill(table: DataTable[Any], alarms: Sequence[AlarmRecord], open_style: str) -> None:
    """Put `alarms` (newest first) in `table`, keeping the highlighted alarm highlighted."""
    highlighted = highlighted_id(table)
    table.clear()
    for alarm in alarms:
        when = alarm.created_at.astimezone(UTC).strftime("%m-%d %H:%M:%S") if alarm.created_at else "–"
        state = Text(state_text(alarm), style=open_style if not alarm.acknowledged else "dim")
        table.add_row(alarm.rule, state, alarm.where, alarm.message or "", when,
                      alarm.status if alarm.acknowledged else "", key=str(alarm.id))
    if highlighted is not None:
        for row, alarm in enumerate(alarms):
            if alarm.id == highlighted:
                table.move_cursor(row=row, animate=False)
                break


def highlighted_id(table: DataTable[Any]) -> int | None:
    if not table.row_count:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # no row under the cursor
        return None
    return int(key) if key is not None and key.isdigit() else None


def target(alarms: Sequence[AlarmRecord], highlighted: int | None) -> AlarmRecord | None:
    """The alarm the acknowledge key acts on: the highlighted one (open or not: the refusal says so),
    else the newest open one; None when there is none."""
    if highlighted is not None:
        chosen = next((a for a in alarms if a.id == highlighted), None)
        if chosen is not None:
            return chosen
    return next((a for a in alarms if not a.acknowledged), None)
