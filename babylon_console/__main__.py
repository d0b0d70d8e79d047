"""`python -m babylon_console` runs the same command as `babylon-console`."""

from .cli import main

main()
