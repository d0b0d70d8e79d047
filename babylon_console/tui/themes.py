"""Themes as data files, and the remembered choice.

Themes are read from the project's `themes/` folder and from `<data dir>/themes/` (the user's
own), as TOML or JSON with the fields of `textual.theme.Theme`:

    name = "babylon-dark"
    dark = true
    primary = "#D9A441"
    ...
    [variables]
    "footer-key-foreground" = "#D9A441"

The chosen theme is stored in `<data dir>/console.json`. Reading and validating these files is
`preferences`' job (it reports every problem); the functions here keep their old shapes for their
callers and log the problems.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from textual.theme import Theme

from .preferences import (
    DEFAULT_THEME,
    PREFERENCES_FILE,
    PreferenceProblem,
    ThemesLoaded,
    load_theme_files,
    parse_theme,
    project_themes_dir,
    read_console_file,
    read_theme_file,
    remember_theme,
)

__all__ = ["DEFAULT_THEME", "PREFERENCES_FILE", "ThemesLoaded", "load_theme_file", "load_theme_files",
           "load_themes", "project_themes_dir", "save_theme", "saved_theme", "theme_from_data"]

log = logging.getLogger(__name__)


def _log(problems: list[PreferenceProblem]) -> None:
    for problem in problems:
        log.warning("%s (%s)", problem, problem.path)


def theme_from_data(data: dict[str, Any], fallback_name: str) -> Theme:
    """The theme `data` describes; ValueError says why not."""
    theme, problems = parse_theme(Path(f"{fallback_name}.toml"), data)
    if theme is None:
        raise ValueError("; ".join(p.what if not p.where else f"{p.where}: {p.what}" for p in problems))
    return theme


def load_theme_file(path: Path) -> Theme:
    """One theme file; ValueError says why it cannot be used."""
    theme, problems = read_theme_file(path)
    if theme is None:
        raise ValueError("; ".join(str(p) for p in problems))
    return theme


def load_themes(*folders: Path) -> list[Theme]:
    """Every valid theme in `folders` (later folders override earlier ones by name); the others are
    logged. `preferences.load_theme_files` returns them as problems."""
    loaded = load_theme_files(*folders)
    _log(loaded.problems)
    return loaded.themes


def saved_theme(data_dir: Path) -> str | None:
    return read_console_file(data_dir / PREFERENCES_FILE)[0].theme


def save_theme(data_dir: Path, name: str) -> None:
    """Remember `name` in console.json (other keys kept); problems are logged.
    `preferences.remember_theme` returns them."""
    _log(remember_theme(data_dir, name))
