"""Themes as data files, and the remembered choice.

Themes are read from the project's `themes/` folder and from `<data dir>/themes/` (the user's
own), as TOML or JSON with the fields of `textual.theme.Theme`:

    name = "babylon-dark"
    dark = true
    primary = "#D9A441"
    ...
    [variables]
    "footer-key-foreground" = "#D9A441"

A file that cannot be read is skipped with a warning; Textual's built-in themes stay available.
The chosen theme is stored in `<data dir>/console.json`.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from textual.theme import Theme

log = logging.getLogger(__name__)

DEFAULT_THEME = "babylon-dark"
PREFERENCES_FILE = "console.json"
_FIELDS = {"name", "primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
           "surface", "panel", "boost", "dark", "luminosity_spread", "text_alpha", "variables"}


def project_themes_dir() -> Path:
    """`themes/` at the top of the project (next to the package)."""
    override = os.environ.get("BABYLON_THEMES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "themes"


def theme_from_data(data: dict[str, Any], fallback_name: str) -> Theme:
    values = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown theme field(s): {', '.join(sorted(unknown))}")
    values.setdefault("name", fallback_name)
    if "primary" not in values:
        raise ValueError("a theme needs at least 'primary'")
    values["variables"] = {str(k): str(v) for k, v in (values.get("variables") or {}).items()}
    return Theme(**values)


def load_theme_file(path: Path) -> Theme:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a theme file holds one table/object")
    return theme_from_data(data, path.stem)


def load_themes(*folders: Path) -> list[Theme]:
    """Every readable theme in `folders` (later folders override earlier ones by name)."""
    found: dict[str, Theme] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.toml"), *folder.glob("*.json")]):
            try:
                theme = load_theme_file(path)
            except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
                log.warning("theme %s skipped: %s", path, exc)
                continue
            found[theme.name] = theme
    return list(found.values())


def saved_theme(data_dir: Path) -> str | None:
    try:
        value = json.loads((data_dir / PREFERENCES_FILE).read_text()).get("theme")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def save_theme(data_dir: Path, name: str) -> None:
    path = data_dir / PREFERENCES_FILE
    try:
        prefs = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(prefs, dict):
            prefs = {}
    except (OSError, ValueError):
        prefs = {}
    prefs["theme"] = name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(prefs, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not remember the theme in %s: %s", path, exc)
