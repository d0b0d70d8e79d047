"""Tables that give up columns at narrow widths (a tmux split) and say which ones they hide."""

from __future__ import annotations

from textual.widgets import DataTable

Column = tuple[str, str, bool]  # (label, key, shown when narrow)


def show_columns(table: DataTable, columns: tuple[Column, ...], wide: bool) -> list[str]:
    """Give `table` the columns shown at this width (every one when wide); their keys, in order."""
    table.clear(columns=True)
    shown = [(label, key) for label, key, narrow in columns if wide or narrow]
    for label, key in shown:
        table.add_column(label, key=key)
    return [key for _, key in shown]


def hidden_labels(columns: tuple[Column, ...], shown: list[str]) -> list[str]:
    """The labels of the columns not shown, for the pane's "narrow: … hidden" note."""
    return [label for label, key, _ in columns if key not in shown]
