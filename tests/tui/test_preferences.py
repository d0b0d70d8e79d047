"""Preferences in one store: every problem in a keymap, theme or console.json file is reported with
its file, place and reason, and the valid parts are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from babylon_console.tui import bindings
from babylon_console.tui.preferences import (
    BROKEN_SUFFIX,
    DEFAULT_THEME,
    FALLBACK_THEME,
    ConsolePreferences,
    PreferenceProblem,
    load_keymap_file,
    load_preferences,
    load_theme_files,
    project_themes_dir,
    remember_theme,
    summarize,
)
from babylon_console.tui.themes import load_themes, save_theme, saved_theme


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def lines(problems: list[PreferenceProblem]) -> list[str]:
    return [str(p) for p in problems]


# -- keymap.toml ----------------------------------------------------------------------------------


def test_broken_toml_line_is_reported_and_the_other_bindings_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "keymap.toml", '[keys]\n"checkpoints.promote" = "ctrl+u"\n"app.help" = \n'
                                           '"windows.sort" = "o"\n')
    loaded = load_keymap_file(path)
    assert loaded.keymap == {"checkpoints.promote": "ctrl+u", "windows.sort": "o"}
    [problem] = loaded.problems
    assert (problem.path, problem.where) == (path, "line 3")
    assert problem.what.startswith("invalid TOML: ") and problem.what.endswith("line ignored")
    assert str(problem).startswith("keymap.toml line 3: invalid TOML")
    # the old loader answered {} for the whole file, silently
    assert bindings.load_keymap(path) == {"checkpoints.promote": "ctrl+u", "windows.sort": "o"}


def test_unterminated_string_at_the_end_costs_only_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "keymap.toml", '[keys]\n"windows.sort" = "o"\n"app.help" = "unterminated\n')
    loaded = load_keymap_file(path)
    assert loaded.keymap == {"windows.sort": "o"}
    assert [p.where for p in loaded.problems] == ["line 3"]


def test_unknown_binding_id_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "keymap.toml", '[keys]\n"pane.foo" = "x"\n"pane.windwos" = "w"\n"app.quit" = "ctrl+q"\n')
    loaded = load_keymap_file(path)
    assert loaded.keymap == {"app.quit": "ctrl+q"}
    assert lines(loaded.problems) == [
        'keymap.toml [keys] "pane.foo": unknown binding id',
        'keymap.toml [keys] "pane.windwos": unknown binding id (did you mean "pane.windows"?)',
    ]
    assert all(p.path == path for p in loaded.problems)


@pytest.mark.parametrize(("value", "what"), [
    ("3", "the key must be a string, not an integer"),
    ("true", "the key must be a string, not a boolean"),
    ('["a", "b"]', "the key must be a string, not an array"),
    ('""', "empty key"),
    ('"ctrl u"', "not a key: 'ctrl u'"),
    ('"f2,"', "not a key: 'f2,'"),
])
def test_a_key_that_is_not_a_key_is_reported(tmp_path: Path, value: str, what: str) -> None:
    path = write(tmp_path / "keymap.toml", f'[keys]\n"app.help" = {value}\n"app.quit" = "ctrl+q"\n')
    loaded = load_keymap_file(path)
    assert loaded.keymap == {"app.quit": "ctrl+q"}
    [problem] = loaded.problems
    assert problem.where == '[keys] "app.help"'
    assert problem.what.startswith(what)


def test_unquoted_dotted_ids_work_and_entries_outside_keys_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "keymap.toml", '"app.help" = "f1"\n[keys]\npane.windows = "w"\n'
                                           '"checkpoints.promote" = " ctrl+u , f5 "\n[colors]\nx = 1\n')
    loaded = load_keymap_file(path)
    assert loaded.keymap == {"pane.windows": "w", "checkpoints.promote": "ctrl+u,f5"}
    assert lines(loaded.problems) == ['keymap.toml "app.help": outside the [keys] table; ignored',
                                      'keymap.toml "colors": unknown table [colors]; ignored']


def test_missing_keymap_is_no_problem_and_an_unreadable_one_is(tmp_path: Path) -> None:
    assert load_keymap_file(tmp_path / "keymap.toml").problems == []
    (tmp_path / "keymap.toml").mkdir()  # a folder where the file should be
    loaded = load_keymap_file(tmp_path / "keymap.toml")
    assert loaded.keymap == {}
    [problem] = loaded.problems
    assert problem.where == "" and problem.what.startswith("cannot read")


def test_preferences_model_refuses_unknown_binding_ids() -> None:
    assert ConsolePreferences(keymap={"app.quit": "ctrl+q"}).keymap == {"app.quit": "ctrl+q"}
    with pytest.raises(ValidationError, match=r"pane\.foo"):
        ConsolePreferences(keymap={"pane.foo": "x"})


# -- theme files ----------------------------------------------------------------------------------


def test_broken_theme_files_are_reported_and_the_good_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "themes"
    write(folder / "mine.json", json.dumps({"name": "mine", "primary": "#123456", "dark": False}))
    write(folder / "broken.toml", "primary = \n")
    write(folder / "odd.toml", 'primary = "#fff"\nsparkle = true\n')
    write(folder / "bad.toml", 'secondary = "#fff"\n')
    write(folder / "tint.toml", 'primary = "#zzz"\ntext-alpha = "lots"\n')
    write(folder / "list.json", "[1, 2]")
    write(folder / "cut.json", '{"primary": "#fff",')
    loaded = load_theme_files(folder)
    assert [t.name for t in loaded.themes] == ["mine"]
    assert all(p.path.parent == folder for p in loaded.problems)
    got = {(p.path.name, p.where): p.what for p in loaded.problems}
    assert got[("bad.toml", "")] == "a theme needs at least 'primary'; theme not loaded"
    assert got[("broken.toml", "line 1")].startswith("invalid TOML: ")
    assert got[("odd.toml", "sparkle")] == "unknown theme field; theme not loaded"
    assert got[("tint.toml", "primary")] == "not a color: '#zzz'; theme not loaded"
    assert got[("tint.toml", "text-alpha")].endswith("; theme not loaded")  # named as written in the file
    assert got[("list.json", "")] == "a theme file holds one table/object; theme not loaded"
    assert got[("cut.json", "line 1")].startswith("invalid JSON: ")
    assert "themes/bad.toml: a theme needs at least 'primary'; theme not loaded" in lines(loaded.problems)


def test_a_theme_with_a_color_textual_cannot_parse_is_not_loaded(tmp_path: Path) -> None:
    # the old loader registered it, and the console failed when it was chosen
    write(tmp_path / "tint.toml", 'primary = "#zzz"\n')
    assert load_themes(tmp_path) == []


def test_theme_fields_and_later_folders_win(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.toml", 'name = "shared"\nprimary = "#111111"\n')
    write(tmp_path / "b" / "y.toml", 'name = "shared"\nprimary = "#222222"\nluminosity-spread = 0.2\n'
                                     '[variables]\n"footer-key-foreground" = "#222222"\n"some-width" = 3\n')
    loaded = load_theme_files(tmp_path / "a", tmp_path / "b", tmp_path / "missing")
    assert loaded.problems == []
    [theme] = loaded.themes
    assert (theme.primary, theme.luminosity_spread) == ("#222222", 0.2)
    assert theme.variables == {"footer-key-foreground": "#222222", "some-width": "3"}


def test_project_themes_load_cleanly() -> None:
    loaded = load_theme_files(project_themes_dir())
    assert loaded.problems == []
    assert {"babylon-dark", "babylon-light"} <= {t.name for t in loaded.themes}


# -- console.json ---------------------------------------------------------------------------------


def test_broken_console_json_is_reported_then_replaced_and_kept_aside(tmp_path: Path) -> None:
    path = write(tmp_path / "console.json", '{"theme": "nord", "panes": ')
    loaded = load_preferences(tmp_path, themes_dirs=[project_themes_dir()])
    assert loaded.preferences.theme == DEFAULT_THEME
    [problem] = loaded.problems
    assert (problem.path, problem.where) == (path, "line 1")
    assert problem.what.startswith("invalid JSON: ") and problem.what.endswith("defaults used")

    problems = remember_theme(tmp_path, "babylon-light")
    assert [p.what.endswith(f"the old file is kept as console.json{BROKEN_SUFFIX}") for p in problems] == [True]
    assert (tmp_path / f"console.json{BROKEN_SUFFIX}").read_text() == '{"theme": "nord", "panes": '
    assert json.loads(path.read_text()) == {"theme": "babylon-light"}
    assert remember_theme(tmp_path, "nord") == []  # the file is sound again
    assert saved_theme(tmp_path) == "nord"


def test_console_json_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "console.json", '["babylon-light"]')
    loaded = load_preferences(tmp_path, themes_dirs=[project_themes_dir()])
    assert lines(loaded.problems) == ["console.json: must hold a JSON object; defaults used"]
    save_theme(tmp_path, "babylon-light")
    assert json.loads((tmp_path / "console.json").read_text()) == {"theme": "babylon-light"}
    assert (tmp_path / f"console.json{BROKEN_SUFFIX}").exists()


def test_saving_the_theme_keeps_the_other_keys_even_next_to_a_bad_value(tmp_path: Path) -> None:
    path = write(tmp_path / "console.json", json.dumps({"theme": 3, "layout": {"split": 0.4}, "future": True}))
    loaded = load_preferences(tmp_path, themes_dirs=[])
    assert loaded.preferences.theme == FALLBACK_THEME  # no theme folders: Textual's default
    [problem] = loaded.problems
    assert problem.where == '"theme"' and problem.what.endswith("; ignored")
    assert remember_theme(tmp_path, "nord") == []
    assert json.loads(path.read_text()) == {"theme": "nord", "layout": {"split": 0.4}, "future": True}
    assert not (tmp_path / f"console.json{BROKEN_SUFFIX}").exists()


def test_a_saved_theme_that_no_longer_exists_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "console.json", json.dumps({"theme": "gone"}))
    loaded = load_preferences(tmp_path, themes_dirs=[project_themes_dir()])
    assert loaded.preferences.theme == DEFAULT_THEME
    assert lines(loaded.problems) == [f"console.json \"theme\": no theme named 'gone'; using {DEFAULT_THEME}"]


def test_saving_where_nothing_can_be_written_reports_and_does_not_raise(tmp_path: Path) -> None:
    not_a_dir = write(tmp_path / "data", "a file, not a folder")
    problems = remember_theme(not_a_dir, "nord")
    assert problems and all(p.path == not_a_dir / "console.json" for p in problems)
    save_theme(not_a_dir, "nord")  # the old function still only logs


# -- the whole store ------------------------------------------------------------------------------


def test_load_preferences_reads_every_file_and_keeps_the_valid_parts(tmp_path: Path) -> None:
    write(tmp_path / "themes" / "mine.toml", 'primary = "#123456"\n')
    write(tmp_path / "themes" / "bad.toml", 'secondary = "#123456"\n')
    write(tmp_path / "keymap.toml", '[keys]\n"checkpoints.promote" = "ctrl+u"\n"pane.foo" = "x"\n')
    write(tmp_path / "console.json", json.dumps({"theme": "mine"}))
    loaded = load_preferences(tmp_path, themes_dirs=[project_themes_dir(), tmp_path / "themes"])
    assert loaded.preferences == ConsolePreferences(theme="mine", keymap={"checkpoints.promote": "ctrl+u"})
    assert {"babylon-dark", "babylon-light", "mine"} <= {t.name for t in loaded.themes}
    assert lines(loaded.problems) == ["themes/bad.toml: a theme needs at least 'primary'; theme not loaded",
                                      'keymap.toml [keys] "pane.foo": unknown binding id']
    assert loaded.summary == ("2 preference problems: themes/bad.toml: a theme needs at least 'primary'; "
                              "theme not loaded (+1 more)")


def test_default_theme_folders_are_the_project_and_the_data_dir(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABYLON_THEMES_DIR", str(tmp_path / "project"))
    write(tmp_path / "project" / "babylon-dark.toml", 'primary = "#D9A441"\n')
    write(tmp_path / "data" / "themes" / "mine.toml", 'primary = "#123456"\n')
    loaded = load_preferences(tmp_path / "data")
    assert [t.name for t in loaded.themes] == ["babylon-dark", "mine"]
    assert loaded.problems == [] and loaded.summary is None
    assert loaded.preferences == ConsolePreferences()  # nothing saved: the default theme, no overrides


def test_summary_is_one_line() -> None:
    one = PreferenceProblem(path=Path("/x/keymap.toml"), where="line 3", what="invalid TOML: Invalid value")
    assert summarize([]) is None
    assert summarize([one]) == "Preferences: keymap.toml line 3: invalid TOML: Invalid value"
    assert "\n" not in (summarize([one, one, one]) or "")
