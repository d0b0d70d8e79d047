"""CLI subcommands, one module per command group. Each defines its own Typer `app`; `cli.py` imports a
module only when one of its commands is invoked. Shared helpers come from `cli_support`, never `cli`."""
