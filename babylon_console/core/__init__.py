"""Headless core: configuration, database, windows, groups, judges, backends, engine, events.

Nothing under this package imports Textual (a test enforces it); the TUI and the CLI build on it.
"""
