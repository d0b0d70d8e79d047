"""One gateway process: the routing follower, the call log writer, the heartbeat and the HTTP
server, started and stopped together.

Gateways keep no state of their own beyond caches (the routing table, resolved upstreams, buffered
log rows): several of them behind any HTTP load balancer share one database, and each routes an
agent to the same arm, since the arm is a hash of the agent and the rollout id.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import asyncpg
from aiohttp import web

from ..errors import InvalidInput
from .app import Gateway
from .calllog import CallLog
from .follower import RoutingFollower
from .heartbeat import Heartbeat, new_gateway_id
from .upstreams import Upstreams


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Any) -> None:
    """Refuse to listen beyond this machine without keys: anyone who can reach it could use it."""
    keys = settings.gateway_keys.get_secret_value() if settings.gateway_keys else ""
    if not keys.replace(",", "").strip() and not is_loopback(host):
        raise InvalidInput(f"the gateway will not listen on {host} without keys: set BABYLON_GATEWAY_KEYS "
                           "(comma-separated; clients send `Authorization: Bearer <key>`), or listen on 127.0.0.1")


class GatewayServer:
    def __init__(self, settings: Any, pool: asyncpg.Pool, dsn: str, *, host: str | None = None,
                 port: int | None = None, refresh_s: float = 2.0) -> None:
        self.settings = settings
        self.host = host if host is not None else settings.gateway_host
        self.port = port if port is not None else settings.gateway_port
        check_bind(self.host, settings)
        self.gateway_id = new_gateway_id()
        self.follower = RoutingFollower(pool, dsn, every_s=refresh_s)
        self.calllog = CallLog(pool, retention_days=settings.gateway_log_retention_days)
        self.gateway = Gateway(settings, self.follower, self.calllog, Upstreams(settings), self.gateway_id)
        self.heartbeat = Heartbeat(pool, self.gateway_id, f"{self.host}:{self.port}", settings.heartbeat_s,
                                   self._state)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def _state(self) -> tuple[str, dict[str, Any]]:
        return self.follower.source, {"arms": dict(self.gateway.stats), "log_dropped": self.calllog.dropped}

    async def start(self) -> GatewayServer:
        await self.follower.start()
        self.calllog.start()
        # handler_cancellation: a client that goes away cancels its request, and so its upstream call
        self._runner = web.AppRunner(self.gateway.make_app(), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=5.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port, backlog=1024).start()
        except OSError as exc:
            await self.stop()
            raise InvalidInput(f"the gateway cannot listen on {self.host}:{self.port}: "
                               f"{exc.strerror or exc}") from None
        self.port = int(self._runner.addresses[0][1])
        self.heartbeat.listen = f"{self.host}:{self.port}"
        await self.heartbeat.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # in-flight requests finish (within shutdown_timeout)
            self._runner = None
        await self.heartbeat.stop()
        await self.follower.stop()
        await self.calllog.stop()

    async def __aenter__(self) -> GatewayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
