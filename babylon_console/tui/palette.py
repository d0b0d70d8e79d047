"""The command palette (`ctrl+p`): every action of the key registry that can run now, plus theme
and screenshot. A pane's action is offered from any pane, named with its pane; choosing it shows
that pane first, then acts there. A command whose action is refused right now (read-only, nothing
selected on the pane shown, no engine) is left out, by the same rule (`why_refused`, `check_action`)
that dims its key; a hidden pane's action that its pane then refuses says why there."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from textual.app import App, SystemCommand

from . import bindings as keys


def commands(app: App[Any], main: Any, keymap: dict[str, str]) -> Iterable[SystemCommand]:
    """`main`: the main screen (None before it is mounted: only theme and screenshot)."""
    for spec in keys.KEYS:
        if not spec.palette or spec.scope in ("dialog", "table") or main is None:
            continue
        run = _runner(app, spec, main)
        if run is None:
            continue
        key = keys.display_key(spec, keymap)
        if spec.id.startswith("pane."):
            title = f"Show {spec.description} pane ({key})"
        elif spec.scope in keys.PANE_TITLES:
            title = f"{spec.description} ({key}) · {keys.PANE_TITLES[spec.scope]} pane"
        else:
            title = f"{spec.description} ({key})"
        yield SystemCommand(title, spec.help or title, run)
    yield SystemCommand("Theme", "Change the theme (remembered)", app.action_change_theme)
    yield SystemCommand("Screenshot", "Save an SVG screenshot of the console", app.action_screenshot)


def _runner(app: App[Any], spec: keys.KeySpec, main: Any) -> Any:
    """What choosing `spec` runs, or None when its action cannot run now."""
    if spec.scope == "app":
        if spec.action_name == "command_palette":
            return None
        return partial(app.call_later, app.run_action, spec.action, app)
    if spec.scope == "main":
        if not main.check_action(spec.action_name, ()):
            return None
        return partial(app.call_later, app.run_action, spec.action, main)
    pane = main.pane_named(spec.scope)
    if pane.shown and pane.why_refused(spec.action_name):
        return None
    if spec.writes and pane.read_only:
        return None  # refused on every pane, for as long as the console runs
    # a hidden pane's state may be stale (or not loaded yet): its pane says why, once shown
    return partial(app.call_later, main.run_pane_action, spec.id)
