"""The key registry: every key binding of the console, each with a stable id.

One table feeds the `BINDINGS` of every screen and pane, the footer, the help screen and the
command palette, and the ids are what a keymap file overrides (`<data dir>/keymap.toml`):

    [keys]
    "checkpoints.promote" = "ctrl+u"

`writes=True` marks actions that change something (engine control, promote, rollback): a
`--read-only` console refuses them with a toast that says why.

A pane's keys (scope = the pane's name) act only while that pane is shown: they are bound on the
pane itself, which disables them while hidden (`Pane.check_action`); the key bar, the help screen
and the palette group and offer them by the same scope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeySpec:
    id: str
    key: str
    action: str
    description: str
    scope: str  # app, main, table, windows, outcomes, training, checkpoints, inspector, errors, dialog
    show: bool = True  # in the footer
    palette: bool = True  # offered in the command palette (when valid)
    writes: bool = False
    key_display: str | None = None
    priority: bool = False
    help: str = ""  # a longer line for the help screen

    @property
    def action_name(self) -> str:
        return self.action.split("(", 1)[0].rsplit(".", 1)[-1]

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.show, key_display=self.key_display,
                       priority=self.priority, id=self.id)


PANES: tuple[tuple[str, str], ...] = (
    ("windows", "Windows"),
    ("outcomes", "Outcomes"),
    ("training", "Training"),
    ("checkpoints", "Checkpoints"),
    ("inspector", "Inspector"),
    ("errors", "Errors"),
)
PANE_SCOPES: tuple[str, ...] = tuple(name for name, _ in PANES)
PANE_TITLES: dict[str, str] = dict(PANES)

SCOPE_TITLES = {
    "app": "Everywhere",
    "main": "Panes and engine",
    "table": "Tables and lists",
    "windows": "Windows pane (1)",
    "outcomes": "Outcomes pane (2)",
    "training": "Training pane (3)",
    "checkpoints": "Checkpoints pane (4)",
    "inspector": "Inspector pane (5)",
    "errors": "Errors pane (6)",
    "dialog": "Dialogs",
}

KEYS: tuple[KeySpec, ...] = (
    # Everywhere
    KeySpec("app.help", "question_mark", "help", "Help", "app", key_display="?",
            help="Show every key binding (this screen)."),
    KeySpec("app.palette", "ctrl+p", "command_palette", "Commands", "app", palette=False, show=False,
            help="Command palette: the commands valid right now."),
    KeySpec("app.theme", "ctrl+t", "change_theme", "Theme", "app", show=False,
            help="Choose a theme (Babylon dark/light or a built-in); the choice is remembered."),
    KeySpec("app.quit", "q", "request_quit", "Quit", "app",
            help="Quit; asks first while a training run is active."),
    # Panes and engine
    *(KeySpec(f"pane.{name}", str(i), f"show_pane('{name}')", title, "main", show=False,
              help=f"Show the {title} pane.") for i, (name, title) in enumerate(PANES, start=1)),
    KeySpec("main.back", "escape", "back", "Back", "main", show=False, palette=False,
            help="Close the filter or search; otherwise back to the previous pane."),
    KeySpec("main.refresh", "ctrl+r", "refresh", "Refresh", "main", show=False,
            help="Reload the visible pane now."),
    KeySpec("engine.start", "E", "start_engine", "Start engine", "main", writes=True, key_display="E",
            help="Start the training engine (settings dialog: judge, backend, iterations, thresholds)."),
    KeySpec("engine.pause", "space", "toggle_pause", "Pause/resume", "main", writes=True, key_display="space",
            help="Pause the running engine between stages, or resume it."),
    KeySpec("engine.stop", "X", "stop_engine", "Stop engine", "main", writes=True, key_display="X",
            help="Stop the engine after its current stage (asks first)."),
    # Tables and lists: the cursor of the focused table (or the inspector's agent list)
    KeySpec("table.down", "j", "cursor('down')", "Down", "table", show=False, palette=False,
            help="Move the cursor down (also the arrow key)."),
    KeySpec("table.up", "k", "cursor('up')", "Up", "table", show=False, palette=False,
            help="Move the cursor up (also the arrow key)."),
    KeySpec("table.top", "g,home", "cursor('top')", "First row", "table", show=False, palette=False, priority=True,
            key_display="g/home", help="Move the cursor to the first row."),
    KeySpec("table.bottom", "G,end", "cursor('bottom')", "Last row", "table", show=False, palette=False,
            priority=True, key_display="G/end", help="Move the cursor to the last row."),
    # Windows
    KeySpec("windows.filter", "slash", "filter", "Filter", "windows", key_display="/",
            help="Filter windows by id or state; esc clears."),
    KeySpec("windows.sort", "s", "cycle_sort", "Sort", "windows",
            help="Sort by the next column (window, state, agents, trajectories, steps, P&L)."),
    KeySpec("windows.reverse", "r", "reverse_sort", "Reverse", "windows", show=False,
            help="Reverse the sort order."),
    KeySpec("windows.open", "enter", "open_window", "Outcomes", "windows",
            help="Open the market outcomes of the selected window."),
    KeySpec("windows.inspect", "i", "inspect_window", "Inspect", "windows",
            help="Open the selected window's trajectories in the inspector."),
    # Outcomes
    KeySpec("outcomes.previous", "left_square_bracket", "step_window(-1)", "Older window", "outcomes",
            key_display="[", help="Show the previous (older) window."),
    KeySpec("outcomes.next", "right_square_bracket", "step_window(1)", "Newer window", "outcomes",
            key_display="]", help="Show the next (newer) window."),
    KeySpec("outcomes.inspect", "i", "inspect_window", "Inspect", "outcomes",
            help="Open this window's trajectories in the inspector."),
    # Training
    KeySpec("training.clear", "c", "clear_charts", "Clear charts", "training",
            help="Forget the plotted history (the database keeps it)."),
    KeySpec("training.acknowledge", "a", "acknowledge_alarm", "Acknowledge alarm", "training", writes=True,
            help="Acknowledge the highlighted alarm (the newest open one unless the alarm list has the focus); "
                 "recorded with your name and database role."),
    # Checkpoints
    KeySpec("checkpoints.promote", "P", "promote", "Promote", "checkpoints", writes=True, key_display="P",
            help="Promote the selected checkpoint: an A/B share or 100% (dialog, then confirm)."),
    KeySpec("checkpoints.rollback", "R", "rollback", "Roll back", "checkpoints", writes=True, key_display="R",
            help="Cancel the A/B rollout, or make the previous live model live again (asks first)."),
    KeySpec("checkpoints.evaluate", "V", "evaluate", "Evaluate", "checkpoints", writes=True, key_display="V",
            help="Compare the selected checkpoint with the live model (or the base policy) on held-out windows."),
    # Inspector
    KeySpec("inspector.next", "n", "step(1)", "Next step", "inspector",
            help="Next step (next matching step while searching)."),
    KeySpec("inspector.previous", "p", "step(-1)", "Prev step", "inspector",
            help="Previous step (previous matching step while searching)."),
    KeySpec("inspector.search", "slash", "search", "Search", "inspector", key_display="/",
            help="Search this trajectory's prompts, responses, reasoning and actions; esc clears."),
    KeySpec("inspector.next_agent", "right_square_bracket", "agent(1)", "Next agent", "inspector",
            key_display="]", help="Next agent's trajectory in the window."),
    KeySpec("inspector.previous_agent", "left_square_bracket", "agent(-1)", "Prev agent", "inspector",
            key_display="[", help="Previous agent's trajectory in the window."),
    KeySpec("inspector.calibration", "c", "calibration", "Calibration", "inspector", show=False,
            help="Judge calibration of the window: the judge's ranking beside the realised P&L's, their "
                 "correlation, the pair they disagree on most; esc closes."),
    # Errors
    KeySpec("errors.clear", "c", "clear_errors", "Clear", "errors", help="Clear the error log."),
    # Dialogs
    KeySpec("dialog.confirm", "y", "confirm", "Yes", "dialog", palette=False, help="Confirm."),
    KeySpec("dialog.cancel", "escape", "cancel", "Cancel", "dialog", palette=False,
            help="Cancel and close the dialog (also n)."),
    KeySpec("dialog.cancel_n", "n", "cancel", "No", "dialog", show=False, palette=False, help="Cancel."),
)

BY_ID: dict[str, KeySpec] = {spec.id: spec for spec in KEYS}
assert len(BY_ID) == len(KEYS), "duplicate key ids"


def specs(scope: str) -> list[KeySpec]:
    return [spec for spec in KEYS if spec.scope == scope]


def bindings(scope: str) -> list[Binding]:
    return [spec.binding() for spec in specs(scope)]


def fallback_bindings(*scopes: str) -> list[Binding]:
    """Hidden bindings that explain why a disabled action of `scopes` did nothing (a toast).

    A pane disables an action through `check_action` (dimmed in the footer); the key then falls
    through to the enclosing screen, where one of these bindings says why."""
    return [
        Binding(spec.key, f"explain('{spec.id}')", spec.description, show=False, id=spec.id, system=True)
        for spec in KEYS
        if spec.scope in scopes and spec.writes
    ]


def spec_for_action(scope: str, action_name: str) -> KeySpec | None:
    for spec in KEYS:
        if spec.scope == scope and spec.action_name == action_name:
            return spec
    return None


def load_keymap(path: Path) -> dict[str, str]:
    """`[keys]` of a TOML file: binding id -> key(s), the valid entries only; the others are logged.
    `preferences.load_keymap_file` returns them as problems, for the console to show."""
    from .preferences import load_keymap_file  # preferences validates ids against this module

    loaded = load_keymap_file(path)
    for problem in loaded.problems:
        log.warning("%s (%s)", problem, problem.path)
    return loaded.keymap


def display_key(spec: KeySpec, keymap: dict[str, str] | None = None) -> str:
    key = (keymap or {}).get(spec.id)
    if key is None:
        return spec.key_display or _pretty(spec.key)
    return _pretty(key)


def _pretty(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "left_square_bracket": "[", "right_square_bracket": "]",
             "escape": "esc", "enter": "enter", "space": "space"}
    return ",".join(names.get(k.strip(), k.strip()) for k in key.split(","))
