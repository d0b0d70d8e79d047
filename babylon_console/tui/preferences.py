"""The console's preferences in one store: the theme, the keymap, and the theme files.

The files, where and as they always were:

    <data dir>/console.json     {"theme": "babylon-dark"}; keys it does not know are kept on save
    <data dir>/keymap.toml      [keys] binding id -> key(s), e.g. "checkpoints.promote" = "ctrl+u"
    themes/*.toml|*.json        the project's themes, then <data dir>/themes/ (the user's; a later
                                theme of the same name wins), with the fields of `textual.theme.Theme`

Loading never raises and never drops anything quietly: each problem becomes a `PreferenceProblem`
(file, where in it, what is wrong) and the valid parts are kept: the other bindings of a keymap
with a bad line, the other themes when one theme file is broken, the other keys of console.json.
A theme is one unit: a theme file with a problem is not loaded (half a theme would be surprising).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

from .bindings import BY_ID

DEFAULT_THEME = "babylon-dark"
FALLBACK_THEME = "textual-dark"  # Textual's own default: there even when no theme file is
PREFERENCES_FILE = "console.json"
KEYMAP_FILE = "keymap.toml"
THEMES_FOLDER = "themes"
BROKEN_SUFFIX = ".broken"  # a broken console.json is kept under this name before it is replaced
MAX_BAD_LINES = 20  # a TOML file with more invalid lines is ignored as a whole
_DEFAULTS_USED = "defaults used"

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def project_themes_dir() -> Path:
    """`themes/` at the top of the project (next to the package); `BABYLON_THEMES_DIR` overrides it."""
    override = os.environ.get("BABYLON_THEMES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / THEMES_FOLDER


class PreferenceProblem(BaseModel):
    """One thing wrong in a preference file. `str()` gives the line to show."""

    model_config = ConfigDict(frozen=True)

    path: Path
    where: str = ""  # 'line 3', '[keys] "pane.foo"', 'primary', '"theme"'; empty for the whole file
    what: str

    @property
    def file(self) -> str:
        """The file as shown: its name, with its folder for theme files (`themes/bad.toml`)."""
        if self.path.parent.name == THEMES_FOLDER:
            return f"{THEMES_FOLDER}/{self.path.name}"
        return self.path.name

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.what}" if self.where else f"{self.file}: {self.what}"


def summarize(problems: Sequence[PreferenceProblem]) -> str | None:
    """One line for a toast, or None when there is nothing to say."""
    if not problems:
        return None
    if len(problems) == 1:
        return f"Preferences: {problems[0]}"
    return f"{len(problems)} preference problems: {problems[0]} (+{len(problems) - 1} more)"


class ConsolePreferences(BaseModel):
    """What the console applies at start: the theme to use and the key overrides."""

    model_config = ConfigDict(frozen=True)

    theme: NonEmpty = DEFAULT_THEME
    keymap: dict[str, NonEmpty] = {}  # binding id -> key(s), for `App.set_keymap`

    @field_validator("keymap")
    @classmethod
    def _known_ids(cls, keymap: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(keymap) - set(BY_ID))
        if unknown:
            raise ValueError(f"unknown binding id(s): {', '.join(unknown)}")
        return keymap


@dataclass(frozen=True, slots=True)
class KeymapLoaded:
    keymap: dict[str, str]
    problems: list[PreferenceProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ThemesLoaded:
    themes: list[Theme]
    problems: list[PreferenceProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadedPreferences:
    preferences: ConsolePreferences
    themes: list[Theme]  # to register, before the theme is set
    problems: list[PreferenceProblem] = field(default_factory=list)

    @property
    def summary(self) -> str | None:
        return summarize(self.problems)


def load_preferences(data_dir: Path, themes_dirs: Iterable[Path | str] | None = None) -> LoadedPreferences:
    """Everything the console reads at start; never raises.

    Themes come from `themes_dirs` (default: the project's `themes/`, then `<data dir>/themes/`).
    The theme is resolved: the saved one when it exists (else a problem), else `DEFAULT_THEME`,
    else Textual's default."""
    folders = [Path(f) for f in themes_dirs] if themes_dirs is not None else [
        project_themes_dir(), data_dir / THEMES_FOLDER]
    themes = load_theme_files(*folders)
    keymap = load_keymap_file(data_dir / KEYMAP_FILE)
    console = _read_console(data_dir / PREFERENCES_FILE)
    problems = [*themes.problems, *keymap.problems, *console.problems]
    available = {*BUILTIN_THEMES, *(theme.name for theme in themes.themes)}
    fallback = DEFAULT_THEME if DEFAULT_THEME in available else FALLBACK_THEME
    saved = console.values.theme
    if saved is not None and saved not in available:
        problems.append(PreferenceProblem(path=data_dir / PREFERENCES_FILE, where='"theme"',
                                          what=f"no theme named {saved!r}; using {fallback}"))
    chosen = saved if saved is not None and saved in available else fallback
    return LoadedPreferences(ConsolePreferences(theme=chosen, keymap=keymap.keymap), themes.themes, problems)


def remember_theme(data_dir: Path, name: str) -> list[PreferenceProblem]:
    """Store `name` as the theme in console.json, keeping its other keys; never raises.

    A console.json that cannot be read as a JSON object is moved aside (`console.json.broken`),
    reported, and replaced; one that cannot be moved aside is left alone (reported)."""
    path = data_dir / PREFERENCES_FILE
    console = _read_console(path)
    problems: list[PreferenceProblem] = []
    raw = console.raw
    if raw is None:
        first = console.problems[0] if console.problems else PreferenceProblem(path=path, what="unreadable")
        reason = first.what.removesuffix(f"; {_DEFAULTS_USED}")
        backup = path.with_name(path.name + BROKEN_SUFFIX)
        try:
            os.replace(path, backup)
        except OSError as exc:
            return [first.model_copy(update={
                "what": f"{reason}; not replaced, as it cannot be moved aside: {_os_reason(exc)}"})]
        problems.append(first.model_copy(update={"what": f"{reason}; replaced, the old file is kept as {backup.name}"}))
        raw = {}
    raw["theme"] = name
    try:
        _write_json(path, raw)
    except OSError as exc:
        problems.append(PreferenceProblem(path=path, what=f"cannot save the theme: {_os_reason(exc)}"))
    return problems


# -- keymap --------------------------------------------------------------------------------------


def load_keymap_file(path: Path) -> KeymapLoaded:
    """The `[keys]` table of a keymap file: its valid entries, and a problem for each other one.

    A missing file is an empty keymap. Invalid TOML lines are skipped (each reported), so one typo
    does not cost the other bindings; unquoted dotted ids (`pane.windows = "w"`) are understood."""
    problems: list[PreferenceProblem] = []
    text = _read_text(path, problems, missing_ok=True)
    data = _parse_toml(path, text, problems, salvage=True) if text is not None else None
    keymap: dict[str, str] = {}
    for name, value in (data or {}).items():
        if name != "keys":
            what = f"unknown table [{name}]" if isinstance(value, dict) else "outside the [keys] table"
            problems.append(PreferenceProblem(path=path, where=f'"{name}"', what=f"{what}; ignored"))
        elif not isinstance(value, dict):
            problems.append(PreferenceProblem(path=path, where='"keys"', what="must be a table: [keys]"))
        else:
            for binding_id, key in _flatten(value):
                problem = _keymap_entry_problem(binding_id, key)
                if problem:
                    problems.append(PreferenceProblem(path=path, where=f'[keys] "{binding_id}"', what=problem))
                else:
                    keymap[binding_id] = ",".join(part.strip() for part in key.split(","))
    return KeymapLoaded(keymap, problems)


def _flatten(table: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    # An unquoted `pane.windows = "w"` is a nested table in TOML; ids are dotted names.
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and dotted not in BY_ID:
            yield from _flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _keymap_entry_problem(binding_id: str, key: Any) -> str | None:
    if binding_id not in BY_ID:
        close = difflib.get_close_matches(binding_id, BY_ID, n=1, cutoff=0.8)  # typos, not guesses
        return "unknown binding id" + (f' (did you mean "{close[0]}"?)' if close else "")
    if not isinstance(key, str):
        return f"the key must be a string, not {_toml_type(key)}"
    parts = [part.strip() for part in key.split(",")]
    if not key.strip():
        return "empty key"
    if any(not part or any(c.isspace() for c in part) for part in parts):
        return f"not a key: {key!r} (keys look like 'ctrl+u' or 'f2,ctrl+u')"
    return None


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", list: "an array", dict: "a table"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


# -- themes --------------------------------------------------------------------------------------


class ThemeFile(BaseModel):
    """The fields of a theme file (`-` or `_` in names); a color must parse as one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: NonEmpty | None = None  # default: the file name without its suffix
    primary: str
    secondary: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    accent: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None
    dark: bool = True
    luminosity_spread: float = 0.15
    text_alpha: float = 0.95
    ansi: bool = False
    variables: dict[str, str] = {}

    @field_validator("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
                     "surface", "panel", "boost")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Color.parse(value)
            except ColorParseError:
                raise ValueError(f"not a color: {value!r}") from None
        return value

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        # CSS variables are text; TOML numbers are accepted as their text, as before.
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    def theme(self, fallback_name: str) -> Theme:
        values = self.model_dump(exclude_unset=True, exclude={"name"})
        return Theme(name=self.name or fallback_name, **values)


def parse_theme(path: Path, data: Any) -> tuple[Theme | None, list[PreferenceProblem]]:
    """The theme a file's parsed content describes, or None and why (each problem names `path`)."""
    if not isinstance(data, dict):
        return None, [PreferenceProblem(path=path, what="a theme file holds one table/object; theme not loaded")]
    given = {str(k).replace("-", "_"): str(k) for k in data}
    try:
        spec = ThemeFile.model_validate({str(k).replace("-", "_"): v for k, v in data.items()})
    except ValidationError as exc:
        return None, [_theme_problem(path, error, given) for error in exc.errors()]
    return spec.theme(path.stem), []


def _theme_problem(path: Path, error: Any, given: dict[str, str]) -> PreferenceProblem:
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "missing" and loc == ["primary"]:
        return PreferenceProblem(path=path, what="a theme needs at least 'primary'; theme not loaded")
    where = ".".join([given.get(loc[0], loc[0]), *loc[1:]]) if loc else ""
    what = "unknown theme field" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
    return PreferenceProblem(path=path, where=where, what=f"{what}; theme not loaded")


def read_theme_file(path: Path) -> tuple[Theme | None, list[PreferenceProblem]]:
    """One theme file (TOML, or JSON by its suffix): the theme, or None and why."""
    problems: list[PreferenceProblem] = []
    text = _read_text(path, problems)
    if text is None:
        return None, problems
    if path.suffix == ".json":
        data = _parse_json(path, text, problems, then="theme not loaded")
    else:
        data = _parse_toml(path, text, problems, then="theme not loaded")
    if data is None:
        return None, problems
    return parse_theme(path, data)


def load_theme_files(*folders: Path) -> ThemesLoaded:
    """Every valid theme in `folders` (a later one overrides an earlier one of the same name), and
    a problem for each theme file that is not loaded. A missing folder is no problem."""
    found: dict[str, Theme] = {}
    problems: list[PreferenceProblem] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        try:
            paths = sorted([*folder.glob("*.toml"), *folder.glob("*.json")])
        except OSError as exc:
            problems.append(PreferenceProblem(path=folder, what=f"cannot list themes: {_os_reason(exc)}"))
            continue
        for path in paths:
            theme, file_problems = read_theme_file(path)
            problems.extend(file_problems)
            if theme is not None:
                found[theme.name] = theme
    return ThemesLoaded(list(found.values()), problems)


# -- console.json --------------------------------------------------------------------------------


class ConsoleFile(BaseModel):
    """The keys of console.json the console knows; others are kept as they are."""

    model_config = ConfigDict(frozen=True)

    theme: NonEmpty | None = None


@dataclass(frozen=True, slots=True)
class _Console:
    raw: dict[str, Any] | None  # None: unreadable or not a JSON object (to be replaced on save)
    values: ConsoleFile
    problems: list[PreferenceProblem]


def _read_console(path: Path) -> _Console:
    problems: list[PreferenceProblem] = []
    text = _read_text(path, problems, missing_ok=True)
    if text is None:
        return _Console(None if problems else {}, ConsoleFile(), problems)
    data = _parse_json(path, text, problems, then=_DEFAULTS_USED)
    if not isinstance(data, dict):
        if data is not None or not problems:
            problems.append(PreferenceProblem(path=path, what=f"must hold a JSON object; {_DEFAULTS_USED}"))
        return _Console(None, ConsoleFile(), problems)
    valid: dict[str, Any] = {}
    for name in ConsoleFile.model_fields:  # one key at a time: a bad key costs only itself
        if name not in data:
            continue
        try:
            ConsoleFile.model_validate({name: data[name]})
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            problems.append(PreferenceProblem(path=path, where=f'"{name}"', what=f"{message}; ignored"))
        else:
            valid[name] = data[name]
    return _Console(data, ConsoleFile.model_validate(valid), problems)


def read_console_file(path: Path) -> tuple[ConsoleFile, list[PreferenceProblem]]:
    """The known keys of a console.json (defaults where missing or invalid), and its problems."""
    console = _read_console(path)
    return console.values, console.problems


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Written next to the file, then renamed over it: a crash never leaves half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- reading files -------------------------------------------------------------------------------

_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def _read_text(path: Path, problems: list[PreferenceProblem], *, missing_ok: bool = False) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not missing_ok:
            problems.append(PreferenceProblem(path=path, what="file not found"))
    except UnicodeDecodeError as exc:
        problems.append(PreferenceProblem(path=path, what=f"not UTF-8 text ({exc.reason}); ignored"))
    except OSError as exc:
        problems.append(PreferenceProblem(path=path, what=f"cannot read: {_os_reason(exc)}; ignored"))
    return None


def _parse_toml(path: Path, text: str, problems: list[PreferenceProblem], *, then: str = "file ignored",
                salvage: bool = False) -> Any:
    """The parsed file, or None (reported, ending with `then`). With `salvage`, an invalid line is
    blanked and the rest parsed again, each such line reported, so the valid lines still count."""
    lines = text.splitlines()
    for _ in range(MAX_BAD_LINES + 1):
        try:
            return tomllib.loads("\n".join(lines))
        except tomllib.TOMLDecodeError as exc:
            message, line = _toml_error(exc, lines)
            where = f"line {line}" if line else "end of file"
            if not salvage or line is None or not lines[line - 1].strip():
                problems.append(PreferenceProblem(path=path, where=where, what=f"invalid TOML: {message}; {then}"))
                return None
            problems.append(PreferenceProblem(path=path, where=where, what=f"invalid TOML: {message}; line ignored"))
            lines[line - 1] = ""
    problems.append(PreferenceProblem(path=path, what=f"more than {MAX_BAD_LINES} invalid lines; file ignored"))
    return None


def _toml_error(exc: tomllib.TOMLDecodeError, lines: list[str]) -> tuple[str, int | None]:
    message = str(exc)
    match = _TOML_AT.search(message)
    if match is None:
        return message, getattr(exc, "lineno", None)
    message = message[: match.start()]
    if match.group(1):
        return message, int(match.group(1))
    # "at end of document": an unterminated string or array; the last written line is where it starts
    # or ends, the best line to skip.
    written = [i for i, line in enumerate(lines, start=1) if line.strip()]
    return message, written[-1] if written else None


def _parse_json(path: Path, text: str, problems: list[PreferenceProblem], *, then: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(PreferenceProblem(path=path, where=f"line {exc.lineno}",
                                          what=f"invalid JSON: {exc.msg}; {then}"))
        return None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
