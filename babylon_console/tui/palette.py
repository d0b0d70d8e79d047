"""The command palette (`ctrl+p`): the key registry's commands that are valid now, plus theme and
screenshot. A command whose action is refused right now (read-only, nothing selected, no engine)
is left out, by the same `check_action` that dims its key."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from textual.app import App, SystemCommand

from . import bindings as keys


def commands(app: App[Any], main: Any, keymap: dict[str, str]) -> Iterable[SystemCommand]:
    """`main`: the main screen (None before it is mounted: only theme and screenshot)."""
    for spec in keys.KEYS:
        if not spec.palette or spec.scope == "dialog" or main is None:
            continue
        target = _target(app, spec, main)
        if target is None:
            continue
        title = f"Show {spec.description} pane" if spec.id.startswith("pane.") else spec.description
        yield SystemCommand(f"{title} ({keys.display_key(spec, keymap)})", spec.help or title,
                            partial(app.call_later, app.run_action, spec.action, target))
    yield SystemCommand("Theme", "Change the theme (remembered)", app.action_change_theme)
    yield SystemCommand("Screenshot", "Save an SVG screenshot of the console", app.action_screenshot)


def _target(app: App[Any], spec: keys.KeySpec, main: Any) -> Any:
    if spec.scope == "app":
        return app if spec.action_name not in ("command_palette",) else None
    if spec.scope == "main":
        return main if main.check_action(spec.action_name, ()) else None
    pane = main.active_pane
    if spec.scope != pane.scope:
        return None
    return pane if pane.check_action(spec.action_name, ()) else None
