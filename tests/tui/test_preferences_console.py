"""A broken preferences file is reported in the console itself (toast and Errors pane), with the
file, the place and what is wrong; the valid parts still apply."""

from __future__ import annotations

from babylon_console.tui.widgets.errors import ErrorsPane

from .conftest import SIZE, wait_for


async def test_a_broken_keymap_and_theme_are_shown_with_file_and_place(make_app, settings) -> None:
    data_dir = settings.data_dir
    (data_dir / "themes").mkdir(parents=True)
    (data_dir / "themes" / "bad.toml").write_text('name = "bad"\nprimary = "#zzz"\n')
    (data_dir / "keymap.toml").write_text('[keys]\n"pane.nope" = "w"\n"app.help" = "f1"\nthis is not toml\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        errors = app.main.pane(ErrorsPane)
        await wait_for(lambda: len(errors.entries) >= 2, what="problems in the Errors pane")
        lines = [entry[4] for entry in errors.entries]
        assert any("keymap.toml" in m and '"pane.nope"' in m and "unknown binding id" in m for m in lines), lines
        assert any("keymap.toml line 4" in m for m in lines), lines
        assert any("bad.toml" in m for m in lines), lines
        assert all(entry[3] == "preferences" for entry in errors.entries)
        assert any("keymap.toml" in t for t in app.toasts)  # a toast as well, not only a log line
        assert app.keymap_overrides.get("app.help") == "f1"  # the valid entry still applies
        assert "bad" not in app.available_themes
        await pilot.press("f1")
        await wait_for(lambda: type(app.screen).__name__ == "HelpScreen", what="the remapped key")
