"""CLI subcommands, one module per command group; each registers itself on the Typer app."""
