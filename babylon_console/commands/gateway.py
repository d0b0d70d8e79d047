"""`babylon-console gateway`: the OpenAI-compatible endpoint the game's agents point at."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from ..cli_support import err, load_settings, out, run_command

if TYPE_CHECKING:
    from ..core.config import Settings

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


@app.command("gateway")
def gateway_command(
    host: Annotated[str | None, typer.Option(
        help="Address to listen on (default: BABYLON_GATEWAY_HOST, else 127.0.0.1; anything but loopback needs "
             "BABYLON_GATEWAY_KEYS).", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(
        help="Port (default: BABYLON_GATEWAY_PORT, else 8787).", show_default=False)] = None,
) -> None:
    """An OpenAI-compatible endpoint for the game's agents, serving the model the registry says: the alias
    (BABYLON_GATEWAY_MODEL) is the live model, or the candidate for its share of agents during an A/B rollout;
    every call is logged. Runs until Ctrl-C / SIGTERM."""
    from ..core.gateway.server import check_bind

    settings = load_settings(gateway_host=host, gateway_port=port)
    check_bind(settings.gateway_host, settings)  # refused before the database is opened (exit 2)
    run_command(lambda: _serve(settings))


async def _serve(settings: Settings) -> None:
    from ..core.db.connections import open_database
    from ..core.gateway.server import GatewayServer

    target, pool = await open_database(settings, max_size=4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        server = GatewayServer(settings, pool, target.dsn)
        await server.start()
        try:
            keys = "keys required" if settings.gateway_keys else "no keys: loopback only"
            out.print(f"gateway {server.gateway_id}: serving {settings.gateway_model!r} at "
                      f"{server.base_url} ({keys}); routing {server.follower.source}. Ctrl-C stops it.",
                      soft_wrap=True)
            await stop.wait()
            err.print("stopping: requests in flight finish…")
        finally:
            await server.stop()
    finally:
        await pool.close()
